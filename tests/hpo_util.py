"""Helpers for the language tests: compile text and get its diagnostics."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hpoc.compiler import compile_source, compile_text
from hpoc.errors import Diagnostic, SpecError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "fashion_mnist": ROOT / "examples/fashion_mnist/study.hpo",
    "digits": ROOT / "examples/digits/study.hpo",
}

# The smallest valid study; tests append sections to it.
BASE = 'study "t"\npipeline { trainer = trainer:T }\n'

def own_trainer(name: str = "T", body: str = "") -> str:
    """A trainer module the check finds nothing to say about: an `hpoc.Trainer` (a class of
    no base is refused) that sets its epochs and loads its own data; `body` adds methods."""
    return (f"from hpoc import Trainer\n\nclass {name}(Trainer):\n    epochs = 1\n\n"
            "    def create_model(self, config):\n        return config\n\n"
            "    def create_dataloaders(self, *splits, **settings):\n        self.train_dataloader = load()\n"
            + body)


# The spec's directory of a test that names none: empty, so that no stray `t.py` or
# `trainer.py` in a shared /tmp changes what a test sees.
NOWHERE = tempfile.mkdtemp(prefix="hpoc-spec-")
atexit.register(shutil.rmtree, NOWHERE, ignore_errors=True)


@contextmanager
def installed(folder: Path = ROOT / "tests/installed") -> Iterator[None]:
    """The modules in `folder` importable while compiling, as if installed: a test not
    about modules names `trainer:T` without a missing-module warning (HP803)."""
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def diagnostics(text: str, workdir: str = NOWHERE) -> list[Diagnostic]:
    """All diagnostics of `text` (errors and warnings); [] when it compiles clean."""
    try:
        with installed():
            return compile_text(text, "t.hpo", workdir).warnings
    except SpecError as exc:
        return exc.diagnostics


def errors(text: str) -> list[Diagnostic]:
    return [d for d in diagnostics(text) if d.severity == "error"]


def warnings(text: str) -> list[Diagnostic]:
    return [d for d in diagnostics(text) if d.severity == "warning"]


def one_error(text: str) -> Diagnostic:
    errs = errors(text)
    assert len(errs) == 1, "\n\n".join(d.render() for d in errs) or "no errors"
    return errs[0]


def plan_of(text: str, workdir: str = NOWHERE) -> dict:
    with installed():
        return compile_source(text, "t.hpo", workdir)


def where(d: Diagnostic) -> tuple[int | None, int | None]:
    return d.line, d.col
