"""`hpoc results`: rank a study's trials; print a table, JSON or CSV."""

from __future__ import annotations

import argparse
import sys

# The table's rows when --top does not say: the head of a 5,000-trial ranking is what a
# reader wants, and the best trial's block should not scroll out of sight behind it.
DEFAULT_ROWS = 50

HELP = "show a study's trials ranked by its objective (table, --json or --csv)"


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared with `hpoc report`."""
    p.add_argument("target", metavar="PATH", nargs="?", default=".",
                   help="build directory (with plan.json), a plan.json, a spec (.hpo, .yaml), "
                        "or an experiment directory (default: the current directory; in a study's "
                        "directory, its one study file)")
    p.add_argument("--sort", metavar="METRIC",
                   help="rank by this reported metric (default: the study's first objective)")
    order = p.add_mutually_exclusive_group()
    order.add_argument("--asc", dest="ascending", action="store_true", default=None,
                       help="smaller is better (default: from the objective)")
    order.add_argument("--desc", dest="ascending", action="store_false",
                       help="larger is better")
    p.add_argument("--scope", choices=("last", "best"), default="last",
                   help="rank by each trial's last reported value (default) or its best one")
    p.add_argument("--status", action="append", metavar="S[,S…]",
                   help="keep only these trials: completed, stopped, time-limit, time-budget, no-reports, "
                        "terminated, error, running, pending, paused (repeatable)")
    p.add_argument("--top", type=int, metavar="N", help="show the N best trials only")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="write JSON to stdout")
    fmt.add_argument("--csv", action="store_true", help="write CSV (one row per trial) to stdout")
    p.add_argument("--history", action="store_true",
                   help="with --json: include every trial's per-epoch reports")
    p.add_argument("--no-best", action="store_true", help="don't print the best trial's config")
    p.add_argument("--all", action="store_true",
                   help=f"table: every trial (default: the best {DEFAULT_ROWS} unless --top says)")


def load_ranked(args: argparse.Namespace):
    """(results, ranking) for the common options; raises ResultsError."""
    from hpoc.results import load, rank
    from hpoc.results.rank import parse_statuses

    results = load(args.target)
    ranking = rank(results, sort=args.sort, ascending=args.ascending, scope=args.scope,
                   statuses=parse_statuses(args.status), top=args.top)
    return results, ranking


def warn(results, ranking, prog: str) -> None:
    for line in list(results.warnings) + list(ranking.notes):
        print(f"{prog}: warning: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from hpoc.results import ResultsError
    from hpoc.results import export, table

    if args.history and not args.json:
        print("hpoc results: error: --history only applies to --json output", file=sys.stderr)
        return 2
    from hpoc.runtime.runlock import one_look

    try:
        with one_look():  # each run lock's SLURM job asked once, though each lock is read twice
            results, ranking = load_ranked(args)
    except ResultsError as exc:
        print(f"hpoc results: error: {exc}", file=sys.stderr)
        return 2
    warn(results, ranking, "hpoc results")
    for words in results.ended:  # why trials of the budget are missing from the table
        print(f"hpoc results: {words}", file=sys.stderr)
    extended = table.extended_said(results, args.target)  # the table has only the trials that ran
    if extended:
        print(f"hpoc results: {extended}", file=sys.stderr)
    if args.json:
        sys.stdout.write(export.to_json(results, ranking, history=args.history))
    elif args.csv:
        sys.stdout.write(export.to_csv(results, ranking))
    else:
        limit = None if args.all or args.top is not None else DEFAULT_ROWS
        sys.stdout.write(table.render(results, ranking, show_best=not args.no_best, limit=limit))
    return 0
