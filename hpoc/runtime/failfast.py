"""Stop a study whose trials all fail the same way (`failure.fail_fast`).

A deterministic bug in the trainer (labels of the wrong dtype, a typo in a key) fails every
trial, and each failure is retried: a 64-trial study would spend its whole allocation
writing the same traceback 64 x (1 + max_retries) times. When the first K trials to end
(K = `fail_fast`) all ended in ERROR with the same error, and no trial has reported the
objective yet, the driver stops the study as on a walltime stop (resumable: fixed code
resumes it) and says why once. A study of K trials or fewer has nothing left to stop then.

Two errors are the same when their exception line (type and message) is, once the numbers,
addresses, Ray's ids and the trial's own id and directory in it are masked: "CUDA error on device 3"
and "... device 1" are one error, "expected Long" and "expected Float" are two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hpoc.files import trial_path
from hpoc.runtime import summary as summary_mod

DEFAULT = 3  # `failure.fail_fast` of plans compiled before it existed

# 0x7f3a…, and ids: Ray's actor, task and trial ids (8+ hex digits, one a digit at least)
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


def signature(text: str | None, trial_id: str | None = None, path: str | None = None,
              numbers: bool = True) -> str | None:
    """What two trials failing the same way share in their error text, or None (no text);
    `numbers=False` keeps the numbers (two failures of one trial: retry.Repeats)."""
    line = summary_mod.error_line(text or "")
    if not line or line == "errored":
        return None
    # Longest first: the directory holds the trial id.
    for own in sorted(filter(None, (path, trial_id)), key=len, reverse=True):
        line = line.replace(own, "<trial>")
    line = _HEX.sub("<addr>", line)
    return _NUMBER.sub("<n>", line) if numbers else line


@dataclass
class FailFast:
    k: int                      # 0: off
    total: int                  # trials in this shard
    metric: str | None          # the first objective metric; None: any report counts
    ended: list[tuple[str | None, str | None, str | None]] = field(default_factory=list)  # (dir, sig, text)
    verdict: str | None = None  # the message, once the rule fired

    @property
    def limit(self) -> int:
        return self.k if 0 < self.k < self.total else 0  # 0: nothing would be left to stop

    def trial_ended(self, trial: Any, trials: list[Any]) -> str | None:
        """Note that `trial` ended (completed or errored); the message when the study
        should stop now, once."""
        if not self.limit or self.verdict or len(self.ended) >= self.limit:
            return None
        text = summary_mod.trial_error(trial) if trial.status == "ERROR" else None
        path = trial_path(trial)
        self.ended.append((path, signature(text, trial.trial_id, path), text))
        if len(self.ended) < self.limit or any(self._succeeded(t) for t in trials):
            return None
        sigs = {sig for _, sig, _ in self.ended}
        if len(sigs) != 1 or None in sigs:
            return None
        self.verdict = self._describe()
        return self.verdict

    def _succeeded(self, trial: Any) -> bool:
        result = getattr(trial, "last_result", None) or {}
        if self.metric is None:
            return "training_iteration" in result
        return self.metric in result

    def _describe(self) -> str:
        details, _, text = self.ended[0]  # the error shown is the first trial's: its file
        text = text or ""
        where = summary_mod.error_where(text)
        n, metric = len(self.ended), f"`{self.metric}`" if self.metric else "anything"
        first = "the first trial to end" if n == 1 else f"all of the first {n} trials to end"
        lines = [f"{first} failed with the same error, and no trial reported {metric}",
                 f"  {summary_mod.error_line(text)}"]
        if where:
            lines.append(f"  --> {where}")
        if details:
            lines.append(f"  details: {details}/error.txt")
        return "\n".join(lines)


def hint(plan: dict[str, Any]) -> str:
    """What to do next, for the plan's resume settings."""
    resume = plan["resume"]
    if not resume["enabled"]:
        again = "run again with --fresh (resume is disabled in the study)"
    elif resume["retry_errored"]:
        again = "run the same command again: the study resumes and retries the failed trials"
    else:
        again = ("run again with --fresh (resuming would keep these trials failed: "
                 "`resume.retry_errored = false`)")
    return (f"  help: every trial failed the same way; fix the trainer and {again} "
            "(`failure { fail_fast = 0 }` runs every trial regardless)")
