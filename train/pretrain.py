"""Train HRM-ACT on puzzle data: `python -m train arch=hrm_v1 data_path=... global_batch_size=768 lr=1e-4`.

`train()` reads top to bottom: setup (config, distributed, data, model, optimizers) -> start or
resume -> iterations of training steps, each ended by an evaluation -> one way out (`finish`). The
loop's state is a `LoopState`; what setup builds once is a `Run`; how the run ends is an `Ending`.
Multi-GPU: `torchrun --nproc-per-node N -m train ...` (global_batch_size is split over the ranks).

How a run ends (the task runner reads the exit code and the metrics file):
  exit 0  trained to the end: metrics written (status completed), final checkpoint saved
  exit 0  the sweep's pruner stopped it after an evaluation: metrics written (status pruned)
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from jobs import runtime
from jobs.atomic import write_text_atomic
from jobs.errors import UserError
from train import checkpoint, compile_cache, distributed
from train.data.dataset import PuzzleDataset
from train.metrics import RunLogger, finite_or_none, write_run_metrics
from train.model import ACTLossHead, CastedSparseEmbeddingSignSGD, HRMACT, HRMConfig
from train.optim import check_optimizer, cosine_lr, make_dense_optimizer
from train.steps import all_finite, evaluate, means, summary, train_step

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
    check_optimizer(cfg["optimizer"])   # here, not when the optimizers are built: before anything is written


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


def staged_data_path(data_path: str, say: bool) -> str:
    """The node-local copy of the dataset where the cluster profile asks for one (Mila's profile
    exports SWEEP_DATA_ROOT=$SLURM_TMPDIR/data): reading $SCRATCH from every step is what staging
    avoids. The first process of the task to need it copies `data_path` there (under a lock, then an
    atomic rename: the ranks of a trial and the trials of a packed task copy it once); a copy that
    fails falls back to `data_path` as given."""
    root = os.environ.get("SWEEP_DATA_ROOT")
    if not root:
        return data_path
    staged = Path(root) / Path(data_path).name
    if not (staged / "train").is_dir():
        if not (Path(data_path) / "train").is_dir():
            return data_path
        try:
            _stage(Path(data_path), staged)
        except OSError as exc:
            print(f"[train] could not copy {data_path} to {root} ({exc}); reading it where it is", flush=True)
            return data_path
    if say:
        print(f"[train] reading the staged copy {staged} of {data_path}", flush=True)
    return str(staged)


def _stage(source: Path, staged: Path) -> None:
    import fcntl
    import shutil

    staged.parent.mkdir(parents=True, exist_ok=True)
    with open(staged.parent / f".{staged.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (staged / "train").is_dir():
            return                                  # another process of this task copied it meanwhile
        tmp = staged.parent / f".{staged.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            shutil.copytree(source, tmp)
            shutil.rmtree(staged, ignore_errors=True)   # a partial copy from an older setup line
            os.rename(tmp, staged)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# the run: what setup builds once, the loop's state, and how a run ends


@dataclass
class Run:
    """What setup builds once and every later step reads."""

    cfg: dict[str, Any]
    ctx: runtime.TrialContext
    device: torch.device
    rank: int
    world_size: int
    run_dir: Path
    ckpt_dir: Path
    train_data: PuzzleDataset
    eval_data: PuzzleDataset
    steps_per_epoch: float
    total_steps: int
    total_iters: int              # iterations of eval_interval epochs, each ended by an evaluation
    raw_model: ACTLossHead        # what checkpoints hold and load into
    optimizers: list[torch.optim.Optimizer]
    base_lrs: list[float]
    use_compile: bool
    cache_dir: Path | None
    model: torch.nn.Module | None = None   # raw_model or its torch.compile wrapper: what steps call
    logger: RunLogger | None = None        # rank 0 only
    pruning_metric: str = ""               # what evaluations report to the sweep's pruner, if any

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def gbs(self) -> int:
        return self.cfg["global_batch_size"]

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.raw_model.parameters())

    def say(self, text: str, file: Any = None) -> None:
        if self.master:
            print(f"[train] {text}", file=file or sys.stdout, flush=True)


@dataclass
class LoopState:
    """Where the loop stands. Everything above the clocks goes into latest.pt."""

    step: int = 0                 # optimizer steps taken
    iters_done: int = 0           # iterations trained (the data has moved past them)
    carry: Any = None             # the ACT carry: rows still thinking continue in the next batch
    best_exact: float | None = None
    last_eval: dict[str, float] = field(default_factory=dict)
    last_train: dict[str, float] = field(default_factory=dict)
    eval_step: int = -1           # the step of the latest evaluation
    # Wall clocks, not saved: periodic checkpoints, steps/s in progress lines, elapsed time in logs.
    started: float = 0.0
    last_save: float = 0.0
    tick: float = 0.0
    tick_step: int = 0
    compiling: bool = False       # the next step pays torch.compile's warm-up

    def loop_record(self) -> dict[str, Any]:
        return {"best_exact": self.best_exact, "last_eval": self.last_eval, "last_train": self.last_train,
                "eval_step": self.eval_step}


@dataclass(frozen=True)
class Ending:
    """How a run ends: the status its metrics file records (None: no metrics file, the task runner
    requeues and the next attempt resumes) and the exit code."""

    status: str | None
    code: int = 0
    error: str | None = None


def train(hydra_cfg: DictConfig) -> int:
    # First thing: a stop signal during the (slow) setup must not kill the process outright.
    stop = runtime.StopSignal.install()
    run = setup(OmegaConf.to_container(hydra_cfg, resolve=True))  # type: ignore[arg-type]
    state = start_or_resume(run)
    prepare_loop(run, state)

    ending: Ending | None = None
    while ending is None and state.iters_done < run.total_iters and state.step < run.total_steps:
        ending = train_iteration(run, state, stop)
        if ending is None:
            ending = end_of_iteration(run, state, stop)
    if ending is None:
        ending = complete(run, state)
    return finish(run, state, ending)


# --------------------------------------------------------------------------------------------
# setup, start or resume


def setup(cfg: dict[str, Any]) -> Run:
    """Distributed setup, directories, data, model and optimizers."""
    check_config(cfg)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg["device"], local_rank)
    use_compile = compile_cache.wanted(cfg["compile"], device.type)
    ctx = runtime.context()
    # Before torch._dynamo is imported (distributed.setup imports it): it reads the cache directory.
    cache_dir = compile_cache.configure(ctx) if use_compile else None
    rank, world_size = distributed.setup(device)
    gbs = cfg["global_batch_size"]
    if gbs % world_size:
        raise UserError(f"{gbs} does not split over {world_size} ranks", key="global_batch_size",
                        fix="use a multiple of the number of ranks")
    # The default run_dir holds a timestamp: take rank 0's, so all ranks agree.
    run_dir = Path(distributed.broadcast_object(str(cfg["run_dir"]), world_size))
    ckpt_dir = ctx.checkpoint_dir if ctx.in_sweep and ctx.checkpoint_dir else run_dir / "checkpoints"
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))

    # Different seeds per rank for the ACT exploration noise (as the reference); the weights are rank 0's.
    seed_everything(cfg["seed"] + rank)

    # One iteration = eval_interval epochs, as the reference (fewer dropped tail batches).
    epochs_per_iter = cfg["eval_interval"] or cfg["epochs"]
    data_args = dict(rank=rank, world_size=world_size, seed=cfg["seed"])
    data_path = staged_data_path(cfg["data_path"], rank == 0)
    train_data = PuzzleDataset(data_path, "train", gbs, epochs_per_iter=epochs_per_iter, **data_args)
    eval_data = PuzzleDataset(data_path, "test", gbs, test_mode=True, **data_args)
    meta = train_data.metadata
    steps_per_epoch = meta.total_groups * meta.mean_puzzle_examples / gbs
    total_steps = int(cfg["epochs"] * steps_per_epoch)
    if cfg["max_steps"]:
        total_steps = min(total_steps, cfg["max_steps"])
    if total_steps < 1:
        raise UserError(f"one epoch of {cfg['data_path']} is smaller than one batch of {gbs}",
                        key="global_batch_size", fix="lower global_batch_size or raise epochs")

    raw_model = build_model(cfg, meta, gbs // world_size, device)
    distributed.broadcast_module(raw_model, world_size)
    optimizers, base_lrs = build_optimizers(raw_model, cfg, world_size)
    return Run(cfg=cfg, ctx=ctx, device=device, rank=rank, world_size=world_size, run_dir=run_dir,
               ckpt_dir=Path(ckpt_dir), train_data=train_data, eval_data=eval_data,
               steps_per_epoch=steps_per_epoch, total_steps=total_steps,
               total_iters=cfg["epochs"] // epochs_per_iter, raw_model=raw_model, optimizers=optimizers,
               base_lrs=base_lrs, use_compile=use_compile, cache_dir=cache_dir)


def start_or_resume(run: Run) -> LoopState:
    """Resume exactly from the run's own latest.pt if there is one; else start, from checkpoint_path's
    weights when given."""
    latest = run.ckpt_dir / checkpoint.LATEST
    if latest.is_file():
        saved = checkpoint.load(latest)
        if len(saved["ranks"]) != run.world_size:
            raise UserError(f"{latest} was written by {len(saved['ranks'])} ranks, this run has {run.world_size}",
                            fix="resume with the same number of processes, or start from it with checkpoint_path")
        run.raw_model.load_state_dict(saved["model"])
        for optimizer, opt_state in zip(run.optimizers, saved["optimizers"], strict=True):
            optimizer.load_state_dict(opt_state)
        mine = saved["ranks"][run.rank]
        checkpoint.set_rng_state(mine["rng"])
        run.train_data.load_state_dict(mine["data"])
        state = LoopState(step=saved["step"], iters_done=saved["iters_done"],
                          carry=checkpoint.to_device(mine["carry"], run.device), **saved["loop"])
        run.say(f"resumed from {latest} at step {state.step} (attempt {run.ctx.attempt})")
        return state
    if run.cfg["checkpoint_path"]:
        parent_step = start_from(run.raw_model, run.cfg["checkpoint_path"])
        run.say(f"started from {run.cfg['checkpoint_path']} (its step {parent_step}); optimizer fresh")
    return LoopState()


def prepare_loop(run: Run, state: LoopState) -> None:
    """Compile, open the logs, start the clocks."""
    # Compile after loading (state_dict keys stay those of the plain module). Inside a sweep the
    # compiled code is cached in the sweep directory: one task compiles, later ones load it.
    run.model = run.raw_model
    if run.use_compile:
        if run.cache_dir:
            run.say(f"torch.compile cache: {run.cache_dir}")
        run.model = torch.compile(run.raw_model, dynamic=False)  # type: ignore[assignment]
    ctx, cfg = run.ctx, run.cfg
    run.pruning_metric = runtime.metric("eval/exact_accuracy") if ctx.in_sweep else ""
    if run.master:
        run.logger = RunLogger(run.run_dir, config=cfg, enable_wandb=bool(cfg["enable_wandb"]),
                               project=cfg["project_name"], run_name=cfg["run_name"] or ctx.trial_id,
                               run_id=ctx.trial_id, resume_step=state.step)
    run.say(f"{run.num_params / 1e6:.2f}M params on {run.device} x{run.world_size}; {run.total_steps} steps "
            f"({cfg['epochs']} epochs of {run.steps_per_epoch:.1f}); run dir {run.run_dir}")
    state.started, state.last_save = time.time(), time.monotonic()
    state.tick, state.tick_step, state.compiling = state.last_save, state.step, run.use_compile
    run.raw_model.train()


# --------------------------------------------------------------------------------------------
# the loop's steps


def train_iteration(run: Run, state: LoopState, stop: runtime.StopSignal) -> Ending | None:
    """One optimizer step per batch of this iteration, until its end or the step cap. Returns the
    run's ending if a step ended it (a stop signal, a non-finite loss)."""
    # A checkpoint taken right after an iteration's last batch has the data already at the next
    # iteration: then only the evaluation is left to do for this one.
    if run.train_data.state_dict()["epoch"] != state.iters_done:
        return None
    for _set_name, batch, _ in run.train_data:
        ending = training_step(run, state, batch, stop)
        if ending is not None or state.step >= run.total_steps:
            return ending
    return None


