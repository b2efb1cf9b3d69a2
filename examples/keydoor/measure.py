"""How well the agent learns each task against a uniformly random policy, measured in one run.

    python -m examples.keydoor.measure --episodes 2000 --seeds 3 [key=value ...]

For every environment and seed: train with the given (else default) hyperparameters, then
report the success rate of the last 100 training episodes, of 200 evaluation episodes without
exploration, and of 1,000 random-policy episodes (fixed layouts, the same in every row), with
the training time. What a sweep trial reports as eval_/random_success_rate is the same measure.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from examples.keydoor import env
from examples.keydoor.cli import final_metrics
from examples.keydoor.config import parse_args
from examples.keydoor.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--environments", default=",".join(env.TASKS))
    parser.add_argument("overrides", nargs="*", help="key=value hyperparameters")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"{'environment':<12}{'seed':>5}{'random':>9}{'train':>8}{'eval':>8}{'eval/random':>13}{'time_s':>8}")
    for task in args.environments.split(","):
        for seed in range(args.seeds):
            cfg = parse_args([*args.overrides, f"environment={task}", f"episodes={args.episodes}", f"seed={seed}"])
            start = time.monotonic()
            trainer = Trainer(cfg)
            while not trainer.finished:
                trainer.iteration()
            elapsed = time.monotonic() - start
            final = final_metrics(trainer)
            rnd, ev = final["random_success_rate"], final["eval_success_rate"]
            ratio = f"{ev / rnd:.1f}x" if rnd > 0 else ("inf" if ev > 0 else "-")
            print(f"{task:<12}{seed:>5}{rnd:>9.3f}{final['success_rate']:>8.2f}{ev:>8.2f}{ratio:>13}"
                  f"{elapsed:>8.1f}", flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
