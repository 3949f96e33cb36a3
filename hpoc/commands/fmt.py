"""`hpoc fmt SPEC...`: print, check or rewrite studies in the canonical layout.

`hpoc fmt -` reads the study from standard input and prints it formatted, as editors
that format a buffer through a command expect."""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from pathlib import Path

from hpoc.files import write_atomic

HELP = "format studies in the canonical layout (comments are kept)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="study file(s) (.hpo); `-` reads standard input")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 2 if a file is not formatted")
    mode.add_argument("--write", "-w", action="store_true", help="rewrite files in place")
    p.add_argument("--diff", action="store_true", help="show what would change, as a diff (implies --check)")


def run(args: argparse.Namespace) -> int:
    from hpoc.errors import run_reporting

    if args.diff and args.write:
        return run_reporting(_diff_with_write)
    args.check = args.check or args.diff  # `--diff` alone printed the whole study, no diff
    status = 0
    for spec in args.specs:
        status = max(status, run_reporting(lambda: _fmt(spec, args), failed="could not format the study"))
    return status


def _diff_with_write() -> int:
    from hpoc.errors import HpocError

    raise HpocError("--diff shows what --write would change, without changing it: give one of them")


def _fmt(spec: str, args: argparse.Namespace) -> int:
    from hpoc.dsl.format import format_study
    from hpoc.dsl.parse import parse, read_spec, read_stream
    from hpoc.errors import HpocError
    from hpoc.yaml import is_yaml

    if is_yaml(spec):  # read as .hpo, its first `:` would be the error
        raise HpocError(f"{spec} is a YAML config, not a .hpo study: `hpoc convert {shlex.quote(spec)}` writes "
                        "it as one, in this layout")
    if spec == "-":
        if args.write:
            raise HpocError("standard input cannot be rewritten in place: `hpoc fmt -` prints it formatted")
        text, spec = read_stream(sys.stdin.buffer), "<stdin>"
    else:
        text, _ = read_spec(spec)
    study = parse(text, spec)
    new = format_study(study)
    if parse(new, spec) != study:  # the layout must never change meaning
        raise RuntimeError(f"formatting {spec} would change its meaning")
    if args.check:
        if new == text:
            return 0
        fix = "`hpoc fmt -` prints it formatted" if spec == "<stdin>" else f"run `hpoc fmt --write {shlex.quote(spec)}`"
        print(f"{spec}: not formatted ({fix})", file=sys.stderr)
        if args.diff:
            sys.stdout.writelines(
                difflib.unified_diff(
                    text.splitlines(True), new.splitlines(True), f"{spec}", f"{spec} (formatted)"
                )
            )
        return 2
    if args.write:
        if new != text:
            path = Path(spec).resolve()  # through a symlink: the link stays one
            write_atomic(path, new)  # keeps the file's permissions
            print(f"formatted {spec}", file=sys.stderr)
        return 0
    sys.stdout.write(new)
    return 0
