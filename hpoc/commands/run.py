"""`hpoc run SPEC|PLAN`: run a study's trials (one shard) with Ray Tune.

    hpoc run examples/digits/study.hpo --local     # embedded Ray on this machine
    hpoc run build/fashion/plan.json               # inside a SLURM job (RAY_ADDRESS set)

A .hpo (or .yaml) spec is compiled in this process; a plan.json is read as is.
Without RAY_ADDRESS the run is local; `--local` forces it. `--retry-errored` (or
HPOC_RETRY_ERRORED=1) runs only the errored trials of the run there again (rerun.py). A local run refuses while a
queued or running SLURM job of this user will run the same shard of the same experiment
(`--force` runs it anyway): whichever of the two comes second would stop at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

RETRY_ENV = "HPOC_RETRY_ERRORED"  # hpoc.runtime.rerun.ENV (not imported: a light CLI)
HELP = "run a study's trials with Ray Tune (local, or on the job's Ray cluster)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="SPEC|PLAN", help="study file (.hpo, .yaml) or a compiled plan.json")
    p.add_argument("--local", action="store_true", default=None,
                   help="start an embedded Ray on this machine (default when RAY_ADDRESS is unset)")
    p.add_argument("--shard", type=int, default=0, metavar="K",
                   help="which shard (job-array task) to run; default 0")
    p.add_argument("--cpus", type=_positive, metavar="N",
                   help="local runs: CPU slots Ray may hand out (default: this machine's cores)")
    p.add_argument("--fresh", action="store_true",
                   help="move a previous run of this study aside and start over "
                        "(default: resume an interrupted run, skip a finished one)")
    add_retry_arguments(p)
    p.add_argument("--force", action="store_true",
                   help="local runs: run even if a queued or running SLURM job will run the "
                        "same shard of this study's storage")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show Ray's logs and the trials' own output")


def add_retry_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retry-errored", action="store_true",
                   help="run only the errored trials of a finished (or interrupted) run again, "
                        "from scratch (after fixing what made them fail); finished trials are "
                        f"kept. Also set by {RETRY_ENV}=1")
    p.add_argument("--from-checkpoint", action="store_true",
                   help="with --retry-errored: continue the errored trials from their last "
                        f"checkpoint instead ({RETRY_ENV}=checkpoint)")


def retry_mode(args: argparse.Namespace) -> str | None:
    """--retry-errored's mode (rerun.SCRATCH/CHECKPOINT), else HPOC_RETRY_ERRORED's; raises
    HpocError for a misuse."""
    from hpoc.errors import HpocError
    from hpoc.runtime import rerun

    if args.from_checkpoint and not args.retry_errored:
        raise HpocError("--from-checkpoint only goes with --retry-errored")
    if args.retry_errored:
        mode = rerun.CHECKPOINT if args.from_checkpoint else rerun.SCRATCH
    else:
        try:
            mode = rerun.mode_from_env()
        except rerun.RetryError as exc:
            raise HpocError(str(exc)) from None
    if mode and getattr(args, "fresh", False):
        raise HpocError(rerun.WITH_FRESH)
    return mode


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def load_plan(target: str) -> dict[str, Any]:
    """The plan of a spec (compiled here) or of a plan.json; raises HpocError/SpecError."""
    from hpoc.plan import load, plan_file

    path = plan_file(target)
    if path.suffix == ".json":
        return load(path)
    from hpoc.compiler import compile_path
    from hpoc.errors import render_all
    from hpoc.plan import content_hash

    result = compile_path(path)
    if result.warnings:
        print(render_all(result.warnings), file=sys.stderr)
    plan = result.plan
    plan["content_hash"] = content_hash(plan)
    return plan


def run(args: argparse.Namespace) -> int:
    from hpoc.errors import run_reporting

    return run_reporting(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    retry = retry_mode(args)
    plan = load_plan(args.target)
    from hpoc.errors import HpocError
    from hpoc.runtime.shards import missing_shard
    from hpoc.runtime.study import RunOptions, run_study

    if missing := missing_shard(plan, args.shard):
        raise HpocError(missing)

    opts = RunOptions(shard=args.shard, local=args.local, num_cpus=args.cpus, fresh=args.fresh,
                      verbose=args.verbose, retry_errored=retry, progress=sys.stderr, out=sys.stdout)
    if opts.is_local and not args.force:
        refuse_beside_jobs(plan, args.shard)
    return run_study(plan, opts)


def refuse_beside_jobs(plan: dict[str, Any], shard: int) -> None:
    """HpocError when a queued or running SLURM job will run this shard's experiment. The
    run lock keeps the experiment safe either way, but one of the two then stops at once:
    this run (the job holds the shard) or the job, later, as a failed job (this run holds
    it) - or the job finds the study done. No squeue here: nothing to tell."""
    from hpoc.errors import HpocError
    from hpoc.runtime.shards import experiment_dir
    from hpoc.submit.queue import describe, experiment_jobs

    jobs = experiment_jobs(plan, shard)
    if jobs:
        raise HpocError(
            f"SLURM job(s) {describe(jobs)} will run this study in {experiment_dir(plan, shard)}, "
            "where this run would write: whichever comes second stops at once\n"
            "  help: wait for the job(s) or `scancel` them, change `storage.name` to run a copy "
            "here, or pass --force to run it anyway")
