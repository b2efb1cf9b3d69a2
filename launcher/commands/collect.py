"""`sweep collect DIR...`: every trial's result, from one or many sweeps, as one table."""
from __future__ import annotations

import argparse
import sys

HELP = "merge every trials/*/result.json under sweep directories (or globs, or JSON files) into one table"

EPILOG = """\
columns: sweep, trial_id, stage, environment, status, runtime_s, error, job.*,
  hp.<name> (hyperparameters), results.<name> (metrics), other keys as found, path.
  --where/--sort accept bare names too: 'lr < 0.01' means hp.lr, 'accuracy' results.accuracy;
  put names with dots or slashes in backticks: '`results.eval/exact_accuracy` > 0.5'.
examples:
  sweep collect $SCRATCH/sweeps/* --sort exact_accuracy
  sweep collect '/network/scratch/*/*/sweeps/*' --format parquet --out all.parquet
  sweep collect experiments/*.json --where "status == 'completed' and lr < 1e-3" --format markdown
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("collect", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="DIR", help="sweep directories, globs, scratch spaces or JSON files")
    p.add_argument("--format", choices=("table", "csv", "json", "markdown", "parquet"),
                   help="output format (default: from --out's extension, else table)")
    p.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    p.add_argument("--where", metavar="EXPR", help="keep rows matching a pandas DataFrame.query expression")
    p.add_argument("--sort", metavar="METRIC", help="sort by this column, largest first")
    p.add_argument("--asc", action="store_true", help="with --sort: smallest first")
    p.add_argument("--columns", metavar="A,B,...", help="only these columns (names or globs such as 'hp.*')")
    p.add_argument("--limit", type=int, metavar="N",
                   help="at most N rows (default: 50 for a terminal table, all otherwise; 0 = all)")
    p.add_argument("--skipped", metavar="FILE", help="also write every skipped file and why to FILE")
    p.add_argument("--workers", type=int, metavar="N", help="parsing processes (default: the CPUs available)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # pandas is imported here, not at module level: `sweep --help` and `sweep status` stay fast.
    from jobs.atomic import write_text_atomic
    from jobs.errors import UserError
    from results import collect as col
    from results import table

    if args.limit is not None and args.limit < 0:
        raise UserError(f"--limit {args.limit} is negative", fix="give a row count, or 0 for all rows")
    fmt = table.format_for(args.out, args.format)
    got = col.collect(args.paths, workers=args.workers)
    for line in col.describe_skipped(got.skipped):
        print(line, file=sys.stderr)
    if args.skipped:
        write_text_atomic(args.skipped, "".join(f"{s.path}\t{s.reason}\n" for s in got.skipped))
    frame = got.frame
    if frame.empty:
        where = ", ".join(args.paths)
        raise UserError(f"no trial results under {where} ({len(got.sweeps)} sweep dir(s), "
                        f"{got.files} file(s) read, {len(got.skipped)} skipped)",
                        fix="check the path; trials write trials/<id>/result.json when they finish")
    if args.where:
        frame = col.where(frame, args.where)
    if args.sort:
        frame = col.sort(frame, args.sort, ascending=args.asc)
    to_terminal = args.out is None and fmt in ("table", "markdown")
    frame = table.select_columns(frame, args.columns.split(",") if args.columns else None,
                                 quiet=to_terminal and fmt == "table",
                                 first=col.resolve_column(frame, args.sort) if args.sort else None)
    limit = args.limit if args.limit is not None else (50 if to_terminal else 0)
    total = len(frame)
    if limit and total > limit:
        frame = frame.head(limit)

    if args.out:
        table.write(frame, fmt, args.out)
        print(f"wrote {len(frame)} rows x {frame.shape[1]} columns to {args.out} ({fmt})", file=sys.stderr)
    elif fmt == "table":
        table.print_table(frame, title=f"{total} trial result(s)" +
                      (f", {len(got.sweeps)} sweep(s)" if got.sweeps else ""))
    elif fmt == "parquet":
        raise UserError("parquet is binary", fix="add --out FILE.parquet")
    else:
        sys.stdout.buffer.write(table.to_bytes(frame, fmt))
        sys.stdout.flush()
    if len(frame) < total:
        print(f"showing {len(frame)} of {total} rows (--limit 0 shows all)", file=sys.stderr)
    return 0
