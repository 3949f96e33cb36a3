"""A message in the words of the study's file. A YAML config spells some .hpo settings
otherwise (`num_workers` for `workers`); its plan lists them (`source.words`, written by
hpoc/yaml), so that the runtime, which reads only the plan, words its errors as the config
does, and the YAML front end words the checker's with this same function."""

from __future__ import annotations

import re
from typing import Callable

_SECTION = re.compile(r"`(search|scheduler) (\w+)(?: \{ ([^`{}]*) \})?`")
_SETTING = re.compile(r"`([\w.]+) = ([^`]*)`")


def respell(text: str, words: dict[str, str] | None, value: Callable[[str], str] = lambda v: v) -> str:
    """`text` with its .hpo snippets as a YAML config writes them, `words` mapping .hpo names
    to the config's (None: a .hpo study, `text` as it is): `scheduler asha` is `scheduler:
    {name: asha}`, `workers = 1` is `num_workers: 1` (`value` rewrites the 1), `storage.name`
    is `run_config.name`."""
    if words is None:
        return text

    def section(m: re.Match[str]) -> str:  # options too: `scheduler bohb { max_t = ... }`
        opts = "".join(f", {k.strip()}: {v.strip()}" for k, _, v in
                       (o.partition("=") for o in (m.group(3) or "").split(";") if o.strip()))
        return f"`{words.get(m.group(1), m.group(1))}: {{name: {m.group(2)}{opts}}}`"

    def setting(m: re.Match[str]) -> str:
        return f"`{words.get(m.group(1), m.group(1))}: {value(m.group(2))}`"

    text = _SETTING.sub(setting, _SECTION.sub(section, text))
    return re.sub(r"`(\w+(?:\.\w+)?)`", lambda m: f"`{words.get(m.group(1), m.group(1))}`", text)
