"""`python -m hpoc.runtime PLAN --shard N`: what the SLURM job scripts run on the head node."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from hpoc.console import setup_streams

    setup_streams()
    parser = argparse.ArgumentParser(
        prog="python -m hpoc.runtime",
        description="Run one shard of a compiled study (plan.json) on the Ray cluster in "
                    "RAY_ADDRESS, or locally with --local.")
    parser.add_argument("plan", help="plan.json written by `hpoc compile`")
    parser.add_argument("--shard", type=int, default=0, help="shard index (job-array task), default 0")
    parser.add_argument("--local", action="store_true", default=None,
                        help="embedded Ray on this machine (default when RAY_ADDRESS is unset)")
    parser.add_argument("--cpus", type=int, default=None, help="local: CPU slots for Ray")
    parser.add_argument("--fresh", action="store_true", help="move a previous run aside and start over")
    from hpoc.commands.run import add_retry_arguments, retry_mode

    add_retry_arguments(parser)
    parser.add_argument("--before-ray", action="store_true",
                        help="only say whether the shard has anything to do (exit 0), ran to the "
                             "end (3), is run by another driver (4), ran and failed (5), or "
                             "cannot start here: no Ray (6), no writable storage (7); see "
                             "hpoc/runtime/before.py")
    parser.add_argument("--claim", type=int, metavar="PID",
                        help="with --before-ray: on exit 0, hold the shard's run lock for this "
                             "SLURM job (PID: the job script) until its driver takes it over")
    parser.add_argument("--release-claim", action="store_true",
                        help="remove this SLURM job's claim that no driver took over")
    parser.add_argument("-v", "--verbose", action="store_true", help="show Ray's and the trials' output")
    args = parser.parse_args(argv)

    from hpoc.errors import HpocError
    from hpoc.plan import PlanError, load
    from hpoc.runtime.study import RunOptions, run_study

    try:
        plan = load(args.plan)
        retry = retry_mode(args)
    except (PlanError, HpocError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.before_ray or args.release_claim:
        from hpoc.runtime import before, early

        early.release()  # not a run: a stop signal ends the check as ever
    if args.before_ray:
        return before.main(plan, args.shard, args.claim, retry)
    if args.release_claim:
        return before.release(plan, args.shard)
    return run_study(plan, RunOptions(shard=args.shard, local=args.local, num_cpus=args.cpus,
                                      fresh=args.fresh, verbose=args.verbose,
                                      retry_errored=retry))


if __name__ == "__main__":
    from hpoc.runtime import early

    early.hold()  # before main's imports: a stop signal meanwhile must not kill the driver
    code = main()
    from hpoc.runtime.exits import leave

    leave(code)  # not Python's teardown of torch and Ray: seconds at the end of each job
