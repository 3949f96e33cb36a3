"""A DeepSpeed config file read as DeepSpeed reads it (hpoc/plan/dsjson.py): comments and
trailing commas, which its loader (hjson) takes, where json.load refused the file."""

from __future__ import annotations

import json

import pytest

from hpoc.plan import dsjson


def test_comments_and_trailing_commas_are_read_and_strings_kept_as_they_are():
    text = ('{\n  "nvme_path": "/scratch//ds#1/*x*/", // after a string\n'
            '  "quote": "a \\" // b", # hash\n  /* block\n  comment */ "list": [1, 2, ],\n}\n')
    assert dsjson.loads(text) == {"nvme_path": "/scratch//ds#1/*x*/", "quote": 'a " // b', "list": [1, 2]}
    # every other character stays where it was: an error's line and column are the file's
    assert len(dsjson.blank_comments(text)) == len(text)
    assert dsjson.blank_comments(text).count("\n") == text.count("\n")


def test_what_is_not_json_says_the_files_line_and_column():
    with pytest.raises(json.JSONDecodeError) as info:
        dsjson.loads('{\n  // a comment\n  "a": 1,\n  "b": }\n')
    assert (info.value.lineno, info.value.colno) == (4, 8)


def test_a_trial_reads_a_commented_deepspeed_config(tmp_path):
    """The runtime merged the file with json.loads: every DeepSpeed trial failed on it."""
    from hpoc.runtime.strategy import Strategy

    path = tmp_path / "ds.json"
    path.write_text('{\n  // ZeRO-3 for the big model\n  "zero_optimization": {"stage": 3,},\n}\n')
    strategy = Strategy.create("deepspeed", deepspeed={"zero_stage": 2, "precision": None,
                                                       "config_file": str(path)})
    assert strategy.ds_config()["zero_optimization"] == {"stage": 3}
    path.write_text('{\n  "zero_optimization": {"stage": 3,},\n  "bf16": \n}\n')
    with pytest.raises(ValueError, match=rf"^the DeepSpeed config is not JSON: {path}:4:1: Expecting value$"):
        strategy.ds_config()
