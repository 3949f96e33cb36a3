"""`hpoc convert CONFIG.yaml [-o STUDY.hpo [--force]]`: an itwinai HPO config as a .hpo study.

The output is in `hpoc fmt`'s layout and compiles to the same plan as the YAML (relative
paths resolve against the .hpo file's directory: keep it beside the config). The config is
checked first: errors exit 2 and write nothing; warnings go to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hpoc.files import write_atomic

HELP = "convert an itwinai YAML config into a .hpo study that compiles to the same plan"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="CONFIG", help="itwinai config (.yaml or .yml)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the study here (default: stdout)")
    p.add_argument("--force", action="store_true",
                   help="replace FILE although it holds another study (one edited since it was converted)")


def run(args: argparse.Namespace) -> int:
    from hpoc.errors import run_reporting

    return run_reporting(lambda: _convert(args), failed="could not convert the config")


def _convert(args: argparse.Namespace) -> int:
    from hpoc.compiler import spec_file
    from hpoc.errors import HpocError, render_all
    from hpoc.yaml import convert, is_yaml

    if not is_yaml(args.spec):
        if os.path.isdir(args.spec):
            configs = sorted(e for e in os.listdir(args.spec) if is_yaml(e))
            shown = f": {', '.join(os.path.join(args.spec, e) for e in configs[:3])}" if configs else ""
            raise HpocError(f"{args.spec} is a directory; pass the itwinai config (.yaml or .yml) to convert{shown}")
        raise HpocError(f"{args.spec}: not a YAML config (.yaml or .yml); .hpo files need no converting")
    if args.output and _same_file(args.output, args.spec):
        raise HpocError(f"{args.output} is the config being converted; refusing to overwrite it "
                        f"(write the study beside it, e.g. -o {Path(args.spec).with_suffix('.hpo').name})")
    text, warnings = convert(args.spec)
    if warnings:
        print(render_all(warnings), file=sys.stderr)
    if not args.output:
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if out.is_dir():
        raise HpocError(f"{out} is a directory; name the .hpo file to write")
    if out.is_file() and not args.force:
        if out.read_text(encoding="utf-8", errors="replace") == text:
            print(f"{out} is up to date", file=sys.stderr)
            return 0
        # The study a user converted, then gave what the YAML cannot say (a `slurm` block).
        raise HpocError(f"{out} exists and differs from this conversion (edited since it was converted?); "
                        f"refusing to replace it: pass --force, or write elsewhere (-o another .hpo file)")
    if os.path.realpath(out.parent) != os.path.dirname(spec_file(args.spec)):  # through links, as compiled
        print(f"hpoc: note: {out} is not beside {args.spec}: relative paths (storage, modules) "
              f"will resolve against {out.parent.resolve()}", file=sys.stderr)
    write_atomic(out, text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _same_file(a: str, b: str) -> bool:
    """Whether `a` names the file `b` (through symlinks or hard links too)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return Path(a).resolve() == Path(b).resolve()
