"""`hpoc report`: a self-contained static HTML report with plots (PNGs written beside it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write a self-contained HTML report of a study, with plots"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from hpoc.commands.results import add_common

    add_common(p)
    p.add_argument("-o", "--output", default="report.html", metavar="FILE",
                   help="HTML file to write (default: report.html; a directory: report.html "
                        "in it); plots are also written beside it as FILE-STEM-<plot>.png")
    p.add_argument("--no-png", action="store_true",
                   help="only write the HTML (it embeds the plots anyway)")


def run(args: argparse.Namespace) -> int:
    from hpoc import __version__
    from hpoc.commands.results import load_ranked, warn
    from hpoc.results import ResultsError

    try:
        results, ranking = load_ranked(args)
    except ResultsError as exc:
        print(f"hpoc report: error: {exc}", file=sys.stderr)
        return 2
    warn(results, ranking, "hpoc report")
    from hpoc.results import html, plots, table

    extended = table.extended_said(results, args.target)  # as results says it, and the page
    if extended:
        print(f"hpoc report: {extended}", file=sys.stderr)

    figures = plots.make_plots(results, ranking)
    out = Path(args.output)
    if out.is_dir() or args.output.endswith(("/", "\\")):  # `-o reports/`: the report in it
        out = out / "report.html"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # --top asks for its rows: all in sight; else the best few, the rest folded
        rows_shown = None if args.top is not None else html.TABLE_ROWS
        out.write_text(html.render(results, ranking, figures, __version__, target=args.target,
                                   rows_shown=rows_shown), encoding="utf-8")
        written = []
        if not args.no_png:
            for plot in figures:
                png = out.with_name(f"{out.stem}-{plot.name}.png")
                png.write_bytes(plot.png)
                written.append(png.name)
            # An earlier report's plot this one lacks would pass for this one's.
            for name, *_ in plots.PLOTS:
                stale = out.with_name(f"{out.stem}-{name}.png")
                if stale.name not in written and stale.is_file():
                    stale.unlink()
    except OSError as exc:
        print(f"hpoc report: error: cannot write {exc.filename or out}: {exc.strerror}",
              file=sys.stderr)
        return 2
    n, k = len(figures), len(ranking.trials)
    print(f"wrote {out} ({n} plot{'s' * (n != 1)}, {k} trial{'s' * (k != 1)})")
    if written:
        print(f"plots beside it: {', '.join(written)}")
    return 0
