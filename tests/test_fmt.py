"""`hpoc fmt`: canonical, idempotent, keeps comments, never changes the meaning."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo_util import EXAMPLES, ROOT
from hpoc.cli import main
from hpoc.compiler import compile_source
from hpoc.dsl import ast as A
from hpoc.dsl.format import format_study
from hpoc.dsl.parse import parse

KEYWORDS = {"if", "in", "true", "false", "null", "objective", "minimize", "maximize"}
SPECS = {**EXAMPLES, "kitchen_sink": ROOT / "tests/golden/plan/kitchen_sink.hpo"}

# ------------------------------------------------------------------ AST strategies

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
dotted = st.lists(names, min_size=1, max_size=3).map(".".join)
refs = st.builds(lambda a, b: a if b is None else f"{a}:{b}", dotted, st.none() | dotted)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
keys = dotted | text
comment = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20).map(lambda s: "#" + s)
comments = st.lists(comment, max_size=2).map(tuple)

units = st.lists(st.tuples(st.integers(1, 99), st.sampled_from("smhd")), min_size=1, max_size=2)
durations = units.map(lambda us: A.Duration(sum(n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u] for n, u in us),
                                            "".join(f"{n}{u}" for n, u in us)))  # fmt: skip
scalars = st.one_of(
    text.map(A.String),
    st.integers(-(10**12), 10**12).map(A.Number),
    st.floats(allow_nan=False, allow_infinity=False).map(A.Number),
    st.booleans().map(A.Bool),
    st.just(A.Null()),
    durations,
    st.sampled_from(["64G", "512M", "1T"]).map(A.Size),
    st.sampled_from(["02:00:00", "30:15", "1-12", "1-00:00:00"]).map(A.Clock),
    refs.map(A.Ref),
)


def _values(children: st.SearchStrategy[A.Value]) -> st.SearchStrategy[A.Value]:
    pairs = st.builds(A.Pair, keys, children)
    return st.one_of(
        st.lists(children, max_size=4).map(lambda xs: A.List(tuple(xs))),
        st.lists(pairs, max_size=3).map(lambda ps: A.Map(tuple(ps))),
        st.builds(
            lambda f, a, k: A.Call(f, tuple(a), tuple(A.Pair(n, v) for n, v in k)),
            refs, st.lists(children, max_size=3), st.lists(st.tuples(names, children), max_size=2),
        ),  # fmt: skip
    )


values = st.recursive(scalars, _values, max_leaves=12)
conditions = st.one_of(
    st.builds(lambda p, v: A.Condition(p, (v,), "=="), dotted, scalars),
    st.builds(lambda p, vs: A.Condition(p, tuple(vs), "in"), dotted, st.lists(scalars, max_size=3)),
)
settings_ = st.builds(
    lambda k, v, c, cm, tr: A.Setting(k, v, c, comments=cm, trailing=tr),
    keys, values, st.none() | conditions, comments, st.none() | comment,
)  # fmt: skip
goals = st.builds(A.Goal, st.sampled_from(["min", "max"]), keys)
objectives = st.lists(goals, max_size=3).flatmap(
    lambda gs: st.builds(lambda b, cm: A.Objective(tuple(gs), braced=b or len(gs) != 1, comments=cm),
                         st.booleans(), comments)  # fmt: skip
)


def _items(children: st.SearchStrategy[A.Item]) -> st.SearchStrategy[A.Item]:
    body = st.lists(children, max_size=4).map(tuple)
    return st.one_of(
        st.builds(
            lambda kind, label, b, cm, end: A.Block(kind, label, b, comments=cm, end_comments=end),
            names, st.none() | text.map(A.String) | names.map(A.Ref), body, comments, comments,
        ),
        st.builds(lambda kind, label: A.Block(kind, label, None), names, text.map(A.String) | names.map(A.Ref)),
        st.builds(lambda c, b, cm: A.IfBlock(c, b, comments=cm), conditions, body, comments),
    )  # fmt: skip


items = st.recursive(settings_ | objectives, _items, max_leaves=10)
studies = st.builds(lambda its, end: A.Study(tuple(its), end_comments=end), st.lists(items, max_size=5), comments)


def _comments_in(node: object) -> list[str]:
    out: list[str] = []
    if isinstance(node, A.Study):
        for item in node.items:
            out += _comments_in(item)
        return out + list(node.end_comments)
    out += list(getattr(node, "comments", ()))
    if getattr(node, "trailing", None):
        out.append(node.trailing)  # type: ignore[attr-defined]
    for child in getattr(node, "body", None) or ():
        out += _comments_in(child)
    return out + list(getattr(node, "end_comments", ()))


@settings(max_examples=int(os.environ.get("HPOC_FUZZ_CASES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(studies)
def test_format_round_trips_and_is_idempotent(study: A.Study) -> None:
    text = format_study(study)
    reparsed = parse(text, "g.hpo")
    assert reparsed == study, text
    assert format_study(reparsed) == text
    assert sorted(_comments_in(reparsed)) == sorted(_comments_in(study)), text


# --------------------------------------------------- real studies and the plan


def _meaning(plan: dict) -> dict:
    return {k: v for k, v in plan.items() if k not in ("spans", "source")}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_checked_in_studies_are_formatted(case: str) -> None:
    text = SPECS[case].read_text(encoding="utf-8")
    assert format_study(parse(text)) == text


def _relayout(text: str, rng: random.Random) -> str:
    """Same tokens, different spaces and tabs, blank lines where there were some (strings and
    comments intact)."""
    out, i = [], 0
    for m in re.finditer(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*|[ \t]+|\n[ \t\n]*', text):
        out.append(text[i : m.start()])
        tok = m.group(0)
        if tok.startswith(("#", '"')):
            out.append(tok)
        elif "\n" in tok:
            # a blank line stays a blank line (one or more, maybe with spaces: fmt keeps one)
            blank = tok.count("\n") > 1
            gap = rng.choice(["", "  ", "\t"]) + "\n" if blank else ""
            out.append("\n" + gap * rng.randint(1, 2) + rng.choice(["", " ", "\t", "      "]))
        else:
            out.append(rng.choice([" ", "  ", "\t", "   \t "]))
        i = m.end()
    out.append(text[i:])
    return "".join(out)


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(sorted(SPECS)), seed=st.integers(0, 2**32 - 1))
def test_layout_does_not_matter(case: str, seed: int) -> None:
    original = SPECS[case].read_text(encoding="utf-8")
    shuffled = _relayout(original, random.Random(seed))
    workdir = str(SPECS[case].parent)
    assert format_study(parse(shuffled)) == original
    assert _meaning(compile_source(shuffled, "study.hpo", workdir)) == _meaning(
        compile_source(original, "study.hpo", workdir)
    )


def test_compact_and_expanded_forms_format_the_same() -> None:
    compact = 'study "x"  # name\nsearch optuna { sampler = tpe, seed = 0 }\nspace { a = choice(1, 2); b.c = uniform(0, 1) if a == 1 }\n'
    assert format_study(parse(compact)) == (
        'study "x"  # name\n\n'
        "search optuna {\n  sampler = tpe\n  seed    = 0\n}\n\n"
        "space {\n  a   = choice(1, 2)\n  b.c = uniform(0, 1) if a == 1\n}\n"
    )


def test_long_values_are_spread_over_lines() -> None:
    study = parse('slurm { setup = ["' + "a" * 50 + '", "' + "b" * 50 + '"] }')
    assert format_study(study) == (
        "slurm {\n  setup = [\n    \"" + "a" * 50 + "\",\n    \"" + "b" * 50 + "\",\n  ]\n}\n"
    )


def test_python_built_study_formats_and_compiles(tmp_path: Path) -> None:
    study = A.Study(
        (
            A.Block("study", A.String("demo"), None),
            A.Block("pipeline", None, (A.Setting("trainer", A.Ref("trainer:MyTrainer")),)),
            A.Block("space", None, (A.Setting("lr", A.Call("loguniform", (A.Number(1e-5), A.Number(1e-3)))),)),
            A.Objective((A.Goal("min", "val_loss"),)),
            A.Block("slurm", None, (A.Setting("env", A.from_python({"A": "1", "B-C": 2})),)),
        )
    )
    text = format_study(study)
    assert "lr = loguniform(1e-05, 0.001)" in text and '"B-C" = 2' in text
    assert parse(text) == study


# ----------------------------------------------------------------------------- CLI


def test_cli_check_write_and_print(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.hpo"
    spec.write_text('study "x"\npipeline {trainer=t:T}   # the trainer\n', encoding="utf-8")
    assert main(["fmt", "--check", str(spec)]) == 2
    assert "not formatted" in capsys.readouterr().err
    assert main(["fmt", str(spec)]) == 0
    printed = capsys.readouterr().out
    assert printed == 'study "x"\n\npipeline {\n  trainer = t:T\n}  # the trainer\n'
    assert spec.read_text() != printed  # printing does not touch the file
    spec.chmod(0o640)
    assert main(["fmt", "--write", str(spec)]) == 0
    assert spec.read_text() == printed
    assert spec.stat().st_mode & 0o777 == 0o640  # the file keeps its permissions
    assert [p.name for p in tmp_path.iterdir()] == ["s.hpo"]  # and nothing is left beside it
    assert main(["fmt", "--check", str(spec)]) == 0
    spec.write_text("study {", encoding="utf-8")
    assert main(["fmt", "--write", str(spec)]) == 2
    assert spec.read_text() == "study {"  # a file with errors is left alone


def test_cli_write_through_a_symlink_formats_the_file_it_points_to(tmp_path: Path) -> None:
    # A study shared by a link (a project directory, a dotfiles repo) stays shared.
    target = tmp_path / "shared" / "s.hpo"
    target.parent.mkdir()
    target.write_text('study "x"\npipeline {trainer=t:T}\n', encoding="utf-8")
    link = tmp_path / "s.hpo"
    link.symlink_to(target)
    assert main(["fmt", "--write", str(link)]) == 0
    assert link.is_symlink()
    assert target.read_text() == 'study "x"\n\npipeline {\n  trainer = t:T\n}\n'


def test_cli_the_commands_fmt_suggests_paste_into_a_shell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "my study.hpo"
    spec.write_text('study "x"\npipeline {trainer=t:T}\n', encoding="utf-8")
    assert main(["fmt", "--check", str(spec)]) == 2
    assert f"(run `hpoc fmt --write '{spec}'`)" in capsys.readouterr().err
    config = tmp_path / "my config.yaml"
    config.write_text("a: 1\n", encoding="utf-8")
    assert main(["fmt", str(config)]) == 2
    assert f"`hpoc convert '{config}'` writes it as one" in capsys.readouterr().err


def test_cli_dash_formats_standard_input_for_editors(monkeypatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An editor formats its buffer through `hpoc fmt -`: study in, formatted study out."""
    import io
    import sys

    def stdin(text: str) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))

    stdin('study "x"\r\npipeline {trainer=t:T}   # the trainer\n')
    assert main(["fmt", "-"]) == 0
    assert capsys.readouterr().out == 'study "x"\n\npipeline {\n  trainer = t:T\n}  # the trainer\n'
    stdin('study "x"\npipeline {trainer=t:T}\n')
    assert main(["fmt", "--check", "-"]) == 2
    assert "<stdin>: not formatted (`hpoc fmt -` prints it formatted)" in capsys.readouterr().err
    stdin("study {")
    assert main(["fmt", "-"]) == 2
    assert capsys.readouterr().err.startswith("<stdin>:1:")  # errors name the buffer, at their line
    stdin('study "x"\n')
    assert main(["fmt", "--write", "-"]) == 2
    assert "standard input cannot be rewritten in place" in capsys.readouterr().err


