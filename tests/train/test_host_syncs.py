"""Host syncs in the training step and the evaluation: each one stalls the CPU until the GPU has
caught up, so the loop keeps them to what it needs. No GPU here: a TorchDispatchMode records the
aten ops that wait for the device on CUDA (scalar reads such as `if tensor:` or .item(), nonzero,
unique, boolean-mask indexing, cross-device copies) and the ones that copy Python data to it."""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from train.data import sudoku
from train.data.dataset import PuzzleDataset
from train.model import ACTLossHead, HRMACT, HRMConfig
from train.pretrain import build_optimizers
from train.steps import evaluate, train_step

# What waits for the GPU on CUDA (and what puts host data on it: lift_fresh is torch.tensor(python data)).
SYNC_OPS = {"aten._local_scalar_dense", "aten.is_nonzero", "aten.nonzero", "aten._unique2", "aten._unique",
            "aten.unique_dim", "aten.unique_consecutive", "aten.masked_select", "aten.repeat_interleave",
            "aten.lift_fresh"}
INDEX_OPS = {"aten.index", "aten.index_put", "aten.index_put_"}
COPY_OPS = {"aten._to_copy", "aten.copy_"}


class HostSyncs(TorchDispatchMode):
    """Counts, by aten op, the calls that would make the host wait for a GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        if name in SYNC_OPS:
            self.seen[name] += 1
        elif name in INDEX_OPS and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                                       for i in (args[1] or ())):
            self.seen[f"{name} (boolean mask)"] += 1
        elif name in COPY_OPS:
            devices = {t.device.type for t in args[:2] if isinstance(t, torch.Tensor)}
            if "device" in kwargs and kwargs["device"] is not None:
                devices.add(torch.device(kwargs["device"]).type)
            if "cpu" in devices and len(devices) > 1:
                self.seen[f"{name} (across devices)"] += 1
        return func(*args, **kwargs)


ARCH = dict(hidden_size=32, num_heads=2, expansion=2, H_layers=1, L_layers=1, H_cycles=2, L_cycles=2,
            halt_max_steps=3, halt_exploration_prob=0.1, puzzle_emb_ndim=32, forward_dtype="float32")


def make_head(batch_size: int, num_ids: int, **arch: Any) -> ACTLossHead:
    torch.manual_seed(0)
    config = HRMConfig.from_dict({**ARCH, **arch}, batch_size=batch_size, seq_len=81, vocab_size=11,
                                 num_puzzle_identifiers=num_ids)
    return ACTLossHead(HRMACT(config))


def make_batch(size: int, num_ids: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"inputs": torch.randint(1, 11, (size, 81), generator=g, dtype=torch.int32),
            "labels": torch.randint(1, 11, (size, 81), generator=g, dtype=torch.int32),
            "puzzle_identifiers": torch.randint(0, num_ids, (size,), generator=g, dtype=torch.int32)}


def optimizers(head: ACTLossHead) -> list[torch.optim.Optimizer]:
    cfg = {"optimizer": "adam_atan2", "puzzle_emb_weight_decay": 0.1, "puzzle_emb_lr": 1e-2, "weight_decay": 0.1, "beta1": 0.9,
           "beta2": 0.95, "lr": 1e-3}
    return build_optimizers(head, cfg, world_size=1)[0]


@pytest.fixture(scope="module")
def test_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "sudoku"
    # 23 test puzzles in batches of 8: the last batch holds padding rows.
    sudoku.build(sudoku.BuildConfig(output_dir=str(out), subsample_size=20, num_aug=1, test_size=23, seed=3),
                 log=lambda _: None)
    return out


# --- the training step ------------------------------------------------------------------------


def test_train_step_waits_only_for_its_metrics() -> None:
    head = make_head(8, num_ids=4)  # ids repeat within the batch, as augmented puzzles do
    head.train()
    opts = optimizers(head)
    batch = make_batch(8, num_ids=4)
    carry = head.initial_carry(batch)
    for _ in range(2):  # the second step starts from a carry, as in the loop
        with HostSyncs() as syncs:
            carry, sums, flags = train_step(head, carry, batch, opts, [1e-2, 1e-3], 8, 1, [0.0, 1.0])
        # On CPU the one intended sync (values.cpu().tolist()) is not an aten op, so it is not here;
        # the sparse embedding's sign-SGD sums repeated ids without unique() (data-sized: a sync).
        assert syncs.seen == {}, syncs.seen
        assert flags == [0.0, 1.0] and set(sums) >= {"loss", "lm_loss", "count"}


def test_train_step_without_puzzle_embeddings_has_no_sync_at_all() -> None:
    head = make_head(8, num_ids=4, puzzle_emb_ndim=0)
    head.train()
    opts = optimizers(head)
    batch = make_batch(8, num_ids=4)
    with HostSyncs() as syncs:
        train_step(head, head.initial_carry(batch), batch, opts, [1e-3], 8, 1, [1.0, 0.0])
    assert not syncs.seen, syncs.seen


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_on_cuda_the_training_step_syncs_the_host_once(dtype: str) -> None:
    """What the CPU tests above infer, as CUDA itself reports it (torch.cuda.set_sync_debug_mode):
    one sync per step, the finite check of the metrics before the optimizer step."""
    head = make_head(8, num_ids=4, forward_dtype=dtype).to("cuda")
    head.train()
    opts = optimizers(head)
    batch = {k: v.to("cuda") for k, v in make_batch(8, num_ids=4).items()}
    carry, _, _ = train_step(head, head.initial_carry(batch), batch, opts, [1e-2, 1e-3], 8, 1, [0.0, 0.0])
    torch.cuda.synchronize()

    def syncs(fn: Any) -> int:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in caught)

    def step() -> None:
        nonlocal carry
        carry, _, _ = train_step(head, carry, batch, opts, [1e-2, 1e-3], 8, 1, [0.0, 0.0])

    assert syncs(lambda: torch.ones(1, device="cuda").item()) == 1       # the mode sees a sync
    assert [syncs(step) for _ in range(3)] == [1, 1, 1]


# --- evaluation -------------------------------------------------------------------------------


@torch.inference_mode()
def evaluate_until_all_halt(head: ACTLossHead, data: list) -> dict[str, float]:
    """evaluate() as it was: asks the device after every ACT step whether all rows halted."""
    head.eval()
    totals: dict[str, torch.Tensor] = {}
    for _set_name, batch, _ in data:
        carry = head.initial_carry(batch)
        counted: dict[str, torch.Tensor] = {}
        while True:
            carry, _, metrics, _, all_finished = head(carry=carry, batch=batch, return_keys=())
            for k, v in metrics.items():
                counted[k] = v.detach().float() if k.endswith("loss") else counted.get(k, 0) + v.detach().float()
            if all_finished:
                break
        for k, v in counted.items():
            totals[k] = totals.get(k, 0) + v
    head.train()
    keys = sorted(totals)
    sums = dict(zip(keys, torch.stack([totals[k] for k in keys]).tolist()))
    count = max(sums.pop("count", 0.0), 1.0)
    return {f"eval/{k}": v / count for k, v in sums.items()}


@pytest.mark.parametrize("q_bias", [(-5.0, 5.0), (5.0, -5.0)])  # Q says "continue", then "halt"
def test_evaluate_runs_halt_max_steps_without_a_sync_per_step_and_same_metrics(test_split: Path,
                                                                               q_bias: tuple) -> None:
    head = make_head(8, num_ids=2)
    with torch.no_grad():
        head.model.inner.q_head.bias.copy_(torch.tensor(q_bias))
    # Loaded beforehand: making tensors of host data is not the loop's business here.
    data = list(PuzzleDataset(str(test_split), "test", 8, test_mode=True))
    assert [rows for _, _, rows in data] == [8, 8, 7]  # the last batch is padded to 8

    with HostSyncs() as before:
        expected = evaluate_until_all_halt(head, data)
    with HostSyncs() as after:
        got = evaluate(head, head, data, torch.device("cpu"), world_size=1)

    assert before.seen == {"aten.is_nonzero": len(data) * ARCH["halt_max_steps"]}  # the detector sees them
    assert not after.seen, after.seen
    assert got == expected
    assert set(got) >= {"eval/accuracy", "eval/exact_accuracy", "eval/lm_loss", "eval/steps"}
    assert got["eval/steps"] == ARCH["halt_max_steps"]  # every puzzle counted once, after all steps
    assert head.training  # evaluate() hands the model back in training mode


def test_detector_sees_what_it_should() -> None:
    x = torch.arange(4.0)
    with HostSyncs() as syncs:
        if x.sum() > 0:
            x[x > 1].sum().item()
        torch.tensor([1.0, 2.0])
        x.new_full((), 3.0)  # filled on the device: no copy
    assert syncs.seen == {"aten._local_scalar_dense": 2, "aten.index (boolean mask)": 1, "aten.lift_fresh": 1}
