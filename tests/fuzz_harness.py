"""Shared pieces of the fuzz tests (tests/test_fuzz_*.py, tests/test_plan_fuzz.py).

* seed texts: the examples and the corpus of valid specs in tests/corpus/;
* `mutate(draw, text, seeds, tokens)`: a hypothesis-driven text mutator (characters,
  tokens, lines, splices from other seeds, truncation, broken encodings);
* `time_limit(seconds)`: fails a case that runs too long (a hang) instead of blocking CI;
* `run_cli(argv)`: `hpoc ...` in this process, with its exit code and output;
* `assert_located(...)`: every error of a failed check names FILE:LINE:COL.

Case counts: `CI_CASES` (2,000) for the tests `make test` runs; the `stress` variants use
HPOC_FUZZ_CASES (10,000 under `make stress`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import signal
from pathlib import Path
from typing import Any, Iterator

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
CI_CASES = int(os.environ.get("HPOC_FUZZ_CI_CASES", "2000"))
STRESS_CASES = int(os.environ.get("HPOC_FUZZ_CASES", "10000"))
CASE_LIMIT_S = float(os.environ.get("HPOC_FUZZ_CASE_LIMIT_S", "10"))
# Whole-file diagnostics that legitimately carry no line: too many problems (the located
# ones come first), missing/unreadable/oversized file.
UNLOCATED_OK = {"HP200", "HP001", "HP002"}


def seed_texts(*patterns: str, extra: tuple[Path, ...] = ()) -> list[str]:
    paths = [p for pat in patterns for p in sorted(CORPUS.glob(pat))] + list(extra)
    return [p.read_text(encoding="utf-8") for p in paths]


HPO_SEEDS = seed_texts("*.hpo", extra=(
    ROOT / "examples/digits/study.hpo",
    ROOT / "examples/fashion_mnist/study.hpo",
    ROOT / "tests/golden/plan/kitchen_sink.hpo",
))
YAML_SEEDS = seed_texts("*.yaml", extra=(ROOT / "examples/itwinai/config.yaml",))

# Things a mangled value may become: edge numbers, odd strings, shell metacharacters.
COMMON_TOKENS = [
    "0", "-1", "1", "2", "0.5", "-0.0", "1e309", "-1e309", "1e-400", "9" * 30, "nan", "inf",
    "0x10", "1_000", "1.", ".5", "1e", '""', '"x"', '"\\u0000"', '"\\ud800"', '"\\n"',
    '"$(touch /tmp/PWNED_fuzz)"', '"`id`"', '"a;b"', '"*"', "null", "true", "false",
    "[", "]", "{", "}", "(", ")", ",", ";", "=", ":", ".", "#", "\n", " ", "\t", "\\", "'",
]


def hpo_tokens() -> list[str]:
    from hpoc.compiler import tables as T

    words = set(T.SECTIONS) | set(T.SEARCHERS) | set(T.SCHEDULERS) | set(T.DOMAINS) | set(T.LOGGERS)
    for table in (*T.SECTIONS.values(), *T.SEARCHERS.values(), *T.SCHEDULERS.values()):
        words |= set(table)
    words |= {"if", "in", "==", "objective", "minimize", "maximize", "study", "array", "shards",
              "parallel", "deepspeed", "30s", "1h30m", "2h", "1.5d", "02:00:00", "1-00:00:00",
              "64G", "512M", "m:C", "a.b:C.D", "choice(1, 2)", "uniform(1, 0)", "loguniform(0, 1)",
              "grid()", "x if y == 1", "if a in [1] {"}
    return sorted(words) + COMMON_TOKENS


YAML_TOKENS = COMMON_TOKENS + [
    "---", "...", "&a", "*a", "<<: *a", "!!python/object:os.system", "!!binary", "? ", "- ", "|", ">",
    "{a: 1}", "[1, 2]", "~", "yes", "no", "on", "off", "0o17", "2001-12-14", ".inf", ".nan",
    "class_path:", "init_args:", "_target_:", "type: choice", "options: []", "min:", "max:",
    "tune_config:", "train_loop_config:", "scaling_config:", "run_config:", "search_alg:",
    "scheduler:", "name:", "metric:", "mode:", "num_samples:", "num_workers:", "use_gpu:",
    "storage_path:", "epochs:", "  ", "\t", ":", "%YAML 1.2", "%TAG ! tag:x,2000:",
]

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][\w.:]*|-?\d[\w.+-]*|\S')
OPS = ("del", "dup", "swap", "ins_char", "token_replace", "token_insert", "line_del", "line_dup",
       "line_swap", "indent", "splice", "trunc")


def mutate(draw: st.DrawFn, text: str, seeds: list[str], tokens: list[str],
           alphabet: str = '{}[]()=,;:."#\n \t-_aez019\\\'@ü$`*') -> str:
    """Apply 1-6 random edits to `text`; each edit is drawn, so hypothesis can shrink it."""
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(OPS))
        if not text:
            text = draw(st.sampled_from(tokens))
            continue
        lines = text.split("\n")
        if op in ("del", "dup", "swap", "ins_char", "trunc"):
            i = draw(st.integers(0, len(text) - 1))
            if op == "del":
                text = text[:i] + text[i + 1:]
            elif op == "dup":
                text = text[: i + 1] + text[i:]
            elif op == "swap":
                j = draw(st.integers(0, len(text) - 1))
                chars = list(text)
                chars[i], chars[j] = chars[j], chars[i]
                text = "".join(chars)
            elif op == "ins_char":
                text = text[:i] + draw(st.sampled_from(alphabet)) + text[i:]
            else:
                text = text[:i]
        elif op in ("token_replace", "token_insert"):
            spans = [m.span() for m in _TOKEN.finditer(text)]
            if not spans:
                continue
            a, b = spans[draw(st.integers(0, len(spans) - 1))]
            new = draw(st.sampled_from(tokens))
            text = text[:a] + new + text[b:] if op == "token_replace" else text[:a] + new + " " + text[a:]
        elif op in ("line_del", "line_dup", "line_swap", "indent"):
            a = draw(st.integers(0, len(lines) - 1))
            if op == "line_del":
                del lines[a]
            elif op == "line_dup":
                lines.insert(a, lines[a])
            elif op == "line_swap":
                b = draw(st.integers(0, len(lines) - 1))
                lines[a], lines[b] = lines[b], lines[a]
            else:  # indentation matters in YAML: re-indent one line
                lines[a] = draw(st.sampled_from(["", "  ", "    ", "\t"])) + lines[a].lstrip(" ")
            text = "\n".join(lines)
        else:  # splice: a run of lines from another seed, at a line boundary
            other = draw(st.sampled_from(seeds)).split("\n")
            start = draw(st.integers(0, len(other) - 1))
            piece = other[start: start + draw(st.integers(1, 8))]
            at = draw(st.integers(0, len(lines)))
            text = "\n".join(lines[:at] + piece + lines[at:])
    return text


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: list[str], tokens: list[str]) -> bytes:
    text = mutate(draw, draw(st.sampled_from(seeds)), seeds, tokens)
    data = text.encode("utf-8", "surrogatepass")
    if data and draw(st.integers(0, 9)) == 0:  # now and then an invalid byte as well
        k = draw(st.integers(0, len(data) - 1))
        data = data[:k] + bytes([draw(st.sampled_from([0xFF, 0xC3, 0x80, 0x00, 0xED]))]) + data[k:]
    return data


def note_event(text: str) -> None:
    """Count `text` in hypothesis' statistics (ignored outside a hypothesis test)."""
    from hypothesis import event
    from hypothesis.errors import InvalidArgument

    try:
        event(text)
    except InvalidArgument:
        pass


