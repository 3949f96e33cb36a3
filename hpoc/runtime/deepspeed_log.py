"""DeepSpeed's own log in a trial: warnings only (its start-up chatter is INFO), except the
lines a config file asks for with `steps_per_print` (progress, throughput), which DeepSpeed
logs at INFO too: with the logger at WARNING they never showed."""

from __future__ import annotations

import logging
import re
from typing import Any

# hpoc's own value: DeepSpeed's default (10) printed every 10 optimizer steps unasked
QUIET_STEPS = 2**31 - 1
# "[Rank 0] step=10, skipped=0, lr=...", "epoch=0/micro_step=10/global_step=10, RunningAvgSamplesPerSec=..."
_PROGRESS = re.compile(r"(\[Rank \d+\] )?(step=\d+, skipped=|epoch=\d+/micro_step=)")


class _ProgressLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or bool(_PROGRESS.match(record.getMessage()))


def quiet(logger: logging.Logger, config: dict[str, Any]) -> None:
    """Set DeepSpeed's `logger` for a trial of `config`: warnings, and its progress lines
    where the config prints them (a trial before it in this worker may have asked)."""
    for f in [f for f in logger.filters if isinstance(f, _ProgressLines)]:
        logger.removeFilter(f)
    every = config.get("steps_per_print")
    asked = type(every) is int and 0 < every < QUIET_STEPS
    level = logging.INFO if asked else logging.WARNING
    logger.setLevel(level)
    for handler in logger.handlers:
        handler.setLevel(level)
    if asked:
        logger.addFilter(_ProgressLines())