def formatted(src: str) -> str:
    """`hpoc fmt` of `src`, checked to be a fixed point: formatting the output changes nothing."""
    out = format_study(parse(src))
    assert format_study(parse(out)) == out
    return out


def test_blank_lines_inside_blocks_are_kept_as_groups() -> None:
    text = (
        'study "x"\n'
        "trials {\n\n  num_samples = 4\n  max_concurrent = 2\n \t\n\n"
        "  # reported\n  metric_columns = [\"a\"]\n  if a == 1 {\n    b = 1\n\n    cc = 2\n  }\n\n}\n"
    )
    expected = (
        'study "x"\n\n'
        "trials {\n  num_samples    = 4\n  max_concurrent = 2\n\n"
        "  # reported\n  metric_columns = [\"a\"]\n  if a == 1 {\n    b = 1\n\n    cc = 2\n  }\n}\n"
    )
    assert formatted(text) == expected  # groups kept, each aligned on its own
    assert parse(text) == parse(expected)  # layout only: the same study


def test_settings_align_as_a_terminal_shows_them() -> None:
    """Wide characters take two columns in an editor, a combining accent none."""
    src = 'study "x"\nspace {\n  "数字" = 1\n  abcdef = 2\n  "cafe\u0301" = 3\n}\n'
    assert formatted(src).endswith('space {\n  "数字" = 1\n  abcdef = 2\n  "cafe\u0301" = 3\n}\n')


