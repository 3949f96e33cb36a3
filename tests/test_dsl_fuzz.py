"""Mangled study files never crash hpoc: every input ends in exit 0 or 2, no traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpoc.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    (ROOT / "examples/fashion_mnist/study.hpo").read_text(encoding="utf-8"),
    (ROOT / "examples/digits/study.hpo").read_text(encoding="utf-8"),
]
CASES = int(os.environ.get("HPOC_FUZZ_CASES", "150"))
ALPHABET = '{}[]()=,;:."#\n \t-_aez019\\\'@ü'


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["del", "dup", "swap", "ins", "line_del", "line_dup", "line_swap", "trunc"]))
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(0, len(text) - 1))
        lines = text.split("\n")
        a = draw(st.integers(0, len(lines) - 1))
        b = draw(st.integers(0, len(lines) - 1))
        if op == "del":
            text = text[:i] + text[i + 1 :]
        elif op == "dup":
            text = text[: i + 1] + text[i:]
        elif op == "swap":
            chars = list(text)
            chars[i], chars[j] = chars[j], chars[i]
            text = "".join(chars)
        elif op == "ins":
            text = text[:i] + draw(st.sampled_from(ALPHABET)) + text[i:]
        elif op == "line_del":
            del lines[a]
            text = "\n".join(lines)
        elif op == "line_dup":
            lines.insert(a, lines[a])
            text = "\n".join(lines)
        elif op == "line_swap":
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        else:
            text = text[:i]
    data = text.encode("utf-8")
    if draw(st.booleans()) and data:  # sometimes break the encoding too
        k = draw(st.integers(0, len(data) - 1))
        data = data[:k] + bytes([draw(st.sampled_from([0xFF, 0xC3, 0x80, 0x00]))]) + data[k:]
    return data


def _check(tmp_path: Path, data: bytes, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    spec = tmp_path / "study.hpo"
    spec.write_bytes(data)
    code = main(["check", str(spec)])
    out = capsys.readouterr()
    return code, out.out + out.err


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated())
def test_mutated_examples_never_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    code, output = _check(tmp_path, data, capsys)
    assert code in (0, 2), output
    assert "Traceback" not in output and "internal error" not in output, output


@settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(alphabet=ALPHABET, max_size=200).map(str.encode))
def test_arbitrary_bytes_never_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes) -> None:
    code, output = _check(tmp_path, data, capsys)
    assert code == 2, output  # no study name: never valid
    assert "Traceback" not in output and "internal error" not in output, output
    assert ": error:" in output


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 100_000,
        "x = " + "[" * 40 + "]" * 40,
        "space { " + "a { " * 30_000,
        "x = " + "f(" * 10_000,
        'study "s"\n' + "x " * 30_000,
        "# only a comment\n" * 1000,
        "\ufeffstudy \"bom\"",
        "study \"x\"\r\npipeline {\r\n  trainer = m:T\r\n}\r\n",
        "a = " + "9" * 5000,
        "a = 1e999999",
    ],
    ids=["deep-list", "ok-depth", "deep-groups", "deep-calls", "many-tokens", "comments", "bom", "crlf",
         "long-int", "huge-float"],
)
def test_pathological_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    code, output = _check(tmp_path, text.encode("utf-8"), capsys)
    assert code in (0, 2), output
    assert "Traceback" not in output and "internal error" not in output, output


# ------------------------------------------- semantic fuzz: real keys, random values


def _semantic_studies() -> st.SearchStrategy[object]:
    from test_fmt import conditions, values

    from hpoc.compiler import tables as T
    from hpoc.dsl import ast as A

    domain_calls = st.builds(
        lambda f, args: A.Call(f, tuple(args)),
        st.sampled_from(sorted(T.DOMAINS)),
        st.lists(st.integers(-3, 5).map(A.Number) | st.floats(-2, 2).map(A.Number) | values, max_size=4),
    )
    any_value = domain_calls | values

    def section(name: str, fields: dict) -> st.SearchStrategy[object]:
        keys = sorted(fields) + ["bogus"]
        setting = st.builds(lambda k, v: A.Setting(k, v), st.sampled_from(keys), any_value)
        nested = st.builds(
            lambda k, b: A.Block(k, None, tuple(b)),
            st.sampled_from(keys),
            st.lists(st.builds(lambda k, v: A.Setting(k, v), st.sampled_from(["shards", "parallel", "zero_stage", "config", "image", "lr", "x"]), any_value), max_size=3),
        )
        return st.lists(setting | nested, max_size=5).map(lambda b: A.Block(name, None, tuple(b)))

    space_item = st.builds(
        lambda k, v, c: A.Setting(k, v, c),
        st.sampled_from(["a", "b", "g.c", "opt", "a.b"]),
        domain_calls | values,
        st.none() | conditions,
    )
    labelled = st.builds(
        lambda kind, label, body: A.Block(kind, A.Ref(label), tuple(body)),
        st.sampled_from(["search", "scheduler", "logger"]),
        st.sampled_from(sorted({*T.SEARCHERS, *T.SCHEDULERS, *T.LOGGERS})),
        st.lists(st.builds(lambda k, v: A.Setting(k, v),
                           st.sampled_from(sorted({k for t in (*T.SEARCHERS.values(), *T.SCHEDULERS.values()) for k in t})),
                           any_value), max_size=3),
    )  # fmt: skip
    blocks = st.one_of(
        *[section(name, fields) for name, fields in T.SECTIONS.items()],
        st.lists(space_item, max_size=6).map(lambda b: A.Block("space", None, tuple(b))),
        labelled,
        st.builds(lambda gs: A.Objective(tuple(gs), braced=True),
                  st.lists(st.builds(A.Goal, st.sampled_from(["min", "max"]), st.sampled_from(["val_loss", "acc"])), max_size=2)),
    )  # fmt: skip
    head = [A.Block("study", A.String("s"), None)]
    return st.lists(blocks, max_size=8).map(lambda bs: A.Study(tuple(head + bs)))


@settings(max_examples=max(20, CASES // 2), deadline=None)
@given(study=st.deferred(_semantic_studies))
def test_checker_never_crashes_on_well_formed_studies(study: object) -> None:
    from hpoc.compiler import compile_study
    from hpoc.errors import SpecCheckError

    try:
        compile_study(study, file="s.hpo", sha256="0" * 64, workdir="/tmp")
    except SpecCheckError as exc:
        assert exc.diagnostics and all(d.code.startswith("HP") for d in exc.diagnostics)