class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float = CASE_LIMIT_S) -> Iterator[None]:
    """Raise CaseTimeout in this (main) thread if the body runs longer than `seconds`."""

    def expired(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"case took longer than {seconds:g} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`hpoc ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:  # what hpoc.cli.main does, with the parser built once
            args = _parser().parse_args(argv)
            code = int(args._run(args) or 0)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    from hpoc.cli import build_parser

    return build_parser()


def assert_no_crash(code: int, output: str, case: object) -> None:
    assert code in (0, 2), f"exit {code} for {case!r}:\n{output}"
    assert "Traceback" not in output, f"traceback for {case!r}:\n{output}"
    assert "internal error" not in output, f"internal error for {case!r}:\n{output}"


def assert_located(path: str, code: int, output: str, case: object, whole_file: tuple[str, ...] = ()) -> None:
    """Exit 2 with at least one `PATH:LINE:COL: error:` line, and no unlocated errors
    except the whole-file kinds (`UNLOCATED_OK`, or a message in `whole_file` alone)."""
    assert code == 2, f"exit {code} for {case!r}:\n{output}"
    heads = [ln for ln in output.splitlines() if ln and not ln[0].isspace() and ": error: " in ln]
    if len(heads) == 1 and any(heads[0].startswith(f"{path}: error: {m} [") for m in whole_file):
        return
    located = re.compile(re.escape(path) + r":\d+:\d+: error: .+ \[HP\d{3}\]$")
    assert any(located.match(ln) for ln in heads), f"no located error for {case!r}:\n{output}"
    for ln in heads:
        if located.match(ln):
            continue
        code_ = re.search(r"\[(HP\d{3})\]$", ln)
        assert code_ and code_.group(1) in UNLOCATED_OK, f"unlocated error {ln!r} for {case!r}:\n{output}"


def plan_core(plan: dict[str, Any]) -> dict[str, Any]:
    """A plan without what depends on the exact text (its hash, source spans)."""
    out = {k: v for k, v in plan.items() if k not in ("spans", "content_hash")}
    out["source"] = {k: v for k, v in plan["source"].items() if k != "sha256"}
    return out
