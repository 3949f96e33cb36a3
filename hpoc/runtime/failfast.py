"""Stop a study whose trials all fail the same way (`failure.fail_fast`).

A deterministic bug in the trainer (labels of the wrong dtype, a typo in a key) fails every
trial, and each failure is retried: a 64-trial study would spend its whole allocation
writing the same traceback 64 x (1 + max_retries) times. When the first K trials to end
(K = `fail_fast`) all ended in ERROR with the same error, and no trial has reported the
objective yet, the driver stops the study as on a walltime stop (resumable: fixed code
resumes it) and says why once. In a study of K trials or fewer (two at least) what is left
to stop is the retries: every trial's first failure counts, and the study stops once every
trial made so far (two at least) failed the same way, before their retries run (a lost
node's errors, which a retry may well get past, do not count then).

Two errors are the same when their exception line (type and message) is, once the numbers,
addresses, Ray's ids and the trial's own id and directory in it are masked: "CUDA error on device 3"
and "... device 1" are one error, "expected Long" and "expected Float" are two.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from hpoc.files import trial_path
from hpoc.runtime import summary as summary_mod

DEFAULT = 3  # `failure.fail_fast` of plans compiled before it existed

# 0x7f3a…, and ids: Ray's actor, task and trial ids (8+ hex digits, one a digit at least)
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b")
# numbers, and the sizes of a shape (torch's `64x13`), not a name's digits (`x1`, `conv2`);
# an exit code, signal or errno is kept (`kept`): 137 (the OOM killer) and 1 are two causes
_NUMBER = re.compile(r"(?P<kept>(?i:\b(?:exit(?:ed with)? ?code|exit status|signal|errno|error code)\W{0,3}"
                     r"[-+]?\d+))|(?:(?<![A-Za-z_])|(?<=\dx))[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?")


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
    return _NUMBER.sub(lambda m: m["kept"] or "<n>", line) if numbers else line


@dataclass
class FailFast:
    k: int                      # 0: off
    total: int                  # trials in this shard
    metric: str | None          # the first objective metric; None: any report counts
    shard: int | None = None    # the shard whose trials these are; None: the study is one shard
    # trial id -> (dir, sig, text) of the trials that decide, in the order they ended (failed)
    ended: dict[str, tuple[str | None, str | None, str | None]] = field(default_factory=dict)
    verdict: str | None = None  # the message, once the rule fired

    @property
    def limit(self) -> int:
        """How many trials decide: the first k to end, or every trial of a study of k or
        fewer (one trial alone is retry.Repeats' to stop); 0: the rule is off."""
        if self.k <= 0 or self.total < 2:
            return 0
        return min(self.k, self.total)

    @property
    def whole_study(self) -> bool:
        """Every trial decides, at its first failure: the retries are what is left to stop."""
        return bool(self.limit) and self.limit == self.total

    def trial_ended(self, trial: Any, trials: list[Any]) -> str | None:
        """Note that `trial` ended (completed or errored); the message when the study
        should stop now, once."""
        text = summary_mod.trial_error(trial) if trial.status == "ERROR" else None
        return self._note(trial, trials, text)

    def trial_failed(self, trial: Any, trials: list[Any], text: str | None) -> str | None:
        """Note a failure Tune retries (`text`: its error): it decides in a whole-study rule
        only, unless the cluster's (a retry may get past a lost node)."""
        from hpoc.runtime.retry import infrastructure

        if not self.whole_study or infrastructure(text):
            return None
        return self._note(trial, trials, text or "")

    def _note(self, trial: Any, trials: list[Any], text: str | None) -> str | None:
        if not self.limit or self.verdict:
            return None
        tid, path = trial.trial_id, trial_path(trial)
        if self.whole_study:
            if tid in self.ended and text is not None:
                return None  # its first failure decides; its retries fail as they will
        elif len(self.ended) >= self.limit:
            return None
        self.ended[tid] = (path, signature(text, tid, path), text)
        if len(self.ended) < self._deciding(trials) or any(self._succeeded(t) for t in trials):
            return None
        sigs = {sig for _, sig, _ in self.ended.values()}
        if len(sigs) != 1 or None in sigs or not self._left_to_stop(trial, trials):
            return None
        self.verdict = self._describe()
        return self.verdict

    def _deciding(self, trials: list[Any]) -> int:
        """How many trials must have ended (failed) for the rule to decide: in a whole-study
        rule every trial Tune has made so far, two at least (one at a time, the others are
        made only as trials end)."""
        return max(2, len(trials)) if self.whole_study else self.limit

    def _left_to_stop(self, trial: Any, trials: list[Any]) -> bool:
        """Whether a trial would run yet: in a whole-study rule the last trial's error may
        have been final, and every other trial's too (no retries): the study ends as it would."""
        return not self.whole_study or trial.status != "ERROR" or len(trials) < self.total or any(
            t.status not in ("TERMINATED", "ERROR") for t in trials if t.trial_id != trial.trial_id)

    @property
    def error(self) -> str | None:
        """The error of the first trial that decided (the one the verdict shows)."""
        return next(iter(self.ended.values()))[2] if self.ended else None

    @property
    def headline(self) -> str:
        """The line said when the rule fires (the verdict follows once the trials stopped)."""
        what = "the study" if self.shard is None else f"shard {self.shard}"
        if self.whole_study:
            every = "every trial" if self.shard is None else "every trial of it"
            return f"stopping {what}: {every} failed the same way; not retrying them"
        return f"stopping {what}: its first trials all failed the same way"

    def _succeeded(self, trial: Any) -> bool:
        result = getattr(trial, "last_result", None) or {}
        if self.metric is None:
            return "training_iteration" in result
        return self.metric in result

    def _describe(self) -> str:
        details, _, text = next(iter(self.ended.values()))  # the first trial's error: its file
        text = text or ""
        where = summary_mod.error_where(text)
        n, metric = len(self.ended), f"`{self.metric}`" if self.metric else "anything"
        # a shard's driver counts the shard's trials only: say so in a sharded study
        of = "" if self.shard is None else f" of shard {self.shard}"
        if self.whole_study:
            made = (of or " of the study") if n >= self.total else f"{of} made so far (of {self.total})"
            first = f"all {n} trials{made} failed with the same error,"
        else:
            first = f"the first trial{of} to end" if n == 1 else f"all of the first {n} trials{of} to end"
            first += " failed with the same error,"
        lines = [f"{first} and no trial{of} reported {metric}",
                 f"  {summary_mod.error_line(text)}"]
        if where:
            lines.append(f"  --> {where}")
        if said := summary_mod.error_help(text):  # `status` reads it as the next step
            lines.append(f"  help: {said}")
        if details:
            lines.append(f"  details: {details}/error.txt")
        return "\n".join(lines)


def hint(plan: dict[str, Any], text: str | None = None) -> str:
    """What to do next, for the plan's resume settings; `text`: the deciding trials' error,
    which names the step to fix."""
    again = run_again(plan)
    fix = what_to_fix(plan, summary_mod.error_where(text or ""), text or "")
    if summary_mod.error_help(text or ""):  # the stop's message said it just above
        fix = "do as the error's help says"
    return (f"  help: every trial failed the same way; {fix} and {again} "
            "(`failure { fail_fast = 0 }` runs every trial regardless)")


def run_again(plan: dict[str, Any]) -> str:
    """How the study goes on once the cause of its stop is fixed, for its resume settings."""
    resume = plan["resume"]
    if not resume["enabled"]:
        return "run again with --fresh (resume is disabled in the study)"
    if resume["retry_errored"]:
        return "run the same command again: the study resumes and retries the failed trials"
    return ("run again with --fresh (resuming would keep these trials failed: "
            "`resume.retry_errored = false`)")


def what_to_fix(plan: dict[str, Any] | None, where: str | None, text: str) -> str:
    """What the user does about the deciding error `text`: its own help (a module missing on
    the nodes: install it), the data's dtype when the model refuses it, else `fix <step>`."""
    said = summary_mod.error_help(text)
    if said:
        return said
    line = summary_mod.error_line(text)
    if unreported := objective_fix(line):
        return unreported
    step = to_fix(plan, where)
    if step == "the trainer" and (shapes := _LINEAR_SHAPES.search(line)):
        return (f"fix the trainer's model: a `Linear` layer (or a matmul) takes {shapes[2]} input features "
                f"and gets {shapes[1]}; build it for the inputs it gets")
    if _dtype_mismatch(line):
        getter = (((plan or {}).get("pipeline") or {}).get("getter") or {}).get("target")
        data = f"the data of the getter `{getter}`" if getter else "the trainer's data"
        fix = "convert it in the getter" if getter else "convert it where the trainer loads it"
        return (f"{data} has a dtype the model does not take: {fix} (`.float()` for a tensor, "
                "`astype(np.float32)` for an array; class labels `.long()`)")
    return f"fix {step}"


def objective_fix(line: str) -> str | None:
    """What to do about an error `line` saying that the trainer never reported the objective
    (returns.require_objective's words), else None: the spec may be what names it wrong."""
    missing = _MISSING_OBJECTIVE.search(line)
    return (f"report {missing[1]} from the trainer (or name a metric it reports in the spec's "
            "`objective` and run with --fresh: another objective is another plan)") if missing else None


# torch's words for a `Linear` whose in_features are not the inputs' last dimension: the
# inputs (batch x features) and the transposed weight (in_features x out_features).
_LINEAR_SHAPES = re.compile(r"mat1 and mat2 shapes cannot be multiplied \(\d+x(\d+) and (\d+)x\d+\)")


# A report without the objective: the spec may name a metric the trainer never reports
# (`val_mse` for hpoc's `val_loss`), and a spec with another objective does not resume.
_MISSING_OBJECTIVE = re.compile(r"but not (`[^`]+`(?:, `[^`]+`)*), the objective's metric")


# torch's words for a batch whose dtype is not the model's (integer inputs: Long and Float)
_DTYPE = re.compile(r"must have the same dtype|expected scalar type \w+ but found \w+|"
                    r"Found dtype \w+ but expected \w+|expected m1 and m2 to have the same dtype")
_INPUT_TYPE = re.compile(r"Input type \(([\w.]+)\) and weight type \(([\w.]+)\) should be the same")


def _dtype_mismatch(line: str) -> bool:
    if _DTYPE.search(line):
        return True
    m = _INPUT_TYPE.search(line)  # the same words say a device mismatch: cuda.FloatTensor and FloatTensor
    return bool(m) and m.group(1).rpartition(".")[2] != m.group(2).rpartition(".")[2]


_ROLES = ("getter", "splitter", "trainer")


def to_fix(plan: dict[str, Any] | None, where: str | None) -> str:
    """`the splitter `data:Split``: the step whose module holds the study's innermost frame
    (`where`, as error_where gives it: a Dataset's `__getitem__` in the getter's module, say),
    when one step's module alone does; else `the trainer`, where most such errors are."""
    steps = {role: step["target"] for role in _ROLES
             if isinstance(step := ((plan or {}).get("pipeline") or {}).get(role), dict) and step.get("target")}
    held = [role for role, target in steps.items() if where and _holds(target, where)]
    if len(held) == 1 and held[0] != "trainer":
        return f"the {held[0]} `{steps[held[0]]}`"
    return "the trainer"  # or steps sharing the module: the file cannot tell


def _holds(target: str, where: str) -> bool:
    """Whether `where` (`file:line`) is in the module of `target` (a plan's `module:Name`)."""
    module = target.partition(":")[0]
    stem = os.path.splitext(os.path.normpath(where.rpartition(":")[0]))[0]
    name = module.replace(".", os.sep)
    return any(stem == f or stem.endswith(os.sep + f) for f in (name, os.path.join(name, "__init__")))
