"""JSON-Schema validation of plan files (schema.json beside this module)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("schema.json")).read_text(encoding="utf-8"))


def validate(plan: dict[str, Any], path: object = "plan") -> None:
    from hpoc.plan import PlanError

    if not Path(__file__).with_name("schema.json").exists():
        return
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(plan), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{path}: plan failed validation ({len(errors)} error(s))"]
        for err in errors[:20]:
            where = ".".join(str(p) for p in err.absolute_path) or "(root)"
            lines.append(f"  {where}: {err.message}")
        raise PlanError("\n".join(lines))
