"""A trial whose objective is NaN or infinite (training diverged) is the worst trial to the
schedulers that compare trials, as it is to `hpoc results`.

Ray's schedulers compare raw values: ASHA's `nan < cutoff` is false, so a diverged trial
passed every rung and trained to `max_t`, and an infinite value in a rung made its cutoff
NaN, which stopped no trial there; HyperBand sorted NaN anywhere among the trials it keeps;
PBT left a NaN trial out of its quantiles, so it never exploited a better one and went on
training NaN. These schedulers see such a value as the worst finite one instead; the
trial's reports keep what it reported.
"""

from __future__ import annotations

import math
from typing import Any

# Worse than any real objective, yet finite: percentiles, differences and PB2's standard
# deviation (its square) of it stay numbers, where an infinity would make them NaN.
WORST = 1e150


def judged(value: Any, mode: str | None) -> Any:
    """`value` as a scheduler should compare it: the worst finite value when not finite."""
    if isinstance(value, float) and not math.isfinite(value) and mode in ("min", "max"):
        return WORST if mode == "min" else -WORST
    return value


def judged_result(result: Any, metric: str | None, mode: str | None) -> Any:
    """A copy of `result` with its `metric` judged; `result` itself when nothing changes."""
    if not isinstance(result, dict) or metric not in result:
        return result
    value = judged(result[metric], mode)
    return result if value is result[metric] else {**result, metric: value}


class DivergedWorst:
    """Scheduler mixin: results reach the scheduler with a diverged objective made the worst."""

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        result = judged_result(result, self._metric, self._mode)  # type: ignore[attr-defined]
        return super().on_trial_result(tune_controller, trial, result)  # type: ignore[misc]

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        result = judged_result(result, self._metric, self._mode)  # type: ignore[attr-defined]
        super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]