def training_step(run: Run, state: LoopState, batch: dict[str, torch.Tensor],
                  stop: runtime.StopSignal) -> Ending | None:
    """One optimizer step, its log line, and a checkpoint when one is due or a stop was asked for."""
    cfg = run.cfg
    state.step += 1
    batch = {k: v.to(run.device, non_blocking=True) for k, v in batch.items()}
    if state.carry is None:
        state.carry = run.raw_model.initial_carry(batch)
    lrs = [cosine_lr(state.step, base_lr=lr, warmup_steps=cfg["lr_warmup_steps"], total_steps=run.total_steps,
                     min_ratio=cfg["lr_min_ratio"]) for lr in run.base_lrs]
    period_s = 60.0 * float(cfg["checkpoint_every_minutes"] or 0)
    due = period_s > 0 and time.monotonic() - state.last_save >= period_s
    state.carry, sums, (stop_flag, due_flag) = train_step(run.model, state.carry, batch, run.optimizers, lrs,
                                                          run.gbs, run.world_size, [float(stop.requested), float(due)])
    if state.compiling:
        run.say(f"first step with torch.compile took {time.monotonic() - state.tick:.1f} s "
                f"({compile_cache.describe(compile_cache.cache_stats())})")
        state.compiling = False
    state.last_train = {**means(sums, "train", run.gbs), "train/lr": lrs[-1]}

    if not all_finite(sums):
        bad = {k: v for k, v in state.last_train.items() if not np.isfinite(v)}
        error = f"non-finite loss at step {state.step}: {bad}"
        log(run, state, state.last_train)
        run.say(f"diverged: {error}", file=sys.stderr)
        return Ending("diverged", DIVERGED_EXIT, error)
    if state.step % cfg["log_interval"] == 0 or state.step == 1:
        log_progress(run, state, lrs[-1])
    if stop_flag:
        return stop_for_requeue(run, state)
    if due_flag:
        save_checkpoint(run, state)
    return None


