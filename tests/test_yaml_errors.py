"""Bad itwinai configs: every problem is a diagnostic at a YAML line and column, exit 2,
never a traceback (unreadable, empty, non-mapping, hostile and wrong configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpoc.cli import main
from hpoc.compiler import compile_path
from hpoc.errors import Diagnostic, SpecError
from yaml_configs import EXAMPLE, write

SEED = (EXAMPLE / "config.yaml").read_text(encoding="utf-8")


def seed_with(old: str, new: str) -> str:
    assert old in SEED, old
    return SEED.replace(old, new, 1)


def diagnose(tmp_path: Path, text: str | bytes):
    path = tmp_path / "config.yaml"
    write(tmp_path, "")
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        compile_path(path)
    return info.value.errors


def reported(tmp_path: Path, text: str) -> list[Diagnostic]:
    """Every diagnostic of a config that fails, warnings too, but the HP820 (bayes searches
    with TPE) the seed always has."""
    write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        compile_path(tmp_path / "config.yaml")
    return [d for d in info.value.diagnostics if d.code != "HP820"]


def one(tmp_path: Path, text: str | bytes):
    errs = diagnose(tmp_path, text)
    assert len(errs) == 1, [e.render() for e in errs]
    return errs[0]


# (name, text, code, line, col, message start)
CASES = [
    ("not utf-8", b"ray_training_pipeline:\n  class_path: caf\xe9\n", "HP003", 2, 18,
     "file is not valid UTF-8 (byte 0xe9)"),
    ("empty", "", "HP110", None, None, "file is empty"),
    ("comments only", "# nothing\n\n   # here\n", "HP110", None, None, "file is empty"),
    ("a list", "- a\n- b\n", "HP203", 1, 1, "the config must be a mapping with the pipeline, not a list"),
    ("a scalar", "hello\n", "HP203", 1, 1, 'the config must be a mapping with the pipeline, not the string "hello"'),
    ("tabs", "ray_training_pipeline:\n\tclass_path: x\n", "HP110", 2, 1, "invalid YAML: while scanning for the next token found character"),
    ("control character", 'ray_training_pipeline: "\x1b[2J"\n', "HP110", 1, 25,
     "invalid YAML: unacceptable character #x001b: special characters are not allowed"),
    ("two documents", "a: 1\n---\nb: 2\n", "HP110", 2, 1, "invalid YAML: expected a single document in the stream but found another document"),
    ("duplicate key", seed_with("              epochs: 20", "              epochs: 20\n              epochs: 30"),
     "HP202", 28, 15, "`epochs` appears twice in this mapping"),
    ("python tag", "ray_training_pipeline: !!python/object/apply:os.system ['true']\n", "HP112", 1, 24,
     "unsupported YAML tag `!!python/object/apply:os.system`"),  # as written, not YAML's long form
    ("python tuple", "a: !!python/tuple [16, 32]\n", "HP112", 1, 4, "unsupported YAML tag `!!python/tuple`"),
    ("custom tag", "a: !ENV ${HOME}\n", "HP112", 1, 4, "unsupported YAML tag `!ENV`"),
    ("infinite bound", seed_with("max: 1e-3", "max: .inf"), "HP110", 26, 22, "`.inf` is not a finite number"),
    ("no pipeline", "settings:\n  a: 1\n", "HP205", 1, 1, "no itwinai pipeline in this file"),
    ("unknown tune key", seed_with("num_samples: 2", "num_sample: 2"), "HP201", 29, 15,
     "unknown key `num_sample` in `tune_config`"),
    ("unknown pipeline argument", seed_with("  init_args:\n    steps:", "  init_args:\n    name: p\n    step: 1\n    steps:"),
     "HP201", 5, 5, "unknown key `step` in `init_args` of `ray_training_pipeline`"),
    ("unknown LoggersCollection argument", seed_with("              loggers:", "              loger: 1\n              loggers:"),
     "HP201", 48, 15, "unknown key `loger` in `LoggersCollection`"),
    ("unknown domain", seed_with("type: uniform", "type: unifrom"), "HP301", 24, 23,
     "unknown search domain `unifrom` for `learning_rate`"),
    ("missing bound", seed_with("                max: 1e-3\n", ""), "HP205", 24, 23,
     "`uniform` needs `upper` (or `max`) for `learning_rate`"),
    ("unknown domain argument", seed_with("max: 1e-3", "maxi: 1e-3"), "HP301", 26, 17,
     "`uniform` has no argument `maxi` (`learning_rate`)"),
    ("bounds swapped", seed_with("max: 1e-3", "max: 1e-6"), "HP302", 26, 22,
     "`min` must be less than `max` in `uniform` (got 1e-05 and 1e-06)"),  # as the YAML names them
    ("randn stddev", seed_with("type: uniform\n                min: 1e-5\n                max: 1e-3",
                               "type: randn\n                mean: 0\n                stddev: -1"), "HP302", 26, 25,
     "`stddev` must be positive (got -1)"),
    ("unknown scheduler", seed_with("name: asha", "name: ashaa"), "HP201", 31, 23, "unknown scheduler `ashaa`"),
    ("unsupported searcher", seed_with("name: bayes", "name: zoopt"), "HP201", 37, 23,
     "unknown search algorithm `zoopt`"),
    ("conflicting metric", seed_with("name: asha", "name: asha\n                metric: accuracy"), "HP204", 32, 25,
     "`metric` `accuracy` contradicts `loss` (`search_alg`, line 39)"),
    ("bad mode", seed_with("mode: min", "mode: minimum"), "HP204", 39, 23, "`mode` must be `min` or `max`, not `minimum`"),
    ("checker error at yaml line", seed_with("num_workers: 4", "num_workers: 0"), "HP204", 14, 28,
     "`num_workers` must be at least 1 (got 0)"),
    # The checker's messages name the key as the YAML writes it, not as a .hpo file would.
    ("checker error names the yaml key", seed_with("num_workers: 4", 'num_workers: "four"'), "HP203", 14, 28,
     '`num_workers` must be an integer, not the string "four"'),
    ("yaml key storage_path", seed_with("storage_path: ray_checkpoints", "storage_path: 3"), "HP203", 42, 29,
     "`storage_path` must be a string, not the number `3`"),
    # Ray writes to s3:// or gs://; as a path it would silently become a local directory.
    ("storage_path URI", seed_with("storage_path: ray_checkpoints", "storage_path: s3://bucket/hpo"), "HP204", 42, 15,
     '`storage_path` is a URI ("s3://bucket/hpo"): remote storage is not supported'),
    # Ray also takes a stopper function or class: Python code, refused with a YAML hint (not .hpo's).
    ("stop that is not a mapping", seed_with("name: Virgo-HPO-Experiment", "name: Virgo-HPO-Experiment\n"
     "              stop: stoppers.plateau"), "HP203", 44, 21,
     '`stop` must be a mapping of result keys to limits, not the string "stoppers.plateau"'),
    ("num_samples -1", seed_with("num_samples: 2", "num_samples: -1"), "HP204", 29, 28,
     "`num_samples: -1` (sample without end) is not supported"),
    ("yaml key CPU", seed_with("CPU: 5", "CPU: -1"), "HP204", 17, 22, "`CPU` must be greater than 0 (got -1)"),
    ("yaml key max_concurrent_trials", seed_with("num_samples: 2", "num_samples: 2\n              "
     "max_concurrent_trials: -2"), "HP204", 30, 38, "`max_concurrent_trials` must be at least 1 (got -2)"),
    ("yaml key n_random_steps", seed_with("n_random_steps: 5", "n_random_steps: -5"), "HP204", 40, 33,
     "`n_random_steps` must be at least 0 (got -5)"),
    ("strategy typo", seed_with("strategy: ddp", "strategy: dpp"), "HP204", 44, 21, "unknown strategy `dpp`"),
    ("non-ascii module", seed_with("class_path: data.FashionMNISTSplitter", "class_path: düata.FashionMNISTSplitter"),
     "HP204", 6, 21, "`class_path` is not a Python class path"),
    ("hydra non-ascii module",  # found by the YAML fuzzer: compiled, then the plan failed its schema
     "training_pipeline:\n  _target_: itwinai.pipeline.Pipeline\n  steps:\n    - _target_: data.Getter\n"
     "    - _target_: d\u00fcata.Splitter\n    - _target_: trainer.Trainer\n      config: {}\n",
     "HP204", 5, 17, "`_target_` is not a Python class path: \"d\u00fcata.Splitter\""),
    ("point outside the space", seed_with("n_random_steps: 5", "n_random_steps: 5\n                "
     "points_to_evaluate: [{batch_size: 48, learning_rate: 1e-4}]"), "HP204", 41, 51,
     "`batch_size` in `points_to_evaluate` is 48, not one of its `choice` values"),
    # Steps are checked against their module's source (never imported): a wrong class or
    # argument would otherwise fail in every trial, after `hpoc check` said the study is valid.
    ("trainer class typo", seed_with("trainer.MyRayTorchTrainer", "trainer.MyRayTrainer"), "HP204", 10, 21,
     "trainer: `trainer` (trainer.py) defines no `MyRayTrainer`"),
    ("trainer argument it does not take", seed_with("strategy: ddp", "strategy: ddp\n          patience: 3"),
     "HP204", 45, 11, "trainer: `MyRayTorchTrainer` (trainer.py) takes no argument `patience`"),
    ("splitter argument typo", seed_with("train_proportion: 0.9", "train_proportio: 0.9"), "HP204", 8, 11,
     "splitter: `FashionMNISTSplitter` (data.py) takes no argument `train_proportio`"),
    ("no trainer config", seed_with("          config:\n", "          konfig:\n"), "HP205", 10, 21,
     "trainer `trainer.MyRayTorchTrainer` has no `config`"),
    ("dotted train_loop_config key", seed_with("              epochs: 20", "              train.epochs: 20"),
     "HP204", 27, 15, "`train.epochs` holds a `.`: the trial's config would nest it"),
    ("unpaired surrogate", seed_with("mode: min", 'mode: "min\\ud800"'), "HP110", 39, 23,
     "unpaired surrogate escape in string"),
    ("unpaired surrogate key", seed_with("mode: min", '"mo\\udc00de": min'), "HP110", 39, 17,
     "unpaired surrogate escape in string"),
]


@pytest.mark.parametrize("name,text,code,line,col,message", CASES, ids=[c[0] for c in CASES])
def test_diagnostic_at_the_yaml_position(tmp_path: Path, name, text, code, line, col, message) -> None:
    d = one(tmp_path, text)
    assert (d.code, d.line, d.col) == (code, line, col), d.render()
    assert d.message.startswith(message), d.message
    assert d.file.endswith("config.yaml")
    if line is not None:
        assert d.source_line is not None


def test_errors_suggest_fixes(tmp_path: Path) -> None:
    assert one(tmp_path, seed_with("num_samples: 2", "num_sample: 2")).help == "did you mean `num_samples`?"
    assert one(tmp_path, seed_with("type: uniform", "type: unifrom")).help == "did you mean `uniform`?"
    assert "optuna" in one(tmp_path, seed_with("name: bayes", "name: zoopt")).help
    assert one(tmp_path, "ray_training_pipeline:\n\tclass_path: x\n").help == "YAML indents with spaces, not tabs"
    tab_after_colon = one(tmp_path, "ray_training_pipeline:\n  class_path:\tx\n")
    assert (tab_after_colon.line, tab_after_colon.col) == (2, 14)
    assert tab_after_colon.help == "YAML takes no tab here: write a space"


def test_a_control_character_is_located_once(tmp_path: Path) -> None:
    d = one(tmp_path, 'ray_training_pipeline: "\x1b[2J"\n')
    assert d.message == "invalid YAML: unacceptable character #x001b: special characters are not allowed"


def test_all_translation_errors_are_reported_at_once(tmp_path: Path) -> None:
    text = seed_with("num_samples: 2", "num_sample: 2").replace("type: uniform", "type: unifrom")
    errs = diagnose(tmp_path, text)
    assert [(e.code, e.line) for e in errs] == [("HP301", 24), ("HP201", 29)]


def test_alias_bomb_is_stopped(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    d = one(tmp_path, "\n".join(lines) + "\n")
    assert d.code == "HP111" and d.message == "YAML expands to more than 50000 values"


def test_recursive_alias_is_stopped(tmp_path: Path) -> None:
    d = one(tmp_path, "a: &a [*a]\n")
    assert d.code == "HP111" and "nested more than" in d.message


def test_deep_nesting_is_stopped(tmp_path: Path) -> None:
    d = one(tmp_path, "a: " + "[" * 3000 + "]" * 3000 + "\n")
    assert d.code == "HP111" and "nested" in d.message


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    d = one(tmp_path, "a: [" + "1, " * 600_000 + "1]\n")
    assert d.code in ("HP002", "HP111") and "too large" in d.message


def test_merge_keys_are_honoured(tmp_path: Path) -> None:
    text = seed_with("            scaling_config:\n", "            scaling_config: &sc\n").replace(
        "              num_workers: 4\n", "              <<: {num_workers: 4, use_gpu: false}\n              num_workers: 2\n")
    text = text.replace("              use_gpu: true\n", "")
    text = text.replace("                GPU: 1\n", "")
    plan = compile_path(write(tmp_path, text)).plan
    assert (plan["resources"]["workers"], plan["resources"]["gpus_per_worker"]) == (2, 0)


BAD_FOR_CLI = [
    b"\xff\xfe\x00",
    b"",
    b"- 1\n",
    b"a: &a [*a]\n",
    b"ray_training_pipeline: {class_path: itwinai.pipeline.Pipeline, init_args: {steps: 3}}\n",
    b"ray_training_pipeline: {class_path: itwinai.pipeline.Pipeline, init_args: {steps: [1, {x: 2}]}}\n",
    b"ray_training_pipeline: {steps: [{class_path: 'not a path'}]}\n",
    b"x: {? [a, b] : 1}\n",
    b"a: 2001-12-14\nb: 0x1F\nc: 1:20\n",
]


@pytest.mark.parametrize("data", BAD_FOR_CLI, ids=range(len(BAD_FOR_CLI)))
def test_cli_exits_2_without_traceback(tmp_path: Path, capsys, data: bytes) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(data)
    for command in ("check", "compile", "convert"):
        assert main([command, str(path)]) == 2, command
        err = capsys.readouterr().err
        assert "Traceback" not in err and "internal error" not in err
        assert "config.yaml" in err


def test_cli_missing_file_and_directory(tmp_path: Path, capsys) -> None:
    assert main(["check", str(tmp_path / "nope.yaml")]) == 2
    (tmp_path / "dir.yaml").mkdir()
    assert main(["check", str(tmp_path / "dir.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "is a directory" in err and "Traceback" not in err


@pytest.mark.parametrize("text,code,line,col,message,help", [
    ("a: ${b}\nb: ${a}\n", "HP113", 1, 4, "`${...}` references go round in a circle", None),
    ("a: ${oc.decode:'1'}\n", "HP113", 1, 4, "resolver `${oc.decode:'1'}` is not supported", None),
    ("a: ${itwinai.cwd:}/ray\n", "HP113", 1, 4, "resolver `${itwinai.cwd:}` is not supported",
     "drop it: relative paths (`storage_path: ray_checkpoints`) resolve against the config's directory"),
    ("a: ${.b}\n", "HP113", 1, 4, "relative reference `${.b}` is not supported", None),
    ("batch: 1\na:\n  b: ${bach}\n", "HP113", 3, 6, "`${bach}` refers to nothing: no `bach` there",
     "did you mean `batch`?"),
    ("a: [1, 2]\nb: \"x-${a}\"\n", "HP113", 2, 4, "`${a}` is a collection and cannot be part of a string", None),
])
def test_bad_references(tmp_path: Path, text, code, line, col, message, help) -> None:
    d = one(tmp_path, text)
    assert (d.code, d.line, d.col, d.message) == (code, line, col, message)
    if help:
        assert d.help == help


def test_every_bad_reference_is_reported(tmp_path: Path) -> None:
    errs = diagnose(tmp_path, 'a: "${nope1}"\nb: "${nope2}"\nc: "x-${nope3}-${.rel}"\nd: ${a}\n')
    # `d` refers to `a`, which is reported where it is written, not again at `d`.
    assert [(e.code, e.line, e.message) for e in errs] == [
        ("HP113", 1, "`${nope1}` refers to nothing: no `nope1` there"),
        ("HP113", 2, "`${nope2}` refers to nothing: no `nope2` there"),
        ("HP113", 3, "`${nope3}` refers to nothing: no `nope3` there"),
        ("HP113", 3, "relative reference `${.rel}` is not supported"),
    ]


def test_an_invalid_mode_is_not_also_reported_as_missing(tmp_path: Path) -> None:
    assert [(d.message, d.help) for d in reported(tmp_path, seed_with("mode: min", "mode: minimize"))] == [
        ("`mode` must be `min` or `max`, not `minimize`", "did you mean `min`?")]


def test_reference_bomb_is_stopped(tmp_path: Path) -> None:
    lines = ["a0: [" + ", ".join(["x"] * 40) + "]"]
    lines += [f"a{i}: [" + ", ".join([f'"${{a{i - 1}}}"'] * 40) + "]" for i in range(1, 6)]
    d = one(tmp_path, "\n".join(lines) + "\n")
    assert d.code == "HP111" and "references expand to more than" in d.message


# ------------------------------------------------------------------------------ fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_YAML_BITS = st.sampled_from([
    ":", " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "!!str ", "<<: ", "${a}", "'", '"',
    "type: choice", "options: [1, 2]", "min: 1e-5", "class_path: a.B", "init_args:", "steps:", "config:",
    "name: bayes", "null", "true", "1e400", "-", "#", "\t", "?", "|", ">", "%YAML 1.1\n---\n",
])


def _compiles_or_reports(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        compile_path(path)
    except SpecError as exc:
        assert exc.errors, exc.diagnostics
        assert all(d.file == str(path) for d in exc.diagnostics)
        exc.render()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_seed_configs_never_crash(tmp_path: Path, data) -> None:
    text = SEED
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 40)))
        text = text[:i] + data.draw(st.one_of(st.just(""), _YAML_BITS, st.text(max_size=5))) + text[j:]
    _compiles_or_reports(tmp_path, text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_YAML_BITS, max_size=30))
def test_random_yaml_never_crashes(tmp_path: Path, parts) -> None:
    _compiles_or_reports(tmp_path, "".join(parts))


def test_steps_are_checked_against_their_source_only_when_it_is_certain(tmp_path: Path) -> None:
    """Required arguments, a misspelt module beside the config (a warning: it may be
    installed where the study runs), and modules whose names the source cannot tell."""
    write(tmp_path, "")
    data = tmp_path / "data.py"
    data.write_text("class FashionMNISTGetter:\n    def __init__(self, root):\n        pass\n\n\n"
                    "class FashionMNISTSplitter:\n    def __init__(self, **kw):\n        pass\n\n"
                    "    def execute(self, data):\n        return data\n")
    (d,) = diagnose(tmp_path, SEED)
    assert (d.line, d.col, d.message) == (5, 21, "getter: `FashionMNISTGetter` (data.py) needs `root`: "
                                                 "hpoc builds it with the step's `init_args` only")
    assert d.help == "give it in the step's `init_args`"  # what the config calls them
    data.write_text("from json import *\n")  # any name may come from there: no answer
    path = tmp_path / "config.yaml"
    assert [w.code for w in compile_path(path).warnings] == ["HP820", "HP802"]  # HP802: 2 trials, 5 random
    path.write_text(SEED.replace("trainer.MyRayTorchTrainer", "trainers.MyRayTorchTrainer"))
    w = next(w for w in compile_path(path).warnings if w.code == "HP803")
    assert (w.line, w.message, w.help) == (10, "trainer: no module `trainers` beside the spec, nor installed here",
                                           "did you mean `trainer`?")


def test_checker_messages_write_hpo_snippets_as_yaml(tmp_path: Path) -> None:
    """Settings named away from their own line, and suggested fixes, are what the YAML would say."""
    d = one(tmp_path, seed_with("GPU: 1", "GPU: 0.5"))
    assert d.message == "fractional `GPU` (0.5) needs `num_workers: 1`"  # not `workers = 1`
    path = write(tmp_path, seed_with("epochs: 20", "epochs: 1").replace("grace_period: 10", "grace_period: 1"))
    w = next(w for w in compile_path(path).warnings if w.code == "HP805")
    assert w.message.startswith("`scheduler: {name: asha}` stops no trial early")
    assert w.help.endswith("or use `scheduler: {name: fifo}`")
    from hpoc.yaml import yaml_words
    assert yaml_words("add `lr = loguniform(1e-5, 1e-2)` to `space`") == \
        "add `lr: {type: loguniform, min: 1e-5, max: 1e-2}` to `train_loop_config`"
    assert yaml_words("only enumerates `grid(...)`") == "only enumerates `type: grid_search`"
    # a bare domain call in a hint is a domain mapping; `uniform(...)`, named only, is its `type`
    assert yaml_words("write `choice(a, b)`") == "write `{type: choice, categories: [a, b]}`"
    assert yaml_words("write `qrandint(16, 64, 16)`") == "write `{type: qrandint, lower: 16, upper: 64, q: 16}`"
    assert yaml_words("use `uniform(...)` bounds") == "use `type: uniform` bounds"
    assert yaml_words("add `scheduler bohb { max_t = ... }`, or `search optuna { sampler = nsga2 }`") == \
        "add `scheduler: {name: bohb, max_t: ...}`, or `search_alg: {name: optuna, sampler: nsga2}`"
    assert yaml_words("set `checkpoint { every = 1 }`; add `hyperparam_mutations { lr = loguniform(1e-4, 1e-1) }`") \
        == "set `checkpoint_config: {checkpoint_frequency: 1}`; add " \
           "`hyperparam_mutations: {lr: {type: loguniform, min: 1e-4, max: 1e-1}}`"
    assert yaml_words("raise `trials.num_samples`, or change `storage.name`; `space.snap`") == \
        "raise `num_samples`, or change `run_config.name`; `space.snap`"
    d = one(tmp_path, seed_with("options: [32, 64, 128]", "options: []"))
    assert d.help == "write `{type: choice, options: [a, b]}`"  # as the config lists them
    d = one(tmp_path, seed_with("type: uniform", "type: lograndint").replace("min: 1e-5", "min: 0")
            .replace("max: 1e-3", "max: 64"))
    assert d.help == "log domains cannot reach 0; use a small positive bound such as 1"


def test_a_stop_value_on_a_minimised_objective_is_warned_about(tmp_path: Path) -> None:
    """Ray stops once `loss` >= 0.1: meant as "until loss falls to 0.1", it ends every trial at once."""
    path = write(tmp_path, seed_with("name: Virgo-HPO-Experiment",
                                     "name: Virgo-HPO-Experiment\n              stop: {loss: 0.1, training_iteration: 20}"))
    (w,) = [w for w in compile_path(path).warnings if w.code == "HP805"]
    assert (w.line, w.col) == (44, 22) and w.message.startswith("`stop` ends a trial once `loss` is 0.1 or more")
    text = path.read_text().replace("mode: min", "mode: max")  # maximised: reaching it is the goal
    path = write(tmp_path, text)
    assert "HP805" not in [w.code for w in compile_path(path).warnings]


def test_num_to_keep_without_a_score_attribute_says_which_checkpoints_are_kept(tmp_path: Path) -> None:
    """Ray keeps the most recent N; hpoc ranks by the objective: said, not silently changed."""
    ck = "name: Virgo-HPO-Experiment\n              checkpoint_config: {num_to_keep: 3%s}"
    path = write(tmp_path, seed_with("name: Virgo-HPO-Experiment", ck % ""))
    (w,) = [w for w in compile_path(path).warnings if w.code == "HP820" and "num_to_keep" in w.message]
    assert (w.line, w.col, w.message) == (44, 35, "`num_to_keep: 3` keeps the best checkpoints by the objective "
                                                  "metric, not the most recent as in Ray")
    path = write(tmp_path, seed_with("name: Virgo-HPO-Experiment", ck % ", checkpoint_score_attribute: loss"))
    assert not [w for w in compile_path(path).warnings if "num_to_keep" in w.message]


def test_a_ray_tune_call_written_as_a_value_is_an_error_not_a_constant(tmp_path: Path) -> None:
    text = seed_with("batch_size:\n                type: choice\n                options: [32, 64, 128]",
                     "batch_size: tune.choice([32, 64, 128])").replace(
        "epochs: 20", 'epochs: 20\n              lr2: "ray.tune.loguniform(1e-5, 1e-3)"\n'
                      "              act: relu(x)\n              width: tune.qrandint(8, 64, q=8)\n"
                      '              opt: {name: adam, lr: "tune.loguniform(1e-4, 1e-2)"}')
    errs = diagnose(tmp_path, text)
    assert [(e.code, e.line, e.col) for e in errs] == [("HP301", 20, 27), ("HP301", 26, 20), ("HP301", 28, 22), ("HP301", 29, 37)]
    assert errs[0].message.startswith("`tune.choice([32, 64, 128])` is Python code")
    assert errs[0].help == "write `batch_size: {type: choice, categories: [32, 64, 128]}`"
    assert errs[1].help == "write `lr2: {type: loguniform, lower: 1e-5, upper: 1e-3}`"
    assert errs[2].help == "write `width: {type: qrandint, lower: 8, upper: 64, q: 8}`"
    assert "`opt.lr` would be this string" in errs[3].message  # nested in a mapping of constants
    assert errs[3].help == "write `lr: {type: loguniform, lower: 1e-4, upper: 1e-2}`"


def test_a_ray_tune_call_written_as_a_mutation_is_given_the_mapping_to_write(tmp_path: Path) -> None:
    """PBT's `hyperparam_mutations: {learning_rate: "tune.uniform(...)"}` was answered with
    an example for `lr`, not the mapping of the call written."""
    text = seed_with("name: asha", "name: pbt\n                perturbation_interval: 5\n"
                     "                hyperparam_mutations:\n"
                     '                  learning_rate: "tune.uniform(1e-5, 1e-3)"').replace(
        "                max_t: 20\n                grace_period: 10\n                reduction_factor: 4\n"
        "                brackets: 1\n", "").replace("              search_alg:\n                name: bayes\n"
                                                    "                metric: loss\n                mode: min\n"
                                                    "                n_random_steps: 5\n",
                                                    "              metric: loss\n              mode: min\n")
    d = one(tmp_path, text)
    assert (d.code, d.message) == ("HP301", "`tune.uniform(1e-5, 1e-3)` is Python code, which a config cannot "
                                            "hold: PBT cannot mutate `learning_rate` with a string")
    assert d.help == "write `learning_rate: {type: uniform, lower: 1e-5, upper: 1e-3}`"


def test_the_newer_itwinai_trainer_layout_is_named_not_reported_as_a_missing_config(tmp_path: Path) -> None:
    text = ("hpo_training_pipeline:\n  _target_: itwinai.pipeline.Pipeline\n  steps:\n"
            "    - _target_: data.FashionMNISTGetter\n    - _target_: trainer.MyRayTorchTrainer\n"
            "      config: null\n      epochs: 2\n      ray_scaling_config:\n"
            "        _target_: ray.train.ScalingConfig\n        num_workers: 1\n"
            "      ray_search_space:\n        batch_size: {type: choice, categories: [32, 64]}\n")
    d = one(tmp_path, text)
    assert (d.code, d.line, d.col) == ("HP204", 8, 7), d.render()
    assert d.message == "`ray_scaling_config` is the layout of itwinai's newer `TorchTrainer`, which hpoc does not run"
    assert d.help.startswith("move them under the trainer's `config:`: `ray_scaling_config` as `scaling_config`, "
                             "`ray_search_space` as `train_loop_config`")


def test_a_run_name_of_the_wrong_type_is_one_error_not_also_a_missing_name(tmp_path: Path) -> None:
    diags = reported(tmp_path, seed_with("name: Virgo-HPO-Experiment", "name: 42"))
    assert [(d.code, d.line) for d in diags] == [("HP203", 43)]


def test_a_null_metric_or_mode_is_unset_as_in_ray(tmp_path: Path) -> None:
    path = write(tmp_path, seed_with("mode: min", "mode: null"))
    assert [(w.code, w.message) for w in compile_path(path).warnings if w.code == "HP822"] == [
        ("HP822", "no `mode` is set for `loss`: minimising it (itwinai's default)")]


def test_a_reference_inside_text_is_a_string_and_the_hint_says_so(tmp_path: Path) -> None:
    d = one(tmp_path, "x: 2\n" + seed_with("max_t: 20", "max_t: ${x}0"))
    assert (d.code, d.line, d.message) == ("HP203", 33, '`max_t` must be an integer, not the string "20"')
    assert d.help.startswith("a `${...}` reference within other text gives a string"), d.help


def test_an_invalid_num_samples_is_one_error_not_also_a_single_trial_warning(tmp_path: Path) -> None:
    diags = reported(tmp_path, seed_with("num_samples: 2", "num_samples: two"))
    assert [(d.code, d.line) for d in diags] == [("HP203", 29)]


def test_a_fix_for_a_setting_names_the_key_the_config_used(tmp_path: Path) -> None:
    """`checkpoint_freq: 1` where the config wrote `checkpoint_freq` (not a `checkpoint_config`
    that would then set the frequency twice)."""
    text = seed_with("name: asha", "name: pbt\n                perturbation_interval: 1").replace(
        "                max_t: 20\n                grace_period: 10\n                reduction_factor: 4\n"
        "                brackets: 1\n", "").replace("            run_config:", "            checkpoint_freq: 0\n"
                                                   "            run_config:")
    d = next(e for e in diagnose(tmp_path, text) if e.code == "HP401")
    assert (d.message, d.help) == ("`scheduler: {name: pbt}` copies checkpoints between trials, but "
                                   "`checkpoint_freq` is 0", "set `checkpoint_freq: 1`")


def test_a_misspelt_domain_type_is_an_error_not_a_constant_mapping(tmp_path: Path) -> None:
    """`tpye: uniform` would hand every trial the dict `{tpye: uniform, min: ..., max: ...}`
    as its learning rate; a mapping of constants (`opt: {name: adam}`) stays one."""
    text = seed_with("type: uniform", "tpye: uniform").replace(
        "epochs: 20", "epochs: 20\n              opt: {name: adam, momentum: 0.9}\n"
                      "              sched: {step: {Type: choice, options: [1, 2]}}")
    errs = diagnose(tmp_path, text)
    assert [(e.code, e.line, e.col) for e in errs] == [("HP201", 24, 17), ("HP201", 29, 30)]
    assert errs[0].message == "unknown key `tpye` in `learning_rate`" and errs[0].help == "did you mean `type`?"
    assert errs[1].message == "unknown key `Type` in `sched.step`"


def test_a_misspelt_grid_search_is_an_error_not_a_constant_mapping(tmp_path: Path) -> None:
    """`layers: {grid_serach: [2, 4]}` handed every trial that dict as its `layers`."""
    text = seed_with("epochs: 20", "epochs: 20\n              layers: {grid_serach: [2, 4]}")
    errs = diagnose(tmp_path, text)
    assert [(e.code, e.line, e.col) for e in errs] == [("HP201", 28, 24)]
    assert errs[0].message == "unknown key `grid_serach` in `layers`" and \
        errs[0].help == "did you mean `grid_search`?"
    nested = seed_with("epochs: 20", "epochs: 20\n              model: {kind: mlp, layers: {grid_serach: [2, 4]}}")
    assert [e.message for e in diagnose(tmp_path, nested)] == ["unknown key `grid_serach` in `model.layers`"]


def test_a_constant_mapping_of_one_list_named_like_grid_is_no_error(tmp_path: Path) -> None:
    """`patch: {grid_size: [7, 7]}` or `{grid: [4, 4]}` (a model's constants) were refused as
    a misspelt `grid_search`; only a near spelling of it is one."""
    for key in ("grid_size", "grid", "grids", "grid_shape"):
        write(tmp_path, seed_with("epochs: 20", f"epochs: 20\n              patch: {{{key}: [7, 7]}}"))
        compile_path(tmp_path / "config.yaml")  # no SpecError
    for key in ("gridsearch", "grid-search", "grid_seach", "Grid_Search"):
        text = seed_with("epochs: 20", f"epochs: 20\n              layers: {{{key}: [2, 4]}}")
        assert [e.help for e in diagnose(tmp_path, text)] == ["did you mean `grid_search`?"], key


def test_a_domain_written_without_its_type_is_a_warning(tmp_path: Path) -> None:
    """`learning_rate: {min: 1e-5, max: 1e-3}` (`type:` forgotten) handed every trial the dict
    as its learning rate, without a word; a mapping of other constants says nothing."""
    text = seed_with("                type: uniform\n", "").replace(
        "epochs: 20", "epochs: 20\n              opt: {name: adam, momentum: 0.9}\n"
                      "              sizes: {options: [1, 2]}")
    write(tmp_path, text)
    warned = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP826"]
    assert [(w.line, w.col, w.message, w.help) for w in warned] == [
        (23, 15, "`learning_rate` is a constant mapping: every trial gets it as written; without a `type` it is "
                 "not searched", "to search it, add `type: uniform` (or `loguniform`, `randint`, ...); if the "
                 "trainer reads it as a mapping, it is right as written"),
        (28, 15, "`sizes` is a constant mapping: every trial gets it as written; without a `type` it is "
                 "not searched", "to search it, add `type: choice`; if the trainer reads it as a mapping, it is "
                 "right as written")]
    nested = seed_with("epochs: 20", "epochs: 20\n              optimizer: {name: adam, lr: {min: 0.1, max: 0.2}}")
    write(tmp_path, nested)
    (w,) = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP826"]
    assert (w.line, w.message.split(":")[0]) == (28, "`optimizer.lr` is a constant mapping")


def test_normalisation_constants_are_not_said_to_be_a_domain_without_its_type(tmp_path: Path) -> None:
    """`normalize: {mean: 0.1307, std: 0.3081}` (MNIST's) or per-channel lists are constants
    the trainer reads, not a `randn` missing its type: HP826 told the user to add one."""
    text = seed_with("epochs: 20", "epochs: 20\n              normalize: {mean: 0.1307, std: 0.3081}\n"
                                   "              rgb: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}\n"
                                   "              clip: {min: [0, 0], max: [1, 1]}")
    write(tmp_path, text)
    assert "HP826" not in [w.code for w in compile_path(tmp_path / "config.yaml").warnings]


def test_a_trainer_module_not_found_is_not_also_said_to_be_hpocs_default_loop(tmp_path: Path) -> None:
    """`class_path: trainerz.MyRayTorchTrainer` (no such module): besides HP803, the check said
    `loss` "is not reported by hpoc's default train loop ... did you mean `val_loss`?", of a
    trainer that is not hpoc's loop; nothing is known of what it reports."""
    write(tmp_path, seed_with("class_path: trainer.MyRayTorchTrainer", "class_path: trainerz.MyRayTorchTrainer"))
    codes = [w.code for w in compile_path(tmp_path / "config.yaml").warnings]
    assert "HP803" in codes and "HP801" not in codes, codes
    # nor is its `stop` on `val_accuracy` in percent held to hpoc's loop's fraction (HP805)
    write(tmp_path, seed_with("class_path: trainer.MyRayTorchTrainer", "class_path: trainerz.MyRayTorchTrainer")
          .replace("storage_path: ray_checkpoints", "storage_path: ray_checkpoints\n              stop:\n"
                   "                val_accuracy: 99"))
    warned = compile_path(tmp_path / "config.yaml").warnings
    assert [w.code for w in warned if w.code in ("HP801", "HP805")] == [], [w.render() for w in warned]


def test_a_reference_unquoted_inside_braces_is_told_to_be_quoted(tmp_path: Path) -> None:
    """`run_config: {name: run-${epochs}}`: PyYAML's "expected ',' or '}', but got '{'" said
    nothing of the `${...}` that the user wrote there, a value YAML reads only when quoted."""
    d = one(tmp_path, seed_with("run_config:\n              storage_path: ray_checkpoints\n"
                                "              name: Virgo-HPO-Experiment",
                                "run_config: {storage_path: ray_checkpoints, name: run-${epochs}}"))
    assert (d.code, d.line, d.col) == ("HP110", 41, 68)
    assert d.help == 'quote a value holding `${...}` inside `{...}` or `[...]`: `key: "run-${epochs}"`'


def test_a_misspelt_options_key_of_a_choice_is_one_error_naming_options(tmp_path: Path) -> None:
    """`option: [32, 64]` was two errors (no argument `option`, and `choice` needs its values),
    each saying to list them under Ray's `categories`, not the `options` the config meant."""
    d = one(tmp_path, seed_with("options: [32, 64, 128]", "option: [32, 64, 128]"))
    assert (d.code, d.line, d.col, d.message, d.help) == (
        "HP301", 22, 17, "`choice` has no argument `option` (`batch_size`)", "did you mean `options`?")


def test_data_steps_written_after_the_trainer_are_an_error_not_a_study_without_data(tmp_path: Path) -> None:
    """Getter and splitter listed after the trainer: a warning that they are not run, and a
    valid study whose every trial got no data (in itwinai, whose steps run in order, the
    trainer gets no input either). A step after a trainer that has its data is still a warning."""
    data = ("      - class_path: data.FashionMNISTGetter\n      - class_path: data.FashionMNISTSplitter\n"
            "        init_args:\n          train_proportion: 0.9\n          validation_proportion: 0.1\n")
    assert SEED.endswith("log_freq: batch\n")  # the trainer step ends the file
    trainer_first = SEED.replace(data, "") + data
    errs = diagnose(tmp_path, trainer_first)
    assert [(e.code, e.message) for e in errs] == [
        ("HP204", "step `data.FashionMNISTGetter` comes after the trainer, which would get no data"),
        ("HP204", "step `data.FashionMNISTSplitter` comes after the trainer, which would get no data")]
    assert errs[0].help == "move the data steps before the trainer: steps run in the order they are listed"
    write(tmp_path, SEED + "      - class_path: data.FashionMNISTGetter\n")
    assert "HP821" in [w.code for w in compile_path(tmp_path / "config.yaml").warnings]


def test_a_step_after_a_trainer_that_loads_its_own_data_stays_a_warning(tmp_path: Path) -> None:
    """A trainer with no data steps (it loads its own) and a saver after it: the saver is
    not run (a warning, as before), not refused as data steps the trainer would miss."""
    data = ("      - class_path: data.FashionMNISTGetter\n      - class_path: data.FashionMNISTSplitter\n"
            "        init_args:\n          train_proportion: 0.9\n          validation_proportion: 0.1\n")
    write(tmp_path, SEED.replace(data, "") + "      - class_path: evaluate.ModelSaver\n")
    (w,) = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP821"]
    assert w.message.startswith("step `evaluate.ModelSaver` after the trainer is not run"), w.message
    # named like data but no getter or splitter: a saver in data.py, a plotter, a model loader
    for step in ("data.ResultsSaver", "plots.DataPlotter", "models.ModelLoader"):
        write(tmp_path, SEED.replace(data, "") + f"      - class_path: {step}\n")
        (w,) = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP821"]
        assert w.message.startswith(f"step `{step}` after the trainer is not run"), w.message


def test_a_reversed_objectives_fix_is_written_as_yaml(tmp_path: Path) -> None:
    """`metric: loss` with `mode: max`: HP809's help said "write `minimize loss`", .hpo syntax."""
    write(tmp_path, seed_with("mode: min", "mode: max"))
    (w,) = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP809"]
    assert w.help == "write `mode: min` (if maximising is really meant, this warning can be ignored)"


def test_a_num_to_keep_that_is_an_error_is_not_also_said_to_keep_the_best(tmp_path: Path) -> None:
    """`num_to_keep: 0`: a warning of what it keeps beside the error that it keeps nothing."""
    write(tmp_path, seed_with("name: Virgo-HPO-Experiment",
                              "name: Virgo-HPO-Experiment\n              checkpoint_config: {num_to_keep: 0}"))
    with pytest.raises(SpecError) as info:
        compile_path(tmp_path / "config.yaml")
    said = [(d.code, d.message) for d in info.value.diagnostics if "num_to_keep" in d.message]
    assert said == [("HP204", "`num_to_keep` must be at least 1 (got 0)")], said


def test_a_loop_that_reports_on_rank_0_only_is_warned_about(tmp_path: Path) -> None:
    """`if self.strategy.global_rank() == 0: self.checkpoint_and_report(...)`: with 2 workers
    the trial hung until killed (rank 0 waits for the others' report, which never comes)."""
    call = ("            self.checkpoint_and_report(\n"
            "                epoch, tuning_metrics=metrics, checkpointing_data=checkpoint\n            )\n")
    path = write(tmp_path, SEED)
    trainer = tmp_path / "trainer.py"
    assert call in trainer.read_text()
    assert "HP801" not in [w.code for w in compile_path(path).warnings]
    guarded = "            if self.strategy.global_rank() == 0:\n" + "".join("    " + ln + "\n" for ln in call.splitlines())
    trainer.write_text(trainer.read_text().replace(call, guarded))
    (w,) = [w for w in compile_path(path).warnings if w.code == "HP801"]
    assert w.message.startswith("trainer: `MyRayTorchTrainer.train()` reports on some ranks only "
                                "(`if self.strategy.global_rank() == 0:`, trainer.py:"), w.message
    assert "every worker must report" in w.message and w.help.startswith("call `self.checkpoint_and_report(")
    # one worker (the seed has 4): rank 0 is every worker
    write(tmp_path, seed_with("num_workers: 4", "num_workers: 1"))
    trainer.write_text(trainer.read_text().replace(call, guarded))
    assert "HP801" not in [w.code for w in compile_path(path).warnings]


def test_a_loop_that_reports_on_every_rank_through_an_if_else_is_not_warned_about(tmp_path: Path) -> None:
    """Ray's documented pattern: rank 0 reports with its checkpoint, the others (`else:`)
    without one. Every worker reports: HP801 said the trial would hang."""
    call = ("            self.checkpoint_and_report(\n"
            "                epoch, tuning_metrics=metrics, checkpointing_data=checkpoint\n            )\n")
    path = write(tmp_path, SEED)
    trainer = tmp_path / "trainer.py"
    both = ("            if self.strategy.global_rank() == 0:\n" + "".join("    " + ln + "\n" for ln in call.splitlines())
            + "            else:\n                self.checkpoint_and_report(epoch, tuning_metrics=metrics)\n")
    trainer.write_text(trainer.read_text().replace(call, both))
    assert "HP801" not in [w.code for w in compile_path(path).warnings]
    # two ifs, one per side: every rank reports too
    sides = both.replace("            else:\n", "            if self.strategy.global_rank() != 0:\n")
    trainer.write_text((tmp_path / "trainer.py").read_text().replace(both, sides))
    assert sides in trainer.read_text()
    assert "HP801" not in [w.code for w in compile_path(path).warnings]
    trainer.write_text(trainer.read_text().replace(sides, both))
    # the else reports nothing: rank 0 alone does
    trainer.write_text(trainer.read_text().replace("                self.checkpoint_and_report(epoch, tuning_metrics=metrics)\n",
                                                   "                pass\n"))
    assert "HP801" in [w.code for w in compile_path(path).warnings]


def test_an_installed_trainer_module_is_not_said_to_be_hpocs_default_loop(tmp_path: Path, monkeypatch) -> None:
    """`class_path: myproject.trainers.MyRayTorchTrainer` from the user's installed package (its
    source is not read): the check said `loss` "is not reported by hpoc's default train loop
    ... did you mean `val_loss`?", of an itwinai loop that reports `loss`."""
    lib = tmp_path / "lib" / "myproject"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "trainers.py").write_text((EXAMPLE / "trainer.py").read_text())
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    write(tmp_path, seed_with("class_path: trainer.MyRayTorchTrainer",
                              "class_path: myproject.trainers.MyRayTorchTrainer"))
    codes = [w.code for w in compile_path(tmp_path / "config.yaml").warnings]
    assert "HP801" not in codes and "HP803" not in codes, codes

def test_a_trainer_re_exported_by_its_package_is_read_where_it_is_defined(tmp_path: Path) -> None:
    """`class_path: mypkg.MyRayTorchTrainer`, the package's __init__.py importing it from
    `.trainer`: the check read __init__.py, found no dict there and said `loss` "is not reported
    by hpoc's default train loop ... did you mean `val_loss`?" of a loop that reports it."""
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .trainer import MyRayTorchTrainer as MyRayTorchTrainer\n")
    (pkg / "trainer.py").write_text((EXAMPLE / "trainer.py").read_text())
    write(tmp_path, seed_with("class_path: trainer.MyRayTorchTrainer", "class_path: mypkg.MyRayTorchTrainer"))
    assert "HP801" not in [w.code for w in compile_path(tmp_path / "config.yaml").warnings]
    # read there: a metric its loop does not report is still said
    text = (tmp_path / "config.yaml").read_text().replace("metric: loss", "metric: val_loss")
    (tmp_path / "config.yaml").write_text(text)
    (w,) = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP801"]
    assert w.message == "metric `val_loss` is not reported to Tune by the trainer"
    # and a key it reads that the config lacks is said at the line of that file
    (tmp_path / "config.yaml").write_text(text.replace("              epochs: 20\n", ""))
    (w,) = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP811"]
    assert "(mypkg/trainer.py:" in w.message, w.message

def test_the_hpo_pipeline_is_picked_beside_a_plain_one_and_two_are_refused(tmp_path: Path) -> None:
    plain = ("training_pipeline:\n  class_path: itwinai.pipeline.Pipeline\n  init_args:\n    steps:\n"
             "      - class_path: data.FashionMNISTGetter\n      - class_path: trainer.MyRayTorchTrainer\n"
             "        init_args: {strategy: ddp}\n")
    write(tmp_path, SEED + plain)
    assert compile_path(tmp_path / "config.yaml").plan["study"]["name"] == "Virgo-HPO-Experiment"
    second = SEED.replace("ray_training_pipeline:", "hpo_training_pipeline:")
    d = one(tmp_path, SEED + second)
    assert (d.line, d.message) == (
        53, "several HPO pipelines (with a trainer `config`) in this file: `ray_training_pipeline` "
            "or `hpo_training_pipeline`")
    assert "a file of its own" in d.help


def test_a_training_configuration_beside_the_hpo_pipeline_is_not_a_second_hpo_pipeline(tmp_path: Path) -> None:
    """itwinai's TorchTrainer pipelines take a `config` too (a TrainingConfiguration: batch_size,
    optim_lr, ...): beside it, the pipeline with HPO sections is the study, as with no `config`."""
    plain = ("training_pipeline:\n  class_path: itwinai.pipeline.Pipeline\n  init_args:\n    steps:\n"
             "      - class_path: data.FashionMNISTGetter\n      - class_path: trainer.MyRayTorchTrainer\n"
             "        init_args:\n          config: {batch_size: 32, optim_lr: 0.001}\n          strategy: ddp\n")
    configuration = plain.replace("config: {batch_size: 32, optim_lr: 0.001}",
                                  "config:\n            class_path: itwinai.torch.config.TrainingConfiguration\n"
                                  "            init_args: {batch_size: 32}")
    for other in (plain, configuration):
        write(tmp_path, other + SEED)
        assert compile_path(tmp_path / "config.yaml").plan["study"]["name"] == "Virgo-HPO-Experiment"

def test_a_step_argument_of_the_wrong_type_is_an_error_where_its_annotation_says_so(tmp_path: Path) -> None:
    """As jsonargparse refuses it in itwinai; the step would fail in every run."""
    d = one(tmp_path, seed_with("train_proportion: 0.9", "train_proportion: ninety"))
    assert (d.line, d.col, d.message) == (8, 11, "splitter: `FashionMNISTSplitter` (data.py) takes "
                                                 '`train_proportion: float`, not the string "ninety"')
    # int for float, None, and annotations it cannot be sure of are accepted
    write(tmp_path, "")
    (tmp_path / "data.py").write_text(
        "from typing import Optional\n\n\nclass FashionMNISTGetter:\n"
        "    def __init__(self, a: 'int | None' = 1, b: Optional[str] = None, c: list = (), d: float = 0,\n"
        "                 e: bool = False):\n"
        "        pass\n\n    def execute(self):\n        return None\n\n\nclass FashionMNISTSplitter:\n"
        "    def __init__(self, train_proportion: float, validation_proportion: float = 0.0):\n"
        "        pass\n\n    def execute(self, data):\n        return data\n")
    getter = "      - class_path: data.FashionMNISTGetter\n"
    ok = getter + "        init_args: {a: null, b: 3, c: 3, d: 2, e: 1}\n"  # Python takes these as meant
    assert compile_path(write(tmp_path, SEED.replace(getter, ok)))
    bad = getter + "        init_args: {a: 1.5, b: no, d: true, e: 'false'}\n"
    errs = diagnose(tmp_path, SEED.replace(getter, bad))
    assert [e.message.split(", not ")[1] for e in errs] == ["the number `1.5`", "`false`", "`true`",
                                                            'the string "false"']


def test_checkpoint_at_end_with_no_periodic_checkpoints_says_none_are_saved(tmp_path: Path) -> None:
    """Ray's `{checkpoint_frequency: 0, checkpoint_at_end: true}` keeps the final checkpoint;
    hpoc's `every: 0` saves none, so "hpoc always checkpoints the last epoch" would be false."""
    ck = "name: Virgo-HPO-Experiment\n              checkpoint_config: {checkpoint_frequency: %s, checkpoint_at_end: true}"
    path = write(tmp_path, seed_with("name: Virgo-HPO-Experiment", ck % "0"))
    (w,) = [w for w in compile_path(path).warnings if "checkpoint_at_end" in w.message]
    assert w.message == ("`checkpoint_at_end` is ignored: with `checkpoint_frequency: 0` hpoc saves no "
                         "checkpoint at all, not even the last")
    assert "set `checkpoint_frequency` to the number of epochs" in w.help
    path = write(tmp_path, seed_with("name: Virgo-HPO-Experiment", ck % "2"))
    (w,) = [w for w in compile_path(path).warnings if "checkpoint_at_end" in w.message]
    assert w.message == "`checkpoint_at_end` is ignored: hpoc always checkpoints the last epoch"


def test_a_key_bayes_does_not_take_is_an_error_when_it_falls_back_to_optuna(tmp_path: Path) -> None:
    """The tutorial's `bayes` with a `choice` searches with TPE and drops BayesOpt's own
    options; a misplaced or misspelt key is no BayesOpt option, and must not vanish with them."""
    text = seed_with("n_random_steps: 5", "n_random_steps: 5\n                max_concurrent_trials: 2\n"
                     "                patiense: 3\n                patience: 3")
    errs = diagnose(tmp_path, text)
    assert [(e.code, e.line, e.message) for e in errs] == [
        ("HP201", 41, "unknown key `max_concurrent_trials` in `search_alg`"),
        ("HP201", 42, "unknown key `patiense` in `search_alg: {name: bayes}`")]
    assert [e.help for e in errs] == ["`max_concurrent_trials` belongs in `tune_config`", "did you mean `patience`?"]
    w = next(w for w in compile_path(write(tmp_path, text.replace("                patiense: 3\n", "")
                                             .replace("                max_concurrent_trials: 2\n", ""))).warnings
             if w.code == "HP820")
    assert "BayesOpt-only options dropped: `patience`" in w.notes


def test_a_tune_config_key_indented_into_search_alg_or_scheduler_is_an_error(tmp_path: Path) -> None:
    """Also where the searcher itself is dropped (PBT explores by itself): not lost with it."""
    text = seed_with("name: asha", "name: pbt\n                num_samples: 8").replace(
        "                max_t: 20\n                grace_period: 10\n                reduction_factor: 4\n"
        "                brackets: 1\n", "                perturbation_interval: 5\n").replace(
        "n_random_steps: 5", "n_random_steps: 5\n                max_concurrent_trials: 2")
    errs = diagnose(tmp_path, text)
    assert [(e.line, e.message, e.help) for e in errs] == [
        (32, "unknown key `num_samples` in `scheduler`", "`num_samples` belongs in `tune_config`"),
        (39, "unknown key `max_concurrent_trials` in `search_alg`", "`max_concurrent_trials` belongs in `tune_config`")]


def test_older_itwinais_checkpoint_keys_in_run_config_are_told_where_they_go(tmp_path: Path) -> None:
    """Older itwinai defaults held `checkpoint_freq` and `checkpoint_at_end` in `run_config`:
    "did you mean `checkpoint_config`?" sent `checkpoint_freq` where it has another name.
    A key known to belong elsewhere is said to, ahead of a near spelling."""
    text = seed_with("storage_path: ray_checkpoints", "storage_path: ray_checkpoints\n"
                     "              checkpoint_freq: 10\n              checkpoint_at_end: true")
    text = text.replace("num_samples: 2", "num_samples: 2\n              name: hpo", 1)
    errs = diagnose(tmp_path, text)
    assert [(e.message, e.help) for e in errs] == [
        ("unknown key `name` in `tune_config`", "`name` belongs in `run_config`"),
        ("unknown key `checkpoint_freq` in `run_config`", "`checkpoint_freq` belongs in `config`"),
        ("unknown key `checkpoint_at_end` in `run_config`", "`checkpoint_at_end` belongs in `checkpoint_config`")]


def test_a_tune_config_at_the_top_of_the_file_is_said_to_be_unread(tmp_path: Path) -> None:
    """`tune_config:` outside the trainer's `config` was silently ignored: 10 trials ran as 2,
    with another search. One an alias or a `${...}` reference uses is a variable."""
    text = SEED + "tune_config:\n  num_samples: 10\n"
    (w,) = [w for w in compile_path(write(tmp_path / "a", text)).warnings if w.code == "HP821"]
    assert (w.line, w.col, w.message) == (53, 1, "`tune_config` at the top of the file is not read: the "
                                                 "trainer's `config` holds it")
    assert w.help == "move `tune_config` under the trainer's `init_args: {config: ...}`"
    aliased = "run_config: &run\n  storage_path: ray_checkpoints\n  name: x\n" + SEED.replace(
        "            run_config:\n              storage_path: ray_checkpoints\n"
        "              name: Virgo-HPO-Experiment\n", "            run_config: *run\n")
    referenced = "scaling_config: {num_workers: 1}\n" + SEED.replace(
        "num_workers: 4", "num_workers: ${scaling_config.num_workers}")
    for text in (aliased, referenced):
        assert "top of the file" not in " ".join(w.message for w in compile_path(write(tmp_path / "b", text)).warnings)


def test_itwinais_own_trainer_class_is_refused_with_what_to_write(tmp_path: Path) -> None:
    """`class_path: itwinai.torch.trainer.RayTorchTrainer` was told to install itwinai (HP803);
    its base class has no loop hpoc could run, installed or not."""
    d = one(tmp_path, seed_with("class_path: trainer.MyRayTorchTrainer",
                                "class_path: itwinai.torch.trainer.RayTorchTrainer"))
    assert (d.code, d.line, d.message) == (
        "HP204", 10, "the trainer `itwinai.torch.trainer.RayTorchTrainer` is itwinai's own class, which hpoc "
                     "does not run")
    assert "subclass `RayTorchTrainer` from `hpoc.compat.itwinai`" in d.help


def test_a_key_indented_under_a_value_says_how_to_indent_it(tmp_path: Path) -> None:
    """The tutorial's config as its rendered page shows it: `init_args` deeper than `- class_path: ...`."""
    text = seed_with("      - class_path: data.FashionMNISTSplitter\n        init_args:",
                     "      - class_path: data.FashionMNISTSplitter\n          init_args:")
    d = one(tmp_path, text)
    assert (d.code, d.line, d.col) == ("HP110", 7, 20)
    assert d.help == ("`init_args` is indented deeper than line 6, whose key already has a value: indent it "
                      "as the keys beside it (in a list item, as the first key after `- `)")
    d = one(tmp_path, seed_with("name: Virgo-HPO-Experiment", "name: Virgo: HPO"))
    assert d.help == 'a value holding `: ` must be quoted: `key: "a: b"`'


def test_loggers_beside_class_path_are_one_error_and_missing_ones_are_named(tmp_path: Path) -> None:
    """Not also "`loggers` must be a list" at `class_path`, which reads as a wrong value."""
    coll = "            class_path: itwinai.loggers.LoggersCollection\n            init_args:\n              loggers:"
    d = one(tmp_path, seed_with(coll, coll.replace("            init_args:\n              loggers:",
                                                   "            init_args:\n            loggers:")))
    assert (d.line, d.message, d.help) == (48, "unknown key `loggers` in a step", "`loggers` belongs in `init_args`")
    d = one(tmp_path, SEED.split("          logger:")[0] + "          logger:\n" + coll + " batch\n")
    assert d.message == '`loggers` of `LoggersCollection` must be a list, not the string "batch"'
    d = one(tmp_path, SEED.split("          logger:")[0] + "          logger:\n"
            "            class_path: itwinai.loggers.LoggersCollection\n")
    assert (d.line, d.message) == (46, "`LoggersCollection` has no `loggers`")


def test_a_key_lined_up_with_a_list_dash_says_it_belongs_in_that_item(tmp_path: Path) -> None:
    """PyYAML says "expected <block end>, but found '?'"; the page-copied tutorial has it."""
    item = "                - class_path: itwinai.loggers.MLFlowLogger\n                  init_args:"
    d = one(tmp_path, seed_with(item, item.replace("                  init_args:", "                init_args:")))
    assert (d.code, d.line, d.col) == ("HP110", 50, 17)
    assert d.help == ("`init_args` is lined up with the `- ` of line 49: indent it two more spaces to put it "
                      "in that item, beside its first key")


def test_an_unset_metric_is_warned_about_at_tune_config_not_at_its_first_setting(tmp_path: Path) -> None:
    """The distributed tutorial's config (its `search_alg` commented out) sets no metric."""
    search = SEED[SEED.index("              search_alg:"):SEED.index("            run_config:")]
    path = write(tmp_path, seed_with(search, ""))
    ws = [w for w in compile_path(path).warnings if w.code == "HP822"]
    assert [(w.line, w.col) for w in ws] == [(28, 13), (28, 13)]  # `tune_config:`, not `num_samples`
    assert ws[0].help == "add `metric: loss` and `mode: min` to `tune_config`"  # there is no `search_alg`


def test_pipe_key_picks_one_of_several_hpo_pipelines_as_itwinai_does(tmp_path: Path, capsys) -> None:
    """`itwinai exec-pipeline --config config.yaml --pipe-key hpo_training_pipeline`: the
    same choice on hpoc's command line, for every command that compiles the config."""
    other = SEED.replace("ray_training_pipeline:", "hpo_training_pipeline:").replace(
        "Virgo-HPO-Experiment", "other-study")
    path = write(tmp_path, SEED + other)
    assert main(["check", str(path), "--pipe-key", "hpo_training_pipeline"]) == 0
    assert "study `other-study` is valid" in capsys.readouterr().out
    assert main(["compile", str(path), "--pipe-key", "ray_training_pipeline", "-o", str(tmp_path / "b")]) == 0
    assert '"name": "Virgo-HPO-Experiment"' in (tmp_path / "b" / "plan.json").read_text()
    capsys.readouterr()
    assert main(["convert", str(path), "--pipe-key", "hpo_training_pipeline"]) == 0
    hpo = capsys.readouterr().out
    assert hpo.startswith("# Converted from config.yaml (its `hpo_training_pipeline`) by `hpoc convert`")
    assert 'study "other-study"' in hpo
    assert main(["check", str(path), "--pipe-key", "hpo_trainig_pipeline"]) == 2
    err = capsys.readouterr().err
    assert "`--pipe-key hpo_trainig_pipeline`: no `hpo_trainig_pipeline` in this file" in err
    assert "did you mean `hpo_training_pipeline`?" in err
    with pytest.raises(SpecError) as info:  # the choice does not outlive the command
        compile_path(path)
    assert "pick one with `--pipe-key ray_training_pipeline`" in info.value.errors[0].help
    (tmp_path / "s.hpo").write_text("study \"s\"\n")
    assert main(["check", str(tmp_path / "s.hpo"), "--pipe-key", "x"]) == 2
    assert "--pipe-key picks a pipeline of a YAML config" in capsys.readouterr().err


def test_a_job_of_one_of_several_pipelines_recompiles_that_pipeline_to_see_edits(tmp_path: Path) -> None:
    """The job compares the plan with the config as it is now; compiled without the plan's
    `--pipe-key`, a config of two HPO pipelines "no longer compiled" after any edit."""
    from hpoc.runtime import before
    from hpoc.yaml import PIPE_KEY

    other = SEED.replace("ray_training_pipeline:", "hpo_training_pipeline:").replace(
        "Virgo-HPO-Experiment", "other-study")
    path = write(tmp_path, SEED + other)
    token = PIPE_KEY.set("hpo_training_pipeline")
    try:
        plan = compile_path(path).plan
    finally:
        PIPE_KEY.reset(token)
    assert plan["source"]["pipe_key"] == "hpo_training_pipeline"
    path.write_text(path.read_text() + "# a comment\n")
    assert before.edited_spec(plan) is None  # the pipeline it runs is as compiled
    path.write_text(path.read_text().replace("other-study", "renamed"))
    warning = before.edited_spec(plan)
    assert "(they differ in `storage`, `study`)" in warning, warning
    assert f"hpoc compile {path} --pipe-key hpo_training_pipeline -o BUILD" in warning
    assert compile_path(write(tmp_path, SEED)).plan["source"]["pipe_key"] is None


def test_a_config_key_the_trainer_reads_but_the_space_lacks_is_a_warning(tmp_path: Path) -> None:
    """The tutorial's loop reads `self.training_config["epochs"]`: without `epochs` in
    `train_loop_config` every trial fails with a KeyError, after `hpoc check` said valid."""
    path = write(tmp_path, seed_with("              epochs: 20\n", ""))
    (w,) = [w for w in compile_path(path).warnings if w.code == "HP811"]
    assert (w.line, w.message, w.help) == (
        10, 'the trainer reads `config["epochs"]` (trainer.py:60), which `train_loop_config` does not set: '
            "trials that get there fail with a KeyError", "add `epochs` to `train_loop_config`")
    assert not [w for w in compile_path(write(tmp_path, SEED)).warnings if w.code == "HP811"]
    # `epoch: 20` for the `epochs` it reads: "did you mean `epoch`?" said which to change the wrong way
    path = write(tmp_path, seed_with("              epochs: 20\n", "              epoch: 20\n"))
    (w,) = [w for w in compile_path(path).warnings if w.code == "HP811"]
    assert w.help == "`train_loop_config` sets `epoch`: rename it `epochs`, as the trainer reads it"
    # a domain that is an error (not in the plan) is not also a key the space lacks
    assert [d.code for d in reported(tmp_path / "b", seed_with("min: 1e-5", "min: 1e-5x"))] == ["HP203", "HP802"]
    # a module that fills its config itself gives no answer
    (tmp_path / "trainer.py").write_text((EXAMPLE / "trainer.py").read_text().replace(
        "        self.training_config = config\n",
        "        self.training_config = {**DEFAULTS, **config}\n"))
    assert not [w for w in compile_path(path).warnings if w.code == "HP811"]


def test_bayes_with_a_grid_is_an_error_about_bayes_not_the_tpe_standing_in_for_it(tmp_path: Path) -> None:
    """Neither BayesOpt (Ray refuses it) nor TPE searches a grid: the error names what was written."""
    d = one(tmp_path, seed_with("type: choice\n                options: [32, 64, 128]",
                                "type: grid_search\n                options: [32, 64, 128]"))
    assert (d.code, d.line, d.message) == ("HP304", 20, "`bayes` (BayesOpt) cannot search `grid_search` values "
                                                         "(`batch_size`)")
    assert "optuna" not in d.message + (d.help or "")


def test_domain_messages_speak_the_configs_words(tmp_path: Path) -> None:
    """A domain's hints say `min`/`max`, `options` and `grid_search` where the config does,
    and Ray's names where it writes those."""
    text = seed_with("              epochs: 20", "              epochs: 20\n"
                     "              layers: {type: randint, min: 1, max: 2}\n"
                     "              width: {type: qrandint, lower: 1, upper: 5, q: 4}\n"
                     "              depth: {type: grid_search, options: []}\n"
                     "              mom: {type: quniform, min: 0.15, max: 0.9, q: 0.1}\n").replace(
        "name: bayes", "name: random")
    by_line = {d.line: d for d in reported(tmp_path, text)}
    one_value = by_line[28]
    assert one_value.message == "`{type: randint, min: 1, max: 2}` only ever gives 1", one_value.message
    assert "`{type: randint, min: 1, max: 3}` gives 1 and 2" in one_value.help
    assert by_line[29].message == "`{type: qrandint, lower: 1, upper: 5, q: 4}` only ever gives 4"
    assert by_line[30].message.startswith("`grid_search` needs at least one value"), by_line[30].message
    assert by_line[30].help == "write `{type: grid_search, options: [a, b]}`"
    assert by_line[31].help.startswith("write `{type: quniform, min: 0.2, max: 0.9, q: 0.1}`"), by_line[31].help


@pytest.mark.parametrize("old, new, message, help", [
    ("epochs: 20", "epochs: 20\n              depth: {type: grid_search, options: [1, 2]}",
     "`search_alg: {name: hyperopt}` cannot search `grid_search` values (`depth`)",
     "use `type: choice` to let hyperopt pick, or `search_alg: {name: random}` to enumerate the grid"),
    ("batch_size:\n                type: choice\n                options: [32, 64, 128]",
     "noise: {type: randn, mean: 0, stddev: 1}",
     "`search_alg: {name: hyperopt}` cannot sample normal distributions (`noise: {type: randn, ...}`)", None),
])
def test_searcher_hints_name_domains_as_the_config_does(tmp_path: Path, old, new, message, help) -> None:
    text = seed_with(old, new).replace("name: bayes", "name: hyperopt").replace("n_random_steps", "n_initial_points")
    if "randn" in new:
        text = text.replace("name: hyperopt", "name: bayesopt").replace("n_initial_points", "random_search_steps")
        message = message.replace("hyperopt", "bayesopt")
    # the seed's 2 trials are all within the searcher's random start-up (HP802); its trainer
    # reads none of the parameters added here (HP816)
    (d,) = [d for d in reported(tmp_path, text) if d.code not in ("HP802", "HP816")]
    assert d.message == message, d.message
    assert help is None or d.help == help, d.help
    assert "(...)" not in (d.help or ""), d.help


def test_a_training_pipeline_without_config_is_one_error_not_defaults_too(tmp_path: Path) -> None:
    """The tutorial's other tab (a plain TorchTrainer config) pasted: its trainer has no
    `config`; the warnings about the metric and the name it would default were noise."""
    text = SEED.split("          config:")[0] + "          strategy: ddp\n"
    (d,) = reported(tmp_path, text)
    assert d.code == "HP205" and d.message == "trainer `trainer.MyRayTorchTrainer` has no `config`", d.message


def test_a_training_configuration_picked_with_pipe_key_is_one_error(tmp_path: Path, capsys) -> None:
    """`--pipe-key training_pipeline` of a TorchTrainer pipeline (`config: {batch_size, optim_lr}`,
    itwinai's TrainingConfiguration): an unknown-key error per setting and the metric defaults'
    warnings, at `class_path`, did not say that it is not an HPO pipeline."""
    plain = ("training_pipeline:\n  class_path: itwinai.pipeline.Pipeline\n  init_args:\n    steps:\n"
             "      - class_path: data.FashionMNISTGetter\n      - class_path: trainer.MyRayTorchTrainer\n"
             "        init_args:\n          config:\n"
             "            class_path: itwinai.torch.config.TrainingConfiguration\n"
             "            init_args: {batch_size: 32, optim_lr: 0.001}\n")
    path = write(tmp_path, plain + SEED)
    assert main(["check", str(path), "--pipe-key", "training_pipeline"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "warning" not in err, err  # the diagnostic and the summary
    assert "config.yaml:8:11: error: the `config` of trainer `trainer.MyRayTorchTrainer` has no HPO settings" in err
    assert "pick the HPO pipeline with `--pipe-key ray_training_pipeline`" in err
    # a file with the training pipeline alone has no HPO pipeline to pick: told what to add
    path = write(tmp_path, plain)
    assert main(["convert", str(path)]) == 2
    err = capsys.readouterr().err
    assert "has no HPO settings" in err and "--pipe-key" not in err, err
    assert "help: give this `config` `scaling_config`" in err, err


def test_a_shell_style_variable_in_braces_is_told_it_is_a_reference_not_the_variable(tmp_path: Path) -> None:
    """`${SCRATCH}` is an OmegaConf reference to a key of the file (itwinai fails on it too);
    the user meant the environment variable, which OmegaConf's resolver reads."""
    (d,) = reported(tmp_path, seed_with("storage_path: ray_checkpoints", "storage_path: ${SCRATCH}/hpo"))
    assert (d.code, d.message) == ("HP113", "`${SCRATCH}` refers to nothing: no `SCRATCH` there")
    assert d.help == ("`${SCRATCH}` names a key of this file; for the environment variable write "
                      "`${oc.env:SCRATCH}` (read when hpoc compiles)"), d.help

def test_a_trainer_still_importing_itwinai_is_told_to_change_its_imports(tmp_path: Path) -> None:
    """The tutorial's trainer copied as it is: `hpoc check` said the study was valid, and
    every trial failed importing itwinai (or on a class that is not an hpoc trainer)."""
    write(tmp_path, "")
    trainer = tmp_path / "trainer.py"
    trainer.write_text((EXAMPLE / "trainer.py").read_text().replace(
        "from hpoc.compat.itwinai import Logger, RayDeepSpeedStrategy, RayTorchTrainer",
        "from itwinai.loggers import Logger\nfrom itwinai.torch.distributed import RayDeepSpeedStrategy\n"
        "from itwinai.torch.trainer import RayTorchTrainer"))
    path = tmp_path / "config.yaml"
    path.write_text(SEED)
    (w,) = [w for w in compile_path(path).warnings if w.code == "HP803"]
    assert w.message == ("trainer: `trainer` (trainer.py:13) imports from `itwinai`: hpoc runs its "
                         "trainers without it"), w.message
    assert w.help == ("import `Logger`, `RayDeepSpeedStrategy` and `RayTorchTrainer` from "
                      "`hpoc.compat.itwinai` instead (docs/migrating-from-itwinai.md)"), w.help
    trainer.write_text((EXAMPLE / "trainer.py").read_text())
    assert [w.code for w in compile_path(path).warnings] == ["HP820", "HP802"]


def test_a_step_reads_its_class_as_every_class_object_does(tmp_path: Path) -> None:
    """A step naming its class twice is told so (not that `_target_` belongs in `init_args`);
    `init_args` beside `_target_` is not passed to the step as an argument named `init_args`."""
    twice = one(tmp_path, seed_with("      - class_path: data.FashionMNISTGetter",
                                    "      - class_path: data.FashionMNISTGetter\n        _target_: data.Getter"))
    assert (twice.code, twice.line, twice.col) == ("HP202", 5, 9), twice.render()
    assert twice.message == ("step 1 of `ray_training_pipeline` names its class twice, "
                             "with `_target_` and `class_path`")
    assert twice.help == "keep one of them"
    hydra = ("training_pipeline:\n  _target_: itwinai.pipeline.Pipeline\n  steps:\n    - _target_: data.Getter\n"
             "      init_args: {size: 3}\n    - _target_: trainer.Trainer\n      config: {}\n")
    beside = one(tmp_path, hydra)
    assert (beside.code, beside.line, beside.col) == ("HP201", 5, 7), beside.render()
    assert beside.message == "`init_args` beside `_target_` in step 1 of `training_pipeline`"
    # the step's own words for an argument beside `class_path` stay
    stray = one(tmp_path, seed_with("      - class_path: data.FashionMNISTGetter",
                                    "      - class_path: data.FashionMNISTGetter\n        size: 3"))
    assert (stray.message, stray.help) == ("unknown key `size` in a step", "`size` belongs in `init_args`")


def test_a_time_attr_in_seconds_without_max_t_is_told_a_max_t_yaml_takes(tmp_path: Path) -> None:
    """`time_attr: time_total_s` without `max_t` (every trial stopped at 100 s) was told to
    write `max_t: 2h`, which YAML's `max_t` refuses (an integer): the seconds, as YAML takes them."""
    text = seed_with("name: asha", "name: asha\n                time_attr: time_total_s").replace(
        "                max_t: 20\n", "")
    write(tmp_path, text)
    (w,) = [w for w in compile_path(tmp_path / "config.yaml").warnings if w.code == "HP805"]
    assert w.message.startswith("every trial stops after 100 s of training")
    assert w.help == "set `max_t` to the longest a trial may train, in seconds, e.g. `max_t: 7200` (2 hours)"
    write(tmp_path, text.replace("time_attr: time_total_s", "time_attr: time_total_s\n                max_t: 7200"))
    assert "HP805" not in [w.code for w in compile_path(tmp_path / "config.yaml").warnings]


def test_an_hpo_config_missing_its_sections_is_still_told_where_each_key_goes(tmp_path: Path) -> None:
    """Not a training configuration: its keys belong in sections (`num_samples`) or are a space."""
    config = ("ray_training_pipeline:\n  class_path: itwinai.pipeline.Pipeline\n  init_args:\n    steps:\n"
              "      - class_path: data.FashionMNISTGetter\n      - class_path: trainer.MyRayTorchTrainer\n"
              "        init_args:\n          config:\n            num_samples: 4\n"
              "            batch_size: {type: choice, options: [32, 64]}\n")
    messages = [d.message for d in reported(tmp_path, config)]
    assert "unknown key `num_samples` in the trainer's `config`" in messages, messages
    assert not [m for m in messages if "training configuration" in m], messages


def test_a_searched_key_the_itwinai_loop_never_reads_is_a_warning(tmp_path: Path) -> None:
    """`batch-size` searched for `batch_size`: the loop reads `batch_size` (hpoc's loaders too),
    so every trial trained alike while the results ranked them by a value nothing read."""
    path = write(tmp_path, seed_with("              batch_size:\n", "              batch-size:\n"))
    ws = [w for w in compile_path(path).warnings if w.code == "HP816"]
    assert [(w.line, w.message) for w in ws] == [
        (20, "the trainer never reads the searched `batch-size`: its module (trainer.py) never names it, so "
             "every trial trains alike whatever its value")], [w.render() for w in ws]
    assert ws[0].help == "did you mean `batch_size`?"
    # a loop that hands its config on as a whole may read any key: nothing said
    trainer = tmp_path / "trainer.py"
    trainer.write_text(trainer.read_text().replace("        self.training_config = config\n",
                                                   "        self.training_config = config\n"
                                                   "        print(sorted(config.items()))\n"))
    assert "HP816" not in [w.code for w in compile_path(path).warnings]
    # nor one that reads keys it computes
    trainer.write_text(trainer.read_text().replace("        print(sorted(config.items()))\n",
                                                   "        print(config[\"batch\" + \"-size\"])\n"))
    assert "print(config[" in trainer.read_text()
    assert "HP816" not in [w.code for w in compile_path(path).warnings]
    # nor for the tutorial as it is (its __init__ passes `config` on, its loop logs it)
    path = write(tmp_path, SEED)
    trainer.write_text((EXAMPLE / "trainer.py").read_text())
    assert "HP816" not in [w.code for w in compile_path(path).warnings]


def test_a_loop_handing_on_its_config_under_another_name_is_not_told_a_key_is_unread(tmp_path: Path) -> None:
    """`train(self, hparams, data)` building its net from `hparams.items()`: the trial config
    is train's first argument whatever its name, so any key may be read (no HP816)."""
    path = write(tmp_path, seed_with("              batch_size:\n", "              net_width: {type: choice, options: [64, 128]}\n"
                                                                    "              batch_size:\n"))
    trainer = tmp_path / "trainer.py"
    trainer.write_text((EXAMPLE / "trainer.py").read_text().replace(
        "    def train(self, config, data):\n", "    def train(self, hparams, data):\n").replace(
        "        self.training_config = config\n",
        "        self.training_config = hparams\n        self.net = {k: v for k, v in hparams.items() if k.startswith('net_')}\n"))
    assert "hparams.items()" in trainer.read_text()
    assert "HP816" not in [w.code for w in compile_path(path).warnings]
    # a key it never names is still told while the config is read by key alone
    trainer.write_text(trainer.read_text().replace("        self.net = {k: v for k, v in hparams.items() if k.startswith('net_')}\n", ""))
    assert [w.code for w in compile_path(path).warnings].count("HP816") == 1
