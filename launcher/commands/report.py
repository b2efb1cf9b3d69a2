"""`sweep report DIR [DIR...]`: one sweep's markdown report, figures and csv; or several sweeps side by side."""
from __future__ import annotations

import argparse
import sys

HELP = "write reports/report.md, reports/figures/*.png and reports/results.csv for a sweep; with several, compare them"

EPILOG = """\
examples:
  sweep report $SCRATCH/sweeps/lr                       # -> $SCRATCH/sweeps/lr/reports/report.md
  sweep report $SCRATCH/sweeps/lr_v1 $SCRATCH/sweeps/lr_v2 ~bob/sweeps/lr --out cmp
      # -> cmp/compare.md: the best trial of each sweep, and the metric's distribution per sweep
      #    in one figure (cmp/metric_by_sweep.png); cmp/results.csv holds every row
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dirs", nargs="+", metavar="DIR", help="the sweep directory (several: compare them)")
    p.add_argument("--out", metavar="DIR", help="where to write (default: DIR/reports; comparing: "
                                                "./compare_<A>_vs_<B>...)")
    p.add_argument("--metric", help="the metric to rank by (default: the (first) sweep file's, else eval/exact_accuracy, "
                                    "exact_accuracy, accuracy, else the first numeric result)")
    p.add_argument("--goal", choices=("max", "min", "maximize", "minimize"),
                   help="whether higher or lower is better (default: the sweep file's, else guessed from the name)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: matplotlib and pandas cost a second, which other subcommands never pay.
    from results.collect import describe_skipped

    if len(args.sweep_dirs) > 1:
        from results.compare import build_comparison

        cmp = build_comparison(args.sweep_dirs, args.out, metric=args.metric, goal=args.goal)
        for line in describe_skipped(cmp.skipped):
            print(line, file=sys.stderr)
        print(f"metric: {cmp.metric.name} ({cmp.metric.goal}; {cmp.metric.source})", file=sys.stderr)
        for path in (cmp.path, cmp.figure, cmp.csv):
            if path:
                print(path)
        return 0

    from results.report import build_report

    report = build_report(args.sweep_dirs[0], args.out, metric=args.metric, goal=args.goal)
    for line in describe_skipped(report.skipped):
        print(line, file=sys.stderr)
    print(f"metric: {report.metric.name} ({report.metric.goal}; {report.metric.source})", file=sys.stderr)
    print(report.path)
    for path in report.figures.values():
        print(path)
    print(report.csv)
    return 0
