"""Train HRM-ACT on puzzle data: `python -m train arch=hrm_v1 data_path=... global_batch_size=768 lr=1e-4`.

One linear flow: config -> distributed setup -> data -> model -> optimizers -> start/resume -> loop.
Multi-GPU: `torchrun --nproc-per-node N -m train ...` (global_batch_size is split over the ranks).

How a run ends (the task runner reads the exit code and the metrics file):
  exit 0  trained to the end: metrics written (status completed), final checkpoint saved
  exit 0  a stop signal (SIGUSR1/SIGUSR2/SIGTERM) arrived: checkpointed at the next step boundary,
          no metrics written; the runner requeues and the next attempt resumes exactly
  exit 3  the loss went NaN/Inf: stopped at once, metrics written with status "diverged". Non-zero
          so that a run by hand or in a shell pipeline cannot mistake it for a finished one; the
          sweep runner takes the status from the metrics file.
  exit 2  a config error (jobs.errors.UserError), one line on stderr

Resuming needs nothing: when the checkpoint directory (SWEEP_CHECKPOINT_DIR inside a sweep, else
<run_dir>/checkpoints) holds latest.pt, training continues from it exactly (model, optimizers,
step, RNG, data position, ACT carry). checkpoint_path= instead STARTS a new run from other weights.
"""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

from jobs import runtime
from jobs.atomic import write_text_atomic
from jobs.errors import UserError
from jobs.manifest import read_manifest
from train import checkpoint, compile_cache
from train.data.dataset import PuzzleDataset
from train.metrics import RunLogger, finite_or_none, write_run_metrics
from train.model import ACTLossHead, CastedSparseEmbeddingSignSGD, HRMACT, HRMConfig
from train.optim import cosine_lr, make_dense_optimizer, set_lr

DIVERGED_EXIT = 3


# --------------------------------------------------------------------------------------------
# helpers