def end_of_iteration(run: Run, state: LoopState, stop: runtime.StopSignal) -> Ending | None:
    """Evaluate, tell the sweep's pruner, checkpoint; the run's ending if the pruner or a stop signal ends it."""
    # The data moved to the next iteration only if this one ran to its end (not at a step cap).
    state.iters_done = run.train_data.state_dict()["epoch"]
    if evaluate_and_report(run, state):
        run.say(f"pruned by the sweep at evaluation {state.iters_done} (step {state.step})")
        return Ending("pruned")
    checkpoint_due = bool(run.cfg["checkpoint_every_eval"] and state.iters_done < run.total_iters
                          and state.step < run.total_steps)
    if distributed.agree(stop.requested, run.world_size):  # a long evaluation may have taken the signal
        return stop_for_requeue(run, state, weights=checkpoint_due)   # one save, inside the grace window
    if checkpoint_due:
        save_checkpoint(run, state, weights=True)
    return None


def evaluate_and_report(run: Run, state: LoopState) -> bool:
    """Evaluate, log, and tell the sweep's pruner (if any); True on every rank when it says stop."""
    state.last_eval, state.eval_step = evaluate(run.model, run.raw_model, run.eval_data, run.device,
                                                run.world_size), state.step
    exact = state.last_eval.get("eval/exact_accuracy", float("nan"))
    if state.best_exact is None or exact > state.best_exact:
        state.best_exact = exact
    log(run, state, state.last_eval)
    run.say(f"eval at step {state.step}: exact_accuracy {exact:.4f} "
            f"accuracy {state.last_eval.get('eval/accuracy', float('nan')):.4f}")
    metric = run.pruning_metric
    value = state.last_eval.get(metric, state.last_eval.get(f"eval/{metric}"))
    # The pruner's step unit is the evaluation count (min_iter / max_iter count evaluations).
    prune = bool(run.master and run.ctx.in_sweep and value is not None and state.step < run.total_steps
                 and runtime.report(state.iters_done, value))
    return distributed.agree(prune, run.world_size)


