"""`sweep best DIR`: the best trial's overrides, ready to paste after `python -m train`."""
from __future__ import annotations

import argparse
import shlex
import sys

HELP = "print the best trial's overrides as shell-quoted key=value arguments"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("best", help=HELP, description=HELP,
                              epilog="example: python -m train $(sweep best $SCRATCH/sweeps/lr_search)")
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory")
    p.add_argument("--metric", help="the metric to rank by (default: the sweep file's, else a sensible guess)")
    p.add_argument("--goal", choices=("max", "min", "maximize", "minimize"),
                   help="whether higher or lower is better (default: the sweep file's, else guessed from the name)")
    p.add_argument("--environment", help="only trials of this environment")
    p.add_argument("--stage", type=int, help="only trials of this progressive stage")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from jobs.errors import UserError
    from results import analysis as an
    from results.collect import describe_skipped
    from results.report import load_sweep

    manifest, frame, skipped = load_sweep(args.sweep_dir)
    for line in describe_skipped(skipped):
        print(line, file=sys.stderr)
    metric = an.choose_metric(frame, manifest, args.metric, args.goal)
    for key, value in (("environment", args.environment), ("stage", args.stage)):
        if value is not None:
            if key not in frame:
                raise UserError(f"--{key} {value}: the results carry no {key}", fix=f"drop --{key}")
            frame = frame[frame[key].astype(str) == str(value)]
    good = an.best_candidates(frame, metric, manifest)   # successive halving: of the highest rung reached
    if good.empty:
        raise UserError(f"no completed trial in {args.sweep_dir} has a finite {metric.name}",
                        fix="wait for trials to finish, or pick another --metric")
    top = good.iloc[0]
    overrides = an.trial_overrides(manifest, top)
    print(f"# best: trial {top.get('trial_id')}, {metric.name} = {float(top[metric.column]):.6g} "
          f"({metric.goal}, {len(good)} completed)", file=sys.stderr)
    print(" ".join(shlex.quote(a) for a in an.override_args(overrides)))
    return 0