def test_comments_inside_a_value_stay_where_they_are() -> None:
    src = ('study "x"\nslurm {\n  time = 10\n  extra = [ # lead\n    "--exclusive",   # one\n'
           '    "--mail-type=END" # two\n  ] # after\n}\nspace {\n    bs = choice(32, # small\n'
           '                64)\n}\n')
    out = formatted(src)
    assert '  extra = [ # lead\n    "--exclusive",   # one\n    "--mail-type=END" # two\n  ]  # after\n' in out
    assert "  bs = choice(32, # small\n              64)\n" in out  # re-indented with its setting
    assert parse(out) == parse(src)


def test_comments_on_objective_goals_stay_on_their_goal() -> None:
    src = 'study "x"\nobjective { # o\n  # lead\n  minimize val_loss # m\n  maximize val_accuracy\n  # end\n}\n'
    out = formatted(src)
    assert out.endswith("objective {  # o\n  # lead\n  minimize val_loss  # m\n  maximize val_accuracy\n  # end\n}\n")


def test_a_crlf_file_formats_to_lf_lines_only() -> None:
    out = format_study(parse('study "x"\r\nspace {\r\n\tlr = 1 # c\r\n}\r\n'))
    assert "\r" not in out and "lr = 1  # c\n" in out


def test_a_comment_after_a_closing_brace_stays_after_it() -> None:
    src = ('study "x"\ntrials { num_samples = 10 } # note\nspace {\n  opt = choice("a", "b")\n'
           '  if opt == "a" {\n    m = uniform(0, 1)\n  } # end if\n} # end space\n')
    out = formatted(src)
    assert "trials {\n  num_samples = 10\n}  # note\n" in out
    assert "  }  # end if\n}  # end space\n" in out