def log(run: Run, state: LoopState, metrics: dict[str, float]) -> None:
    """To progress.jsonl (and W&B), on rank 0."""
    if run.logger is not None:
        run.logger.log(state.step, metrics, epoch=state.step / run.steps_per_epoch,
                       time_s=time.time() - state.started)


def log_progress(run: Run, state: LoopState, lr: float) -> None:
    if not run.master:
        return
    log(run, state, state.last_train)
    now = time.monotonic()
    rate = (state.step - state.tick_step) / max(now - state.tick, 1e-9)
    state.tick, state.tick_step = now, state.step
    run.say(f"step {state.step}/{run.total_steps} epoch {state.step / run.steps_per_epoch:.1f} "
            f"loss {state.last_train['train/lm_loss']:.4f} acc {state.last_train['train/accuracy']:.3f} "
            f"lr {lr:.2e} {rate:.2f} steps/s")


def save_checkpoint(run: Run, state: LoopState, *, weights: bool = False) -> None:
    """latest.pt (and a step_*.pt of the weights with `weights`). Collective: every rank contributes
    its RNG, data position and carry; rank 0 writes."""
    local = {"rng": checkpoint.rng_state(), "data": run.train_data.state_dict(),
             "carry": checkpoint.to_cpu(state.carry)}
    ranks = distributed.gather_objects(local, run.rank, run.world_size)
    if run.master:
        model_state = run.raw_model.state_dict()
        checkpoint.save_latest(run.ckpt_dir, {
            "step": state.step, "iters_done": state.iters_done, "epoch": state.step / run.steps_per_epoch,
            "model": model_state, "optimizers": [o.state_dict() for o in run.optimizers], "config": run.cfg,
            "ranks": ranks, "loop": state.loop_record()})
        if weights:
            checkpoint.save_weights(run.ckpt_dir, step=state.step, model=model_state, config=run.cfg)
    state.last_save = time.monotonic()