def pick_device(name: str | None, local_rank: int) -> torch.device:
    if name in (None, "", "auto"):
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}", key="device", fix="use cpu or cuda (or null for auto)")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("device=cuda but no GPU is visible", key="device", fix="use device=cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world_size). torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; gloo on CPU, nccl on GPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_config(cfg: dict[str, Any]) -> None:
    """What the loop itself relies on; the model and the data check their own keys."""
    for key in ("global_batch_size", "epochs"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise UserError(f"must be a positive integer, got {cfg[key]!r}", key=key, fix="give a whole number >= 1")
    interval = cfg["eval_interval"]
    if interval is not None and (not isinstance(interval, int) or interval < 1 or cfg["epochs"] % interval):
        raise UserError(f"eval_interval {interval!r} does not divide epochs {cfg['epochs']}", key="eval_interval",
                        fix="use a divisor of epochs (it counts epochs), or null to evaluate at the end only")
    if cfg["max_steps"] is not None and (not isinstance(cfg["max_steps"], int) or cfg["max_steps"] < 1):
        raise UserError(f"must be a positive integer or null, got {cfg['max_steps']!r}", key="max_steps",
                        fix="give a whole number of optimizer steps")
    if not 0.0 <= float(cfg["lr_min_ratio"]) <= 1.0:
        raise UserError("must lie in [0, 1]", key="lr_min_ratio", fix="1.0 keeps the lr constant after warmup")


def build_model(cfg: dict[str, Any], meta: Any, local_batch_size: int, device: torch.device) -> ACTLossHead:
    loss_cfg = cfg["loss"]
    model_cfg = HRMConfig.from_dict(cfg["arch"], feudal_loss_weight=float(loss_cfg["feudal_loss_weight"]),
                                    batch_size=local_batch_size, seq_len=meta.seq_len,
                                    vocab_size=meta.vocab_size, num_puzzle_identifiers=meta.num_puzzle_identifiers)
    with torch.device(device):
        return ACTLossHead(HRMACT(model_cfg), loss_type=loss_cfg["loss_type"],
                           feudal_loss_weight=float(loss_cfg["feudal_loss_weight"]))


def build_optimizers(model: ACTLossHead, cfg: dict[str, Any], world_size: int
                     ) -> tuple[list[torch.optim.Optimizer], list[float]]:
    """(optimizers, their base lrs): sign-SGD for the sparse puzzle embeddings (if any), the
    `optimizer` named in the config (AdamATan2 by default) for every dense parameter."""
    optimizers: list[torch.optim.Optimizer] = []
    base_lrs: list[float] = []
    puzzle_emb = getattr(model.model.inner, "puzzle_emb", None)
    if puzzle_emb is not None:
        optimizers.append(CastedSparseEmbeddingSignSGD(puzzle_emb, lr=0.0, world_size=world_size,
                                                       weight_decay=float(cfg["puzzle_emb_weight_decay"])))
        base_lrs.append(float(cfg["puzzle_emb_lr"]))
    optimizers.append(make_dense_optimizer(cfg["optimizer"], model.parameters(),
                                           weight_decay=float(cfg["weight_decay"]),
                                           betas=(float(cfg["beta1"]), float(cfg["beta2"]))))
    base_lrs.append(float(cfg["lr"]))
    return optimizers, base_lrs


def start_from(model: ACTLossHead, path: str) -> int:
    """Load weights from an earlier run (e.g. the previous progressive stage). Returns its step.

    Missing keys (a module this config adds, e.g. gates) keep their fresh init; shapes must match.
    """
    found = checkpoint.find(path)
    if found is None:
        raise UserError(f"no checkpoint at {path}", key="checkpoint_path",
                        fix="give a checkpoint file or a directory holding latest.pt or step_*.pt")
    state = checkpoint.load(found)
    try:
        missing, unexpected = model.load_state_dict(state["model"], strict=False)
    except RuntimeError as exc:  # size mismatch: a different hidden_size, vocab, ...
        raise UserError(f"{found} does not fit this model: {exc}".splitlines()[0], key="checkpoint_path",
                        fix="start from a checkpoint of the same architecture") from exc
    if missing or unexpected:
        print(f"[train] {found}: new (fresh init) {missing or '-'}, unused {unexpected or '-'}")
    return int(state.get("step", 0))


def sweep_metric(sweep_dir: Path | None) -> str:
    """The metric the sweep optimises (its manifest's "metric"): what evaluations report to its pruner."""
    try:
        metric = read_manifest(sweep_dir).get("metric") if sweep_dir else None
    except (OSError, ValueError, UserError):  # no manifest: a sweep environment set up by hand
        metric = None
    return metric or "eval/exact_accuracy"


def gather_rank_state(local: dict[str, Any], rank: int, world_size: int) -> list[dict[str, Any]] | None:
    """Every rank's RNG/data/carry, on rank 0 (one checkpoint file holds them all)."""
    if world_size == 1:
        return [local]
    gathered: list[Any] = [None] * world_size if rank == 0 else None  # type: ignore[assignment]
    dist.gather_object(local, gathered, dst=0)
    return gathered


def agree(flag: bool, world_size: int) -> bool:
    """True on every rank when it is true on any (collective when distributed)."""
    if world_size == 1:
        return flag
    value = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value)
    return bool(value.item())


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
    if world_size > 1:
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
    keys = sorted(metrics)
    # new_full fills on the device; torch.tensor(f, device=cuda) would be a blocking copy (a sync).
    values = torch.stack([metrics[k].detach().float() for k in keys] + [loss.detach().float()]
                         + [loss.new_full((), f, dtype=torch.float32) for f in flags])
    if world_size > 1:
        dist.all_reduce(values)
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
    if world_size > 1:
        dist.all_reduce(values)
    sums = dict(zip(keys, values.cpu().tolist()))
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


# --------------------------------------------------------------------------------------------
# the run


