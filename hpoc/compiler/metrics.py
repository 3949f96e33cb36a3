"""Metric names a trainer reports, read from its source without importing it.

Compiling must not import user code (torch, on a login node), but an objective metric the
trainer never reports is a silent misconfiguration: every trial ends without a result. A
trainer reports what it puts in a dict (`{"loss": ...}` for itwinai's
`checkpoint_and_report`, hpoc's `report({...})`), so the string keys of the dict displays
in its module are a good, cheap answer. A module that is not a file under the study's
directory (an installed package) gives no answer.
"""

from __future__ import annotations

import ast
import os


def trainer_metrics(target: str, workdir: str | None) -> set[str] | None:
    """String keys of the dicts in the module of `target` (`pkg.mod:Class`); None if the
    module is not a readable Python file under `workdir`."""
    if not workdir or not target:
        return None
    module = target.split(":", 1)[0]
    base = os.path.join(workdir, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read(), path)
        except (OSError, SyntaxError, ValueError, RecursionError):
            continue
        keys: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                keys.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        return keys
    return None