# --------------------------------------------------------------------------------------------
# endings


def stop_for_requeue(run: Run, state: LoopState, *, weights: bool = False) -> Ending:
    """Checkpoint (with the step file when one was due) and leave without metrics; the task runner
    requeues and the next attempt resumes here."""
    save_checkpoint(run, state, weights=weights)
    run.say(f"stop signal: checkpointed step {state.step} to {run.ckpt_dir}; exiting for requeue")
    return Ending(None)


def complete(run: Run, state: LoopState) -> Ending:
    """Trained to the end: an evaluation of the final weights (unless that just happened), the final checkpoint."""
    if state.eval_step != state.step:
        evaluate_and_report(run, state)
    save_checkpoint(run, state, weights=True)
    run.say(f"done: {state.step} steps, eval/exact_accuracy {state.last_eval.get('eval/exact_accuracy')}")
    return Ending("completed")


def finish(run: Run, state: LoopState, ending: Ending) -> int:
    """The one way out: the metrics file (unless stopped for requeue), the logs closed, the process group left."""
    if run.master:
        if ending.status is not None:
            final = {k: finite_or_none(v) for k, v in
                     summary(state.step, state.step / run.steps_per_epoch, run.num_params, state.last_train,
                             state.last_eval, state.best_exact).items()}
            if run.ctx.in_sweep:
                runtime.write_metrics(final, status=ending.status, error=ending.error)
            else:
                write_run_metrics(run.run_dir / "metrics.json", final, status=ending.status, error=ending.error)
        if run.logger is not None:
            run.logger.close(exit_code=ending.code)
    distributed.teardown()
    return ending.code


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
