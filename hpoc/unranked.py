"""Why a study (or a shard) has no best trial: one sentence, said alike by the run's final
report, `hpoc status` and `hpoc results`. Each caller counts its own trials into Outcomes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcomes:
    trials: int = 0    # every trial
    failed: int = 0    # errored: what they reported does not count
    diverged: int = 0  # not failed, reported the objective but never a finite value
    silent: int = 0    # not failed, ended without one report
    timed: int = 0     # of the silent: their time limit stopped them first


def why(metric: str, seen: Outcomes, errors: str, *, over: bool = True, stopped: bool = False,
        failed_fast: bool = False, budget_s: float | None = None, words: dict[str, str] | None = None) -> str:
    """`errors`: where the failed trials' errors are said (or the error itself); `over`:
    no trial will report any more; `stopped`: the run stopped before its end (it resumes);
    `failed_fast`: the study stopped itself, its trials failing the same way (failfast.py);
    `budget_s`: the study's time budget, when it ended the run; `words`: the plan's
    `source.words`, naming settings as a YAML config writes them (`time_budget_s`)."""
    from hpoc.plan.words import respell

    # the trials' errors are theirs: only hpoc's own words are respelled
    said = _why(metric, seen, "\0", over=over, stopped=stopped, failed_fast=failed_fast, budget_s=budget_s)
    return respell(said, words).replace("\0", errors)


def _why(metric: str, seen: Outcomes, errors: str, *, over: bool, stopped: bool, failed_fast: bool,
         budget_s: float | None) -> str:
    ran = seen.trials - seen.failed
    if seen.trials and not ran:
        return f"every trial failed ({seen.trials} of {seen.trials}): {errors}"
    if seen.diverged:
        return (f"no trial reported a finite `{metric}`: {seen.diverged} trial(s) reported NaN "
                "or inf (training diverged? try a smaller learning rate)")
    reported = f"no trial reported the objective metric `{metric}`"
    # Only a trial that ended without a report points at the trainer: one still pending or
    # running has not had its turn yet.
    if ran and seen.silent == ran:
        if budget_s:
            return (f"{reported}: the time budget (`trials.time_budget`, {budget_s:g} s) ended "
                    "the study before any did")
        if seen.timed == seen.silent:  # a hung first epoch, not the trainer
            return (f"{reported}: {seen.timed} trial(s) reached their time limit "
                    "(`trials.time_limit`) before their first report")
        return (f"{reported}: {seen.silent - seen.timed} trial(s) ended without reporting once "
                "(does the trainer's `train()` call `self.report(metrics, epoch=epoch)` every "
                "epoch?)" + (f"; {seen.timed} reached the time limit first" if seen.timed else ""))
    if failed_fast:  # resumed as it is, it would fail again
        return f"{reported}: the study stopped itself, its trials failing the same way"
    if stopped:
        return (f"no trial has reported the objective metric `{metric}` yet: the run stopped "
                "before any did; running the same plan again resumes it")
    if not over:
        return f"no trial has reported the objective metric `{metric}` yet"
    return reported if seen.trials else "no trial ran"