def train(hydra_cfg: DictConfig) -> int:
    # First thing: a stop signal during the (slow) setup must not kill the process outright.
    stop = runtime.StopSignal.install()
    cfg: dict[str, Any] = OmegaConf.to_container(hydra_cfg, resolve=True)  # type: ignore[assignment]
    check_config(cfg)

    # --- distributed setup and where things go
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg["device"], local_rank)
    use_compile = compile_cache.wanted(cfg["compile"], device.type)
    rank, world_size = setup_distributed(device)
    master = rank == 0
    gbs = cfg["global_batch_size"]
    if gbs % world_size:
        raise UserError(f"{gbs} does not split over {world_size} ranks", key="global_batch_size",
                        fix="use a multiple of the number of ranks")
    ctx = runtime.context()
    # Before torch._dynamo is imported (building an optimizer imports it): it reads the cache directory.
    cache_dir = compile_cache.configure(ctx) if use_compile else None
    run_dir = Path(cfg["run_dir"])
    if world_size > 1:  # the default run_dir holds a timestamp: take rank 0's, so all ranks agree
        shared = [str(run_dir)]
        dist.broadcast_object_list(shared, src=0)
        run_dir = Path(shared[0])
    ckpt_dir = ctx.checkpoint_dir if ctx.in_sweep and ctx.checkpoint_dir else run_dir / "checkpoints"
    if master:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))

    # Different seeds per rank for the ACT exploration noise; rank 0's weights are broadcast below.
    seed_everything(cfg["seed"] + rank)

    # --- data: one iteration = eval_interval epochs, as the reference (fewer dropped tail batches)
    epochs_per_iter = cfg["eval_interval"] or cfg["epochs"]
    total_iters = cfg["epochs"] // epochs_per_iter
    data_args = dict(rank=rank, world_size=world_size, seed=cfg["seed"])
    train_data = PuzzleDataset(cfg["data_path"], "train", gbs, epochs_per_iter=epochs_per_iter, **data_args)
    eval_data = PuzzleDataset(cfg["data_path"], "test", gbs, test_mode=True, **data_args)
    meta = train_data.metadata
    steps_per_epoch = meta.total_groups * meta.mean_puzzle_examples / gbs
    total_steps = int(cfg["epochs"] * steps_per_epoch)
    if cfg["max_steps"]:
        total_steps = min(total_steps, cfg["max_steps"])
    if total_steps < 1:
        raise UserError(f"one epoch of {cfg['data_path']} is smaller than one batch of {gbs}",
                        key="global_batch_size", fix="lower global_batch_size or raise epochs")

    # --- model
    raw_model = build_model(cfg, meta, gbs // world_size, device)
    if world_size > 1:  # same initial weights everywhere
        with torch.no_grad():
            for tensor in list(raw_model.parameters()) + list(raw_model.buffers()):
                dist.broadcast(tensor, src=0)
    num_params = sum(p.numel() for p in raw_model.parameters())
    optimizers, base_lrs = build_optimizers(raw_model, cfg, world_size)

    # --- start or resume
    step, iters_done, carry = 0, 0, None
    best_exact: float | None = None
    last_eval: dict[str, float] = {}
    last_train: dict[str, float] = {}
    eval_step = -1
    latest = Path(ckpt_dir) / checkpoint.LATEST
    if latest.is_file():
        state = checkpoint.load(latest)
        if len(state["ranks"]) != world_size:
            raise UserError(f"{latest} was written by {len(state['ranks'])} ranks, this run has {world_size}",
                            fix="resume with the same number of processes, or start from it with checkpoint_path")
        raw_model.load_state_dict(state["model"])
        for optimizer, saved in zip(optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        mine = state["ranks"][rank]
        checkpoint.set_rng_state(mine["rng"])
        train_data.load_state_dict(mine["data"])
        carry = checkpoint.to_device(mine["carry"], device)
        step, iters_done = state["step"], state["iters_done"]
        loop = state["loop"]
        best_exact, last_eval, last_train, eval_step = (loop["best_exact"], loop["last_eval"],
                                                        loop["last_train"], loop["eval_step"])
        if master:
            print(f"[train] resumed from {latest} at step {step} (attempt {ctx.attempt})")
    elif cfg["checkpoint_path"]:
        parent_step = start_from(raw_model, cfg["checkpoint_path"])
        if master:
            print(f"[train] started from {cfg['checkpoint_path']} (its step {parent_step}); optimizer fresh")

    # Compile after loading (state_dict keys stay those of the plain module). Inside a sweep the
    # compiled code is cached in the sweep directory: one task compiles, later ones load it.
    model: torch.nn.Module = raw_model
    if use_compile:
        if master and cache_dir:
            print(f"[train] torch.compile cache: {cache_dir}")
        model = torch.compile(raw_model, dynamic=False)  # type: ignore[assignment]

    pruning_metric = sweep_metric(ctx.sweep_dir) if ctx.in_sweep else ""
    logger = None
    if master:
        group = ctx.sweep_dir.name if ctx.in_sweep and ctx.sweep_dir else None
        logger = RunLogger(run_dir, config=cfg, enable_wandb=bool(cfg["enable_wandb"]),
                           project=cfg["project_name"], run_name=cfg["run_name"] or ctx.trial_id, group=group,
                           run_id=ctx.trial_id, resume_step=step)
        print(f"[train] {num_params / 1e6:.2f}M params on {device} x{world_size}; {total_steps} steps "
              f"({cfg['epochs']} epochs of {steps_per_epoch:.1f}); run dir {run_dir}")

    def save(final: bool = False, weights: bool = False) -> None:
        """Collective: every rank contributes its RNG/data/carry; rank 0 writes."""
        local = {"rng": checkpoint.rng_state(), "data": train_data.state_dict(), "carry": checkpoint.to_cpu(carry)}
        ranks = gather_rank_state(local, rank, world_size)
        if not master:
            return
        model_state = raw_model.state_dict()
        checkpoint.save_latest(ckpt_dir, {
            "step": step, "iters_done": iters_done, "epoch": step / steps_per_epoch, "model": model_state,
            "optimizers": [o.state_dict() for o in optimizers], "config": cfg, "ranks": ranks,
            "loop": {"best_exact": best_exact, "last_eval": last_eval, "last_train": last_train,
                     "eval_step": eval_step}})
        if weights or final:
            checkpoint.save_weights(ckpt_dir, step=step, model=model_state, config=cfg)

    def finish(status: str, error: str | None, code: int) -> int:
        if master:
            final = {k: finite_or_none(v) for k, v in
                     summary(step, step / steps_per_epoch, num_params, last_train, last_eval, best_exact).items()}
            if ctx.in_sweep:
                runtime.write_metrics(final, status=status, error=error)
            else:
                write_run_metrics(run_dir / "metrics.json", final, status=status, error=error)
            assert logger is not None
            logger.close(exit_code=code)
        if dist.is_initialized():
            dist.destroy_process_group()
        return code

    def requeue_exit() -> int:
        """Checkpoint and leave; the task runner requeues and the next attempt resumes here."""
        save()
        if master:
            print(f"[train] stop signal: checkpointed step {step} to {ckpt_dir}; exiting for requeue", flush=True)
            logger.close(exit_code=0)  # type: ignore[union-attr]
        if dist.is_initialized():
            dist.destroy_process_group()
        return 0

    def run_eval() -> bool:
        """Evaluate, log, and tell the sweep's pruner (if any); True when it says stop."""
        nonlocal last_eval, eval_step, best_exact
        last_eval, eval_step = evaluate(model, raw_model, eval_data, device, world_size), step
        exact = last_eval.get("eval/exact_accuracy", float("nan"))
        if best_exact is None or exact > best_exact:
            best_exact = exact
        if master:
            logger.log(step, step / steps_per_epoch, time.time() - started, last_eval)  # type: ignore[union-attr]
            print(f"[train] eval at step {step}: exact_accuracy {exact:.4f} "
                  f"accuracy {last_eval.get('eval/accuracy', float('nan')):.4f}", flush=True)
        value = last_eval.get(pruning_metric, last_eval.get(f"eval/{pruning_metric}"))
        # The pruner's step unit is the evaluation count (min_iter / max_iter count evaluations).
        prune = bool(master and ctx.in_sweep and value is not None and step < total_steps
                     and runtime.report(iters_done, value))
        return agree(prune, world_size)

    # --- the loop
    last_save = tick = time.monotonic()
    tick_step, started = step, time.time()
    period_s = 60.0 * float(cfg["checkpoint_every_minutes"] or 0)
    compiling = use_compile  # the first step of this process pays torch.compile's warm-up
    raw_model.train()
    while iters_done < total_iters and step < total_steps:
        # A checkpoint taken right after an iteration's last batch has the data already at the
        # next iteration: then only the evaluation below is left to do for this one.
        if train_data.state_dict()["epoch"] == iters_done:
            for _set_name, batch, _ in train_data:
                step += 1
                batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                if carry is None:
                    carry = raw_model.initial_carry(batch)
                lrs = [cosine_lr(step, base_lr=lr, warmup_steps=cfg["lr_warmup_steps"], total_steps=total_steps,
                                 min_ratio=cfg["lr_min_ratio"]) for lr in base_lrs]
                due = period_s > 0 and time.monotonic() - last_save >= period_s
                carry, sums, (stop_flag, due_flag) = train_step(model, carry, batch, optimizers, lrs, gbs,
                                                                world_size, [float(stop.requested), float(due)])
                if compiling and master:
                    print(f"[train] first step with torch.compile took {time.monotonic() - tick:.1f} s "
                          f"({compile_cache.describe(compile_cache.cache_stats())})", flush=True)
                compiling = False
                last_train = {**means(sums, "train", gbs), "train/lr": lrs[-1]}

                if not all_finite(sums):
                    bad = {k: v for k, v in last_train.items() if not np.isfinite(v)}
                    error = f"non-finite loss at step {step}: {bad}"
                    if master:
                        logger.log(step, step / steps_per_epoch, time.time() - started, last_train)  # type: ignore[union-attr]
                        print(f"[train] diverged: {error}", file=sys.stderr)
                    return finish("diverged", error, DIVERGED_EXIT)

                if master and (step % cfg["log_interval"] == 0 or step == 1):
                    logger.log(step, step / steps_per_epoch, time.time() - started, last_train)  # type: ignore[union-attr]
                    now = time.monotonic()
                    rate = (step - tick_step) / max(now - tick, 1e-9)
                    tick, tick_step = now, step
                    print(f"[train] step {step}/{total_steps} epoch {step / steps_per_epoch:.1f} "
                          f"loss {last_train['train/lm_loss']:.4f} acc {last_train['train/accuracy']:.3f} "
                          f"lr {lrs[-1]:.2e} {rate:.2f} steps/s", flush=True)

                if stop_flag:
                    return requeue_exit()
                if due_flag:
                    save()
                    last_save = time.monotonic()
                if step >= total_steps:
                    break
        # The data moved to the next iteration only if this one ran to its end (not at a step cap).
        iters_done = train_data.state_dict()["epoch"]

        # --- evaluation at the end of every iteration (= eval_interval epochs)
        if run_eval():
            if master:
                print(f"[train] pruned by the sweep at evaluation {iters_done} (step {step})", flush=True)
            return finish("pruned", None, 0)
        if cfg["checkpoint_every_eval"] and iters_done < total_iters and step < total_steps:
            save(weights=True)
            last_save = time.monotonic()
        if agree(stop.requested, world_size):  # a long evaluation may have taken the signal
            return requeue_exit()

    # --- the end: an evaluation of the final weights (unless that just happened), final checkpoint
    if eval_step != step:
        run_eval()
    save(final=True)
    if master:
        print(f"[train] done: {step} steps, eval/exact_accuracy {last_eval.get('eval/exact_accuracy')}", flush=True)
    return finish("completed", None, 0)


# An absolute path: under `python -m train` Hydra would otherwise look for a `configs` *package*.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base=None)
def _hydra_main(hydra_cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    # run_dir's default holds ${now:...}: pin it to the directory Hydra resolved once at start.
    hydra_cfg.run_dir = HydraConfig.get().runtime.output_dir
    try:
        code = train(hydra_cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = UserError.exit_code
    if code:
        sys.exit(code)


def main() -> None:
    _hydra_main()
