"""`hpoc check SPEC...`: report every problem in a study, or say it is fine."""

from __future__ import annotations

import argparse
import sys

HELP = "check a study for errors (all of them at once) without writing anything"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="study file(s) (.hpo, .yaml)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when a study is fine")
    p.add_argument("--no-warnings", action="store_true", help="do not print warnings")
    p.add_argument(
        "--preflight",
        action="store_true",
        help="also check what a job would find out too late: the pipeline imports (in a separate "
        "Python process), the data is there, the storage path is writable, the search and logger "
        "libraries are installed, a slurm.python path imports hpoc and Ray, and "
        "`sbatch --test-only` takes the job",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the diagnostics as one JSON list on stdout (for editors and CI)",
    )


def run(args: argparse.Namespace) -> int:
    from hpoc.errors import run_reporting

    if args.json:
        return run_reporting(lambda: _json(args.specs))
    status = 0
    for spec in args.specs:
        status = max(status, run_reporting(lambda: _check(spec, args), failed="the study is not valid"))
    return status


def _check(spec: str, args: argparse.Namespace) -> int:
    from hpoc.compiler import compile_path
    from hpoc.compiler.summary import summarize
    from hpoc.errors import render_all

    result = compile_path(spec)
    if result.warnings and not args.no_warnings:
        print(render_all(result.warnings), file=sys.stderr)
    if not args.quiet:
        name = result.plan["study"]["name"]
        n = len(result.warnings)
        tail = f" ({n} warning{'s' if n != 1 else ''})" if n and not args.no_warnings else ""
        print(f"{spec}: study `{name}` is valid{tail}")
        for line in summarize(result.plan):
            print(f"  {line}")
    if getattr(args, "preflight", False):  # the only path that runs user code, in a child process
        from hpoc.runtime.login_preflight import report

        return report(result.plan, quiet=args.quiet)
    return 0


def _json(specs: list[str]) -> int:
    """Diagnostics of every spec as JSON: [{file, line, col, severity, code, message, ...}]."""
    import dataclasses
    import json

    from hpoc.compiler import compile_path
    from hpoc.errors import SpecError

    out, status = [], 0
    for spec in specs:
        try:
            diags = compile_path(spec).warnings
        except SpecError as exc:
            diags, status = exc.diagnostics, 2
        out += [dataclasses.asdict(d) for d in diags]
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return status
