"""The two computations the training loop repeats: one optimizer step, and one evaluation of the
test split. Both sum their metrics over the ranks and read them back in one host sync."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from train import distributed
from train.data.dataset import PuzzleDataset
from train.model import ACTLossHead
from train.optim import set_lr


def all_finite(sums: dict[str, float]) -> bool:
    return all(np.isfinite(v) for v in sums.values())


def train_step(model: torch.nn.Module, carry: Any, batch: dict[str, torch.Tensor],
               optimizers: list[torch.optim.Optimizer], lrs: list[float], global_batch_size: int,
               world_size: int, flags: list[float]) -> tuple[Any, dict[str, float], list[float]]:
    """One optimizer step. Returns (carry, summed metrics incl. "loss", reduced flags).

    The optimizers step only when the loss is finite everywhere: a diverged run keeps its last
    good weights. `flags` (stop requested, checkpoint due) ride along in the same all_reduce so
    every rank takes the same decision from one collective per step.
    """
    carry, loss, metrics, _, _ = model(carry=carry, batch=batch, return_keys=())
    (loss / global_batch_size).backward()
    distributed.sum_gradients(model, world_size)
    keys = sorted(metrics)
    # new_full fills on the device; torch.tensor(f, device=cuda) would be a blocking copy (a sync).
    values = torch.stack([metrics[k].detach().float() for k in keys] + [loss.detach().float()]
                         + [loss.new_full((), f, dtype=torch.float32) for f in flags])
    distributed.sum_tensor(values, world_size)
    # The one host sync per step: the finite check must precede the optimizer step.
    values = values.cpu().tolist()
    sums = dict(zip(keys + ["loss"], values[:len(keys) + 1]))
    if all_finite(sums):
        for optimizer, lr in zip(optimizers, lrs):
            set_lr(optimizer, lr)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return carry, sums, values[len(keys) + 1:]


def means(sums: dict[str, float], prefix: str, global_batch_size: int) -> dict[str, float]:
    """Per-sequence means, as the reference reports them: losses over the batch (every row
    contributes every step), the rest over the sequences that halted (count)."""
    count = max(sums.get("count", 0.0), 1.0)
    return {f"{prefix}/{k}": v / (global_batch_size if k.endswith("loss") else count)
            for k, v in sums.items() if k != "count"}


@torch.inference_mode()
def evaluate(model: torch.nn.Module, raw_model: ACTLossHead, data: PuzzleDataset, device: torch.device,
             world_size: int) -> dict[str, float]:
    """The whole test split, each batch run through halt_max_steps ACT steps: eval never halts
    early, so every row halts on the last one, and no step has to ask the GPU whether all rows
    have (a host sync per step). Metrics are summed over batches and ranks, then divided by the
    number of sequences. Losses are those of the final ACT step (the answer), not their sum over
    the steps, so eval/lm_loss compares with train/lm_loss."""
    model.eval()
    act_steps = raw_model.model.config.halt_max_steps
    totals: dict[str, torch.Tensor] = {}
    for _set_name, batch, _ in data:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        carry = raw_model.initial_carry(batch)
        counted: dict[str, torch.Tensor] = {}
        for _ in range(act_steps):
            carry, _, metrics, _, _ = model(carry=carry, batch=batch, return_keys=())
            for k, v in metrics.items():
                # Halting metrics count each sequence once, on the step it halts: add them up.
                counted[k] = v.detach().float() if k.endswith("loss") else counted.get(k, 0) + v.detach().float()
        for k, v in counted.items():
            totals[k] = totals.get(k, 0) + v
    model.train()
    keys = sorted(totals)
    values = torch.stack([totals[k] for k in keys]) if keys else torch.zeros(0, device=device)
    sums = dict(zip(keys, distributed.sum_tensor(values, world_size).cpu().tolist()))
    count = max(sums.pop("count", 0.0), 1.0)
    return {f"eval/{k}": v / count for k, v in sums.items()}


def summary(step: int, epoch: float, num_params: int, last_train: dict[str, float],
            last_eval: dict[str, float], best_exact: float | None) -> dict[str, Any]:
    """The flat metrics object a sweep records: everything prefixed, plus the headline numbers."""
    out: dict[str, Any] = {"steps": step, "epochs": round(epoch, 4), "num_params": num_params,
                           **last_train, **last_eval}
    for key in ("exact_accuracy", "accuracy", "lm_loss"):
        if f"eval/{key}" in last_eval:
            out[key] = last_eval[f"eval/{key}"]
    if best_exact is not None:
        out["best_exact_accuracy"] = best_exact
    return out
