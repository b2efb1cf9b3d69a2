"""`sweep report DIR`: markdown report, figures and csv for one sweep."""
from __future__ import annotations

import argparse
import sys

HELP = "write reports/report.md, reports/figures/*.png and reports/results.csv for a sweep"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help=HELP, description=HELP)
    p.add_argument("sweep_dir", metavar="DIR", help="the sweep directory")
    p.add_argument("--out", metavar="DIR", help="where to write (default: DIR/reports)")
    p.add_argument("--metric", help="the metric to rank by (default: the sweep file's, else eval/exact_accuracy, "
                                    "exact_accuracy, accuracy, else the first numeric result)")
    p.add_argument("--goal", choices=("max", "min", "maximize", "minimize"),
                   help="whether higher or lower is better (default: the sweep file's, else guessed from the name)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: matplotlib and pandas cost a second, which other subcommands never pay.
    from results.collect import describe_skipped
    from results.report import build_report

    report = build_report(args.sweep_dir, args.out, metric=args.metric, goal=args.goal)
    for line in describe_skipped(report.skipped):
        print(line, file=sys.stderr)
    print(f"metric: {report.metric.name} ({report.metric.goal}; {report.metric.source})", file=sys.stderr)
    print(report.path)
    for path in report.figures.values():
        print(path)
    print(report.csv)
    return 0
