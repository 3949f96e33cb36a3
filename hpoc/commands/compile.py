"""`hpoc compile SPEC -o DIR`: write plan.json and the SLURM scripts for a study."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from pathlib import Path
from typing import Any

from hpoc.files import write_atomic

HELP = "compile a study to DIR/plan.json and SLURM scripts"
SCRIPTS = frozenset({"job.sbatch", "preflight.sbatch"})  # every name render_all may return


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC", help="study file (.hpo, .yaml)")
    p.add_argument("-o", "--out", metavar="DIR", help="output directory (default: build/<study name>)")
    p.add_argument(
        "--emit",
        choices=["ast", "plan", "sbatch"],
        help="print one stage to stdout instead of writing files (written too when -o is given)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write another plan even where queued or running SLURM jobs will read it",
    )
    p.add_argument(
        "--preflight-only",
        action="store_true",
        help="render only the preflight job (checks the cluster, runs no trials)",
    )


def run(args: argparse.Namespace) -> int:
    from hpoc.errors import run_reporting

    return run_reporting(lambda: _compile(args))


def _renderer() -> Any:
    """`hpoc.compiler.render` when it is installed in this checkout, else None."""
    try:
        return importlib.import_module("hpoc.compiler.render")
    except ModuleNotFoundError as exc:
        if exc.name != "hpoc.compiler.render":
            raise
        return None


def _compile(args: argparse.Namespace) -> int:
    from hpoc import plan as plan_mod
    from hpoc.compiler import compile_path
    from hpoc.compiler.summary import summarize
    from hpoc.dsl import ast as A
    from hpoc.errors import HpocError, render_all
    from hpoc.files import not_a_build_dir
    from hpoc.submit.queue import plan_in_use

    if args.out == "":  # `-o "$BUILD"` with BUILD unset: not the default directory, silently
        raise HpocError("-o is empty (an unset shell variable?): give the output directory")
    result = compile_path(args.spec)
    if result.warnings:
        print(render_all(result.warnings), file=sys.stderr)
    plan = plan_mod.hashed(result.plan)  # the scripts name the hash plan.json has
    text = plan_mod.dumps(plan)
    if args.emit == "ast":
        print(A.dump(result.study))
    elif args.emit == "plan":
        sys.stdout.write(text)
    if args.emit and not args.out:
        if args.emit == "sbatch":
            plan_path = Path("build", plan["study"]["name"], "plan.json")
            for name, body in _render(plan, plan_path, args).items():
                print(f"# ---- {name}")
                sys.stdout.write(body)
        return 0
    out = Path(args.out) if args.out else Path("build") / plan["study"]["name"]
    if why := not_a_build_dir(out):
        raise HpocError(why)
    plan_path = out / "plan.json"
    # Everything is rendered before anything is written: a failure leaves the old files
    # as they were, never a new plan beside old scripts.
    files = {"plan.json": text, **_render(plan, plan_path, args)}
    if not args.force:
        in_use, unchecked = plan_in_use(plan_path, text)
        if in_use:
            raise HpocError(in_use + ", or pass --force")
        if unchecked:
            print(f"warning: {unchecked}", file=sys.stderr)
    if note := other_build(out, plan["study"]["name"]):
        print(note, file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    for name in SCRIPTS - files.keys():  # from an earlier compile; they'd run the new plan
        (out / name).unlink(missing_ok=True)
    written = []
    for name, body in sorted(files.items(), key=lambda kv: kv[0] != "plan.json"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        _write(out / name, body, executable=name.endswith((".sh", ".sbatch")))
        written.append(name)
        if args.emit == "sbatch" and name != "plan.json":
            print(f"# ---- {name}")
            sys.stdout.write(body)
    if not args.emit:
        print(f"compiled study `{plan['study']['name']}` into {out}/")
        for line in summarize(plan):
            print(f"  {line}")
        print(f"  wrote: {', '.join(written)}")
        if plan.get("slurm") is None:  # the README's `sbatch build/s/job.sbatch` has nothing to run
            spec = shlex.quote(args.spec)  # pasted into a shell
            how = (f"hpoc convert {spec} -o study.hpo, add `slurm {{ ... }}` to it and compile that"
                   if (plan.get("source") or {}).get("format") == "yaml" else "add `slurm { ... }` to the spec")
            print("  no job script: the study has no `slurm` block")
            print(f"  next: {how}; or run it here: hpoc run {spec} --local")
    return 0


def _render(plan: dict[str, Any], plan_path: Path, args: argparse.Namespace) -> dict[str, str]:
    from hpoc.errors import HpocError

    render = _renderer()
    if render is None:
        if args.emit == "sbatch":
            print("hpoc: note: SLURM rendering is not available in this installation", file=sys.stderr)
        return {}
    try:
        return render.render_all(plan, plan_path=str(plan_path.resolve()), preflight_only=args.preflight_only)
    except render.RenderError as exc:  # a hand-edited plan.json, or a place the checks missed
        raise HpocError(str(exc)) from None


def other_build(out: Path, name: str, *, dry_run: bool = False) -> str | None:
    """A note when `out` holds another study's build, which writing there replaces: a
    mistyped `-o` would otherwise overwrite it without a word."""
    if (before := _study_built_in(out / "plan.json")) in (None, name):
        return None
    if dry_run:
        return f"hpoc: note: {out} holds the build of study `{before}`; submitting would replace it by that of `{name}`"
    return f"hpoc: note: {out} held the build of study `{before}`, now replaced by that of `{name}`"


def _study_built_in(plan_path: Path) -> str | None:
    """The name of the study whose plan is at `plan_path`, or None (none, or unreadable)."""
    import json

    try:
        name = json.loads(plan_path.read_text(encoding="utf-8-sig"))["study"]["name"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return name if isinstance(name, str) else None


def _write(path: Path, text: str, executable: bool = False) -> None:
    write_atomic(path, text, mode=0o755 if executable else None)
