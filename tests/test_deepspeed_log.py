"""DeepSpeed's log in a trial: its progress lines when the config file asks for them."""

from __future__ import annotations

import io
import logging

import pytest

from hpoc.runtime import deepspeed_log

PROGRESS = "[Rank 0] step=10, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]"
THROUGHPUT = "epoch=0/micro_step=10/global_step=10, RunningAvgSamplesPerSec=812.5, CurrSamplesPerSec=790.1"
CHATTER = "[Rank 0] DeepSpeed Flops Profiler Enabled: False"


def _logged(config: dict) -> str:
    """What DeepSpeed's logger lets through for a trial of `config`. Read from a handler of
    the test's own beside DeepSpeed's, whose stream is whatever sys.stdout was when
    deepspeed was first imported (another test's capture, in a shared test process)."""
    logger = pytest.importorskip("deepspeed.utils").logger
    seen = io.StringIO()
    ours = logging.StreamHandler(seen)
    logger.addHandler(ours)
    try:
        deepspeed_log.quiet(logger, config)
        for line in (PROGRESS, THROUGHPUT, CHATTER):
            logger.info(line)
        logger.warning("a warning")
    finally:
        logger.removeHandler(ours)
    return seen.getvalue()


def test_steps_per_print_in_a_deepspeed_file_prints_progress_and_not_the_chatter():
    """hpoc keeps DeepSpeed's logger at WARNING, which hid the lines `steps_per_print` asks for."""
    out = _logged({"steps_per_print": 10})
    assert PROGRESS in out and THROUGHPUT in out and "a warning" in out
    assert CHATTER not in out
    # the next trial in the same worker, whose config asks for none (hpoc's value)
    out = _logged({"steps_per_print": deepspeed_log.QUIET_STEPS})
    assert (PROGRESS in out, THROUGHPUT in out, "a warning" in out) == (False, False, True)
    assert pytest.importorskip("deepspeed.utils").logger.level == logging.WARNING
