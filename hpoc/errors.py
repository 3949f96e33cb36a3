"""One exception hierarchy and one diagnostic format for everything a user can get wrong.

A `Diagnostic` renders rustc-style, but with the location first so editors can jump to it:

    study.hpo:12:5: error: unknown key `lerning_rate` in `space` [HP201]
       12 |     lerning_rate = loguniform(1e-5, 1e-1)
          |     ^^^^^^^^^^^^
      = help: did you mean `learning_rate`?

Diagnostics carry their source line themselves (filled in by the driver that read the
file), so an error can be rendered — and pickled between processes — without the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, NoReturn, Sequence

_MAX_SHOWN_LINE = 160  # longer source lines are cut around the caret
# What a terminal would act on rather than show: control characters but the tab (an
# escape sequence can clear the screen) and the bidi controls (they reorder the line).
_UNSHOWN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: str) -> str:
    """`text` with what a terminal would act on written as escapes (`\\x1b`)."""
    return _UNSHOWN.sub(lambda m: repr(m.group())[1:-1], text)


def _clipped(text: str) -> str:
    """`text` with each word over 300 characters (a 5000-character key in a message; paths
    stay whole) cut in its middle, its ends kept: the closing quote or backtick."""
    return re.sub(r"\S{300,}", lambda m: m[0][:60] + "…" + m[0][-20:], text)


@dataclass(frozen=True)
class Diagnostic:
    """One error or warning at a place in a spec (line/col are None for whole-file problems)."""

    message: str
    code: str
    file: str
    line: int | None = None
    col: int | None = None
    end_line: int | None = None
    end_col: int | None = None
    severity: str = "error"  # "error" or "warning"
    help: str | None = None
    notes: tuple[str, ...] = ()
    source_line: str | None = field(default=None, compare=False)

    @property
    def location(self) -> str:
        if self.line is None:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"

    def render(self) -> str:
        # One line per diagnostic head (editors parse it): control characters from user
        # values (a YAML "\n") are shown escaped.
        out = [f"{self.location}: {self.severity}: {shown(_clipped(self.message))} [{self.code}]"]
        if self.line is not None and self.source_line is not None:
            out.extend(_snippet(self.line, self.col or 1, self._width(), self.source_line))
        out.extend(f"  = note: {shown(_clipped(n))}" for n in self.notes)
        if self.help:
            out.append(f"  = help: {shown(_clipped(self.help))}")
        return "\n".join(out)

    def _width(self) -> int:
        if self.end_line == self.line and self.end_col and self.col and self.end_col > self.col:
            return self.end_col - self.col
        return 1

    def with_source(self, text: str | Sequence[str]) -> Diagnostic:
        """Copy with `source_line` taken from the spec's text (or its list of lines)."""
        if self.line is None or self.source_line is not None:
            return self
        lines = text.split("\n") if isinstance(text, str) else text
        if 1 <= self.line <= len(lines):
            return replace(self, source_line=lines[self.line - 1].rstrip("\r"))
        return self


