"""`python -m examples.keydoor key=value ...`: train the ConSpec agent on one key-door task.

  exit 0  finished (metrics written to $SWEEP_RESULT_FILE inside a sweep), or stopped by
          SIGUSR1/USR2/TERM after saving a checkpoint (the sweep's runner requeues the task)
  exit 2  a bad argument (jobs.errors.UserError), one line on stderr

Inside a sweep the checkpoint lives in $SWEEP_CHECKPOINT_DIR (set it by hand to checkpoint
outside one); an existing checkpoint there is resumed, exactly.
"""
from __future__ import annotations

import sys
import time
from typing import Any

from jobs import runtime
from jobs.errors import UserError

CHECKPOINT_EVERY_S = 60.0   # Mila's preemption kills without a signal: only periodic saves survive it
PRINT_EVERY_S = 5.0
EVAL_EPISODES = 200
BASELINE_EPISODES = 1000
BASELINE_SEED = 1_000_003   # layouts for the random baseline and the evaluation, apart from training's


def _line(t: Any, elapsed: float) -> str:
    m = t.metrics()
    return (f"episode {t.episode}/{t.cfg.episodes}  mean_reward {m['mean_reward']:.3f}  "
            f"success_rate {m['success_rate']:.2f}  doors {m['doors_opened']:.2f}  eps {t.epsilon:.3f}  "
            f"prototypes {m['prototypes_valid']}/{t.cfg.num_prototypes}  {elapsed:.0f}s")


def final_metrics(trainer: Any) -> dict[str, Any]:
    """A trained agent's numbers: the last training episodes' metrics, EVAL_EPISODES without exploration
    and BASELINE_EPISODES of a uniformly random policy, both on the fixed layouts of BASELINE_SEED."""
    import numpy as np

    from examples.keydoor import env

    cfg = trainer.cfg
    rewards, successes = env.random_policy(cfg.environment, BASELINE_EPISODES, np.random.default_rng(BASELINE_SEED),
                                           cfg.max_steps_per_episode)
    return {**trainer.metrics(), **trainer.evaluate(EVAL_EPISODES, BASELINE_SEED),
            "random_success_rate": float(successes.mean()), "random_mean_reward": float(rewards.mean())}


def run(argv: list[str], stop: Any = None) -> int:
    # First of all: a requeue during the imports below must find the handler, not kill us.
    stop = stop or runtime.StopSignal.install()
    from examples.keydoor.config import parse_args
    cfg = parse_args(argv)                  # before torch: a typo costs no import time

    import dataclasses
    import os

    import torch

    from examples.keydoor.trainer import CHECKPOINT, Trainer
    from train.metrics import RunLogger

    torch.set_num_threads(1)    # many trials share a node's cores; one thread each is the fast way
    ctx = runtime.context()
    start = time.monotonic()
    trainer = Trainer(cfg)
    ckpt_dir = ctx.checkpoint_dir
    resumed_from = None
    if ckpt_dir is not None and (ckpt_dir / CHECKPOINT).exists():
        trainer.load(ckpt_dir / CHECKPOINT)
        resumed_from = trainer.episode
        print(f"resumed from {ckpt_dir / CHECKPOINT} at episode {trainer.episode}", flush=True)
    # Progress: trials/<id>/progress.jsonl (the report's learning curves; none outside a sweep) and,
    # with wandb=true, a W&B run named by the trial id, tagged with the task (and the sweep).
    logger = RunLogger(ctx.trial_dir, config=dataclasses.asdict(cfg), enable_wandb=cfg.wandb, wandb_key="wandb",
                       project=os.environ.get("WANDB_PROJECT") or "keydoor", run_name=ctx.trial_id,
                       run_id=ctx.trial_id, resume_step=trainer.episode, tags=[cfg.environment])
    saved = printed = time.monotonic()
    while not trainer.finished and not stop.requested:
        stats = trainer.iteration()
        metrics = trainer.metrics()
        logger.log(trainer.episode, {**metrics, **stats})
        watched = runtime.metric("mean_reward")                        # the sweep's metric
        if watched in metrics and runtime.report(trainer.episode, metrics[watched]):   # a pruner says stop
            runtime.write_metrics({**metrics, "resumed_from_episode": resumed_from}, status="pruned")
            logger.close()
            return 0
        now = time.monotonic()
        if ckpt_dir is not None and now - saved >= CHECKPOINT_EVERY_S and not trainer.finished:
            trainer.save(ckpt_dir)
            saved = now
        if now - printed >= PRINT_EVERY_S or trainer.finished:
            print(_line(trainer, now - start), flush=True)
            printed = now
    if stop.requested and not trainer.finished:
        if ckpt_dir is not None:
            trainer.save(ckpt_dir)
        print(f"stopped by signal {stop.signum} at episode {trainer.episode}; "
              f"checkpoint {'saved in ' + str(ckpt_dir) if ckpt_dir else 'not kept (no SWEEP_CHECKPOINT_DIR)'}",
              flush=True)
        logger.close()
        return 0

    result = {**final_metrics(trainer), "resumed_from_episode": resumed_from,
              "attempt_time_s": round(time.monotonic() - start, 2)}     # this attempt's, not the trial's
    runtime.write_metrics(result)
    logger.log(trainer.episode, {k: v for k, v in result.items() if k.startswith(("eval_", "random_"))})
    logger.close()
    print("result: " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()),
          flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UserError.exit_code
