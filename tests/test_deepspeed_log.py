"""DeepSpeed's log in a trial: its progress lines when the config file asks for them."""

from __future__ import annotations

import logging

import pytest

from hpoc.runtime import deepspeed_log

PROGRESS = "[Rank 0] step=10, skipped=0, lr=[0.001], mom=[(0.9, 0.999)]"
THROUGHPUT = "epoch=0/micro_step=10/global_step=10, RunningAvgSamplesPerSec=812.5, CurrSamplesPerSec=790.1"
CHATTER = "[Rank 0] DeepSpeed Flops Profiler Enabled: False"


def _logged(capfd, config: dict) -> str:
    logger = pytest.importorskip("deepspeed.utils").logger
    capfd.readouterr()
    deepspeed_log.quiet(logger, config)
    for line in (PROGRESS, THROUGHPUT, CHATTER):
        logger.info(line)
    logger.warning("a warning")
    return capfd.readouterr().out


def test_steps_per_print_in_a_deepspeed_file_prints_progress_and_not_the_chatter(capfd):
    """hpoc keeps DeepSpeed's logger at WARNING, which hid the lines `steps_per_print` asks for."""
    out = _logged(capfd, {"steps_per_print": 10})
    assert PROGRESS in out and THROUGHPUT in out and "a warning" in out
    assert CHATTER not in out
    # the next trial in the same worker, whose config asks for none (hpoc's value)
    out = _logged(capfd, {"steps_per_print": deepspeed_log.QUIET_STEPS})
    assert (PROGRESS in out, THROUGHPUT in out, "a warning" in out) == (False, False, True)
    assert pytest.importorskip("deepspeed.utils").logger.level == logging.WARNING