def test_a_comment_stays_with_the_last_item_on_its_line() -> None:
    # `group { a = 1 # c`: the comment is about `a`, not the group; `x = 1, y = 2 # c` about `y`
    src = ('study "x"\nspace {\n  group { a = 1 # about a\n    b = 2\n  }\n  x = 1, y = 2 # about y\n}\n'
           'objective { minimize val_loss # m\n  maximize val_accuracy\n}\n')
    out = formatted(src)
    assert "  group {\n    a = 1  # about a\n    b = 2\n  }\n" in out
    assert "  x = 1\n  y = 2  # about y\n" in out
    assert out.endswith("objective {\n  minimize val_loss  # m\n  maximize val_accuracy\n}\n")


def test_fmt_of_a_yaml_config_points_to_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("ray_training_pipeline:\n  class_path: itwinai.pipeline.Pipeline\n", encoding="utf-8")
    assert main(["fmt", "--write", str(config)]) == 2
    err = capsys.readouterr().err
    assert "is a YAML config" in err and f"hpoc convert {config}" in err and "HP101" not in err
    assert config.read_text(encoding="utf-8").startswith("ray_training_pipeline:")


def test_a_blank_line_between_comments_or_before_the_item_stays() -> None:
    """A file header set apart from the study, a commented-out section above the next one's
    comment: `hpoc fmt` glued them to the item below, one comment block."""
    src = ('# Study of X\n# author: me\n\nstudy "x"\n\n# search:\n#search optuna { seed = 0 }\n\n'
           '# scheduler\nscheduler fifo\n\nspace {\n  # lr and friends\n\n  # the lr\n  lr = 1\n}\n')
    out = formatted(src)
    assert out.startswith('# Study of X\n# author: me\n\nstudy "x"\n\n')
    assert '# search:\n#search optuna { seed = 0 }\n\n# scheduler\nscheduler fifo\n' in out
    assert "space {\n  # lr and friends\n\n  # the lr\n  lr = 1\n}\n" in out
    assert parse(out) == parse(src)


def test_diff_alone_shows_the_diff_not_the_whole_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hpoc fmt --diff s.hpo` printed the whole study, formatted: --diff counted only with --check."""
    spec = tmp_path / "s.hpo"
    spec.write_text('study   "x"\npipeline {trainer=t:T}\n')
    assert main(["fmt", "--diff", str(spec)]) == 2
    out = capsys.readouterr().out
    assert out.startswith(f"--- {spec}\n") and '-study   "x"\n' in out and '+study "x"\n' in out
    assert main(["fmt", "--diff", "--write", str(spec)]) == 2
    assert "give one of them" in capsys.readouterr().err
    assert spec.read_text() == 'study   "x"\npipeline {trainer=t:T}\n'  # nothing written