def _snippet(line: int, col: int, width: int, text: str) -> list[str]:
    start = 0
    if len(text) > _MAX_SHOWN_LINE:  # keep the caret visible on huge lines
        start = max(0, col - 1 - _MAX_SHOWN_LINE // 2)
        end = start + _MAX_SHOWN_LINE
        text = ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
        col = col - start + (1 if start else 0)
    width = max(1, min(width, len(text) - col + 1))
    gutter = str(line)
    # The caret lines up under the source as a terminal shows it: tabs are kept, wide
    # characters (CJK, emoji) take two cells, combining marks none, escaped ones theirs.
    pad = "".join("\t" if c == "\t" else " " * _cells(c) for c in text[: col - 1])
    carets = sum(_cells(c) for c in text[col - 1 : col - 1 + width]) or 1
    return [
        f" {gutter} | {shown(text)}",
        f" {' ' * len(gutter)} | {pad}{'^' * carets}",
    ]


def cells(text: str) -> int:
    """Columns `text` takes in a terminal or an editor (wide characters two, accents none)."""
    return sum(_cells(c) for c in text)


def _cells(c: str) -> int:
    import unicodedata

    if c != "\t" and _UNSHOWN.match(c):
        return len(shown(c))
    if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1


def with_sources(diagnostics: Iterable[Diagnostic], text: str) -> list[Diagnostic]:
    lines = text.split("\n")
    return [d.with_source(lines) for d in diagnostics]


class HpocError(Exception):
    """Base of every error hpoc reports to a user (never a traceback)."""


class SpecError(HpocError):
    """A spec that cannot be compiled: one or more diagnostics (errors, maybe warnings)."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__(self.render())

    def __reduce__(self):  # several-argument exceptions do not pickle on their own
        return (type(self), (self.diagnostics,))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def render(self, failed: str = "could not compile the study") -> str:
        return render_all(self.diagnostics, failed)

    def __str__(self) -> str:
        return self.render()


class SpecSyntaxError(SpecError):
    """The text is not a well-formed .hpo file (or not readable text at all)."""


class SpecCheckError(SpecError):
    """The file parses but means something invalid (unknown key, bad bound, …)."""


# A file that could not be read at all (missing, a directory, not UTF-8, too large)
_UNREAD = ("HP001", "HP002", "HP003")


def render_all(diagnostics: Iterable[Diagnostic], failed: str = "could not compile the study") -> str:
    """The diagnostics, then, with errors among them, a closing line: `failed` (what the
    command could not do) with the counts."""
    diagnostics = list(diagnostics)
    parts = [d.render() for d in diagnostics]
    n_err = sum(d.severity == "error" for d in diagnostics)
    n_warn = len(diagnostics) - n_err
    if n_err:
        summary = f"{n_err} error{'s' if n_err != 1 else ''}"
        if n_warn:
            summary += f", {n_warn} warning{'s' if n_warn != 1 else ''}"
        if all(d.code in _UNREAD for d in diagnostics if d.severity == "error"):
            failed = "could not read the study"
        parts.append(f"error: {failed} ({summary})")
    return "\n\n".join(parts)


# Words from other tools (or plain English) for a name hpoc spells differently; used only
# when the name they point to is among the candidates.
SYNONYMS = {
    "normal": "randn", "gaussian": "randn", "categorical": "choice", "log_uniform": "loguniform",
    "modules": "setup", "module": "setup", "gpus": "gpus_per_node", "cpus": "cpus_per_node",
    "walltime": "time", "queue": "partition", "num_trials": "num_samples", "trials": "num_samples",
    "n_trials": "num_samples", "num_to_keep": "keep", "checkpoint_frequency": "every",
    "checkpoint_freq": "every", "frequency": "every", "max_concurrent_trials": "max_concurrent",
    "time_budget_s": "time_budget", "max_failures": "max_retries", "num_workers": "workers",
}


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """`help` text suggesting the closest candidate, or None."""
    close = closest(word, candidates)
    return f"did you mean `{close}`?" if close else None


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate `word` most likely meant, or None.

    A known synonym first, then a group's name that the word ends (`lr` -> `optimizer.lr`),
    then a candidate the word begins (`grace` -> `grace_period`), then the closest spelling."""
    import difflib

    candidates = sorted(set(candidates))
    close = [SYNONYMS[word]] if SYNONYMS.get(word) in candidates else []
    if not close and "." not in word:
        close = [c for c in candidates if c.endswith("." + word)][:1]
    if not close and len(word) >= 3:
        close = sorted((c for c in candidates if c.startswith(word + "_")), key=len)[:1]
    if not close:
        close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return close[0] if close else None


def one_of(candidates: Iterable[str], limit: int | None = None) -> str:
    """"`a`, `b` or `c`"; past `limit` items, the first ones and how many more (a `choice`
    may list thousands of values: its hint stays one readable line)."""
    items = [f"`{c}`" for c in candidates]
    if limit is not None and len(items) > limit:
        return ", ".join(items[:limit]) + f" or {len(items) - limit} more"
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]


def fail(diagnostic: Diagnostic) -> NoReturn:
    """Raise a single-diagnostic syntax error (all parse failures go through here)."""
    raise SpecSyntaxError([diagnostic])


def _cwd_gone() -> bool:
    import os

    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    return False


def run_reporting(fn: Callable[[], int], prog: str = "hpoc", failed: str = "could not compile the study") -> int:
    """Run a command body; turn errors into messages and exit codes (never a traceback).
    `failed`: what a spec error kept the command from doing, its closing line.

    0 ok, 2 spec/user-input error, 1 internal error (traceback only with HPOC_DEBUG=1).
    """
    import os
    import sys

    try:
        return fn()
    except SpecError as exc:
        print(exc.render(failed), file=sys.stderr)
        return 2
    except HpocError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, BrokenPipeError):
        # Before OSError, of which BrokenPipeError is one: a reader that went away (`| head`)
        # is no error of the user's; the CLI ends quietly.
        raise
    except OSError as exc:  # the environment, not hpoc: unwritable directory, full disk, ...
        if exc.filename is None and _cwd_gone():
            print(f"{prog}: error: the current directory no longer exists (removed, or replaced since this "
                  "shell entered it): `cd` to it again, or to another", file=sys.stderr)
            return 2
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"{prog}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"{prog}: error: input is nested too deeply", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug in hpoc, not in the spec
        if os.environ.get("HPOC_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(exc).__name__}: {exc}\n"
            f"  = note: this is a bug in hpoc; rerun with HPOC_DEBUG=1 for a traceback and report it",
            file=sys.stderr,
        )
        return 1
