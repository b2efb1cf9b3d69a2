"""`sweep collect DIR...`: every trial's result, from one or many sweeps (of one or many users), as one table."""
from __future__ import annotations

import argparse
import re
import sys
import time

HELP = "merge every trials/*/result.json under sweep directories (or globs, or JSON files) into one table"

EPILOG = """\
columns: sweep, user, trial_id, stage, environment, status, runtime_s, error, job.*,
  hp.<name> (hyperparameters), results.<name> (metrics), other keys as found, path.
  `user` is the owner of the sweep directory. --where/--sort accept bare names too: 'lr < 0.01'
  means hp.lr, 'accuracy' results.accuracy; put names with dots or slashes in backticks:
  '`results.eval/exact_accuracy` > 0.5'.
cache: sweeps of 512 trials or more keep their parsed results in reports/collect-cache.arrow
  (or ~/.cache/slurmsweep/collect/ when the sweep is not writable), and a collect re-reads only
  the results written since (the task runner notes each in <sweep>/result_index/).
examples:
  sweep collect $SCRATCH/sweeps/* --sort exact_accuracy
  sweep collect '/network/scratch/*/*/sweeps' --since 2d --user alice,bob --out recent.csv
  sweep collect experiments/*.json --where "status == 'completed' and lr < 1e-3" --format markdown
"""

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """--since: '3d', '12h', '30m', '1w' ago, or a date/time ('2026-12-01', '2026-12-01T08:00',
    local time unless it says Z or an offset); seconds since the epoch."""
    import datetime as dt

    from jobs.errors import UserError

    now = time.time() if now is None else now
    m = _RELATIVE.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since {text!r} is neither an age nor a date",
                        fix="write an age such as 3d, 12h, 30m, 1w, or a date such as 2026-12-01 or 2026-12-01T08:00") from None
    return when.timestamp()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("collect", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="DIR", help="sweep directories, globs, scratch spaces (many users' "
                                                           "sweep roots) or JSON files")
    p.add_argument("--format", choices=("table", "csv", "json", "markdown", "parquet"),
                   help="output format (default: from --out's extension, else table)")
    p.add_argument("--out", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    p.add_argument("--where", metavar="EXPR", help="keep rows matching a pandas DataFrame.query expression")
    p.add_argument("--sort", metavar="METRIC", help="sort by this column, largest first")
    p.add_argument("--asc", action="store_true", help="with --sort: smallest first")
    p.add_argument("--columns", metavar="A,B,...", help="only these columns (names or globs such as 'hp.*')")
    p.add_argument("--limit", type=int, metavar="N",
                   help="at most N rows (default: 50 for a terminal table, all otherwise; 0 = all)")
    p.add_argument("--since", metavar="AGE|DATE",
                   help="only results written since then: 3d, 12h, 30m, 1w ago, or a date (2026-12-01[T08:00])")
    p.add_argument("--user", action="append", metavar="NAME[,NAME]",
                   help="only sweeps these users own (repeat or separate with commas)")
    p.add_argument("--skipped", metavar="FILE", help="also write every skipped file and why to FILE")
    p.add_argument("--workers", type=int, metavar="N", help="parsing processes (default: the CPUs available)")
    p.add_argument("--no-cache", dest="cache", action="store_false",
                   help="read every result file, and neither read nor write the sweeps' collect caches")
    p.add_argument("--rescan", action="store_true",
                   help="check every result file by stat() instead of trusting the sweeps' result indexes "
                        "(after copying results in by hand)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # Arrow is imported here, not at module level: `sweep --help` and `sweep status` stay fast.
    # pandas only when a row filter, a sort or a rendered table needs it.
    from jobs.errors import UserError
    from results import collect as col
    from results import table

    if args.limit is not None and args.limit < 0:
        raise UserError(f"--limit {args.limit} is negative", fix="give a row count, or 0 for all rows")
    fmt = table.format_for(args.out, args.format)
    if fmt == "parquet" and not args.out:     # before the collect, not after it
        raise UserError("parquet is binary", fix="add --out FILE.parquet")
    since = parse_since(args.since) if args.since else None
    users = {u.strip() for group in args.user or [] for u in group.split(",") if u.strip()} or None
    # wait=False: the sweeps' caches are written on a thread while the output is made.
    got = col.collect(args.paths, workers=args.workers, since=since, users=users, cache=args.cache,
                      rescan=args.rescan, wait=False)
    try:
        return _output(args, got, fmt, since, users)
    finally:
        got.wait()


def _output(args: argparse.Namespace, got, fmt: str, since: float | None, users: set[str] | None) -> int:
    from jobs.atomic import write_text_atomic
    from jobs.errors import UserError
    from results import collect as col
    from results import table

    if (line := col.describe_unreadable(got.unreadable)) is not None:
        print(line, file=sys.stderr)
    for line in col.describe_skipped(got.skipped):
        print(line, file=sys.stderr)
    if args.skipped:
        write_text_atomic(args.skipped, "".join(f"{s.path}\t{s.reason}\n" for s in got.skipped))
    if got.table.num_rows == 0:
        where = ", ".join(args.paths)
        what = " written since then" if since is not None else ""
        raise UserError(f"no trial results{what} under {where} ({len(got.sweeps)} sweep dir(s), "
                        f"{got.files} file(s) found, {len(got.skipped)} skipped)",
                        fix="check the path" + (", --since" if since is not None else "") + (", --user" if users else "")
                            + "; trials write trials/<id>/result.json when they finish")
    to_terminal = args.out is None and fmt in ("table", "markdown")
    limit = args.limit if args.limit is not None else (50 if to_terminal else 0)
    total = got.table.num_rows
    if fmt in ("csv", "parquet") and not args.where and not args.sort:
        # The common case, kept in Arrow: no pandas import, Arrow's CSV writer.
        out = got.table
        if args.columns:
            out = out.select(table.match_columns(out.column_names, args.columns.split(",")))
        if limit and total > limit:
            out = out.slice(0, limit)
        shown, width = out.num_rows, out.num_columns
    else:
        frame = got.frame
        if args.where:
            frame = col.where(frame, args.where)
        if args.sort:
            frame = col.sort(frame, args.sort, ascending=args.asc)
        frame = table.select_columns(frame, args.columns.split(",") if args.columns else None,
                                     quiet=to_terminal and fmt == "table",
                                     first=col.resolve_column(frame, args.sort) if args.sort else None)
        total = len(frame)
        if limit and total > limit:
            frame = frame.head(limit)
        out, shown, width = frame, len(frame), frame.shape[1]

    if args.out:
        table.write(out, fmt, args.out)
        print(f"wrote {shown} rows x {width} columns to {args.out} ({fmt})", file=sys.stderr)
    elif fmt == "table":
        table.print_table(out, title=f"{total} trial result(s)" +
                          (f", {len(got.sweeps)} sweep(s)" if got.sweeps else ""))
    else:
        sys.stdout.buffer.write(table.to_bytes(out, fmt))
        sys.stdout.flush()
    if shown < total:
        print(f"showing {shown} of {total} rows (--limit 0 shows all)", file=sys.stderr)
    return 0
