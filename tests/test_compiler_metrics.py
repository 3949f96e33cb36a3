"""What a trainer reports to Tune, read from its source (hpoc/compiler/metrics.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpoc.compiler.metrics import reported_by_loop

BASE = {"epoch", "training_iteration"}


def loop(tmp_path: Path, body: str) -> set[str] | None:
    (tmp_path / "mytrainer.py").write_text(
        "from hpoc import Trainer\n\nclass T(Trainer):\n    def train(self, config, data):\n"
        + "".join(f"        {line}\n" for line in body.splitlines()))
    return reported_by_loop("mytrainer:T", str(tmp_path))


def test_the_keys_of_a_dict_written_out_are_reported(tmp_path: Path) -> None:
    assert loop(tmp_path, 'self.checkpoint_and_report(1, tuning_metrics={"loss": 1.0})') == BASE | {"loss"}
    assert loop(tmp_path, 'm = {"loss": 1.0}\nm["acc"] = 2.0\n'
                          "self.checkpoint_and_report(1, m)") == BASE | {"loss", "acc"}


@pytest.mark.parametrize("body", [
    # keys added where the source does not spell them: it cannot tell (no warning)
    "m = {}\nm[name] = 1.0\nself.checkpoint_and_report(1, tuning_metrics=m)",
    'm = {}\nm.update(loss=1.0)\nself.checkpoint_and_report(1, tuning_metrics=m)',
    'm = {key: 1.0}\nself.checkpoint_and_report(1, tuning_metrics=m)',
    'm = {"loss": 1.0}\nm = other()\nself.checkpoint_and_report(1, tuning_metrics=m)',
])
def test_a_dict_filled_otherwise_says_nothing(tmp_path: Path, body: str) -> None:
    assert loop(tmp_path, body) is None


def test_a_module_asked_again_is_parsed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ast

    from hpoc.compiler import metrics, pysource

    calls: list[str] = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda text, path, *a: calls.append(path) or real(text, path, *a))
    pysource._parse.cache_clear()
    body = 'self.checkpoint_and_report(1, tuning_metrics={"loss": 1.0})'
    assert loop(tmp_path, body) == BASE | {"loss"}
    assert metrics.trainer_metrics("mytrainer:T", str(tmp_path)) == {"loss"}
    assert len(calls) == 1
    assert loop(tmp_path, body.replace("loss", "acc")) == BASE | {"acc"}  # edited: read anew
    assert len(calls) == 2


def test_the_step_check_and_the_report_rules_share_one_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ast

    from hpoc.compiler import pysource
    from hpoc.compiler.targets import check_step

    calls: list[str] = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda text, path, *a: calls.append(path) or real(text, path, *a))
    pysource._parse.cache_clear()
    assert loop(tmp_path, 'self.checkpoint_and_report(1, tuning_metrics={"loss": 1.0})') == BASE | {"loss"}
    assert check_step("mytrainer:T", {}, str(tmp_path)) == []
    assert len(calls) == 1


def test_a_compile_reads_what_the_trainer_reports_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The objective, `stop`, `score_attribute` and `time_attr` rules all ask: a trainer's
    module of thousands of lines made each compile walk it four times."""
    from hpoc.compiler import compile_source, metrics

    (tmp_path / "mytrainer.py").write_text(
        "from hpoc import Trainer\n\nclass T(Trainer):\n    def train(self, config, data):\n"
        "        self.checkpoint_and_report(1, tuning_metrics={'loss': 1.0})\n")
    calls: list[str] = []
    real = metrics.reported_by_loop
    monkeypatch.setattr(metrics, "reported_by_loop",
                        lambda target, workdir: calls.append(target) or real(target, workdir))
    compile_source('study "s"\npipeline { trainer = mytrainer:T }\nspace { lr = uniform(0, 1) }\n'
                   "objective minimize loss\ntrials { num_samples = 2\n stop { loss = 0.1 } }\n"
                   "scheduler asha { time_attr = epoch }\ncheckpoint { score_attribute = loss }\n",
                   workdir=str(tmp_path))
    assert calls == ["mytrainer:T"]


def test_the_config_keys_of_a_module_of_many_helpers_are_read_in_one_walk_of_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each function taking a `config` had the whole module walked for its callers: a
    trainer of 300 helpers (5,000 lines) took `hpoc check` 20 s, not 0.3 s."""
    import ast

    from hpoc.compiler import metrics, pysource

    helpers = "".join(f"    def helper{i}(self, config):\n        return config['k{i}'] + self.helper{i + 1}(config)\n\n"
                      for i in range(20))
    (tmp_path / "mytrainer.py").write_text("from hpoc import Trainer\n\nclass T(Trainer):\n" + helpers)
    pysource._parse.cache_clear()
    walks: list[ast.AST] = []
    real = ast.walk
    monkeypatch.setattr(ast, "walk", lambda node: walks.append(node) or real(node))
    reads = metrics.config_keys_read("mytrainer:T", str(tmp_path))
    assert reads is not None and set(reads) == {f"k{i}" for i in range(20)}
    assert sum(isinstance(n, ast.Module) for n in walks) <= 2, len(walks)
