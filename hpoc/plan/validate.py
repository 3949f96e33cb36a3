"""JSON-Schema validation of plan files (schema.json beside this module).

The last plans that passed the schema are noted in the user's cache (`hpoc.cache`, by the
digest of plan and schema): `hpoc status` and `hpoc results` read the same plan
again and again, and jsonschema takes longer to import than the rest of the command.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

MAX_SHOWN = 20        # problems listed; the count says how many there are
MAX_MESSAGE = 160     # characters of one problem (jsonschema quotes whole values)
VALID_PLANS = "valid-plans"  # the cache's list of plans that passed (digests of plan and schema)


@functools.lru_cache(maxsize=1)
def _schema_bytes() -> bytes | None:
    try:
        return Path(__file__).with_name("schema.json").read_bytes()
    except FileNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(_schema_bytes() or b"null")


@functools.lru_cache(maxsize=1)
def absent_means() -> dict[tuple[str, ...], Any]:
    """{path: value} for the plan's keys added over time: what a plan from before a key
    means by its absence (the schema's `default` on it), so that a run an older hpoc
    recorded is the same run as this hpoc's plan of the same spec (runtime/marker.py)."""
    return {path: node["default"] for path, node in _objects() if path and "default" in node}


@functools.lru_cache(maxsize=1)
def closed_objects() -> frozenset[tuple[str, ...]]:
    """The paths of the plan's objects whose keys are hpoc's alone (no user-named keys such
    as `space.constants`): a key there that one plan lacks comes from another hpoc version."""
    return frozenset(path for path, node in _objects() if node.get("additionalProperties") is False)


def _objects() -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, schema node) for the plan's root and every key the schema names."""
    found: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        found.append((path, node))
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, path + (key,))
        for keyword in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(keyword) or []:
                walk(sub, path)

    walk(schema(), ())
    return found


def validate(plan: dict[str, Any], path: object = "plan") -> None:
    from hpoc.cache import known, note
    from hpoc.plan import PlanError

    text = _schema_bytes()
    if text is None:
        return
    try:
        digest = hashlib.sha256(text + json.dumps(plan, sort_keys=True).encode()).hexdigest()[:32]
    except (TypeError, ValueError):  # not JSON (a plan built in memory): the schema says why
        digest = None
    problems: dict[tuple[str, str], None] = {}
    if digest is None or not known(VALID_PLANS, digest):
        problems = _schema_problems(plan)
        if not problems and digest is not None:
            note(VALID_PLANS, digest)
    if not problems:  # the schema holds: now what it cannot say (docs/plan.md)
        for where, message in _contract(plan):
            problems[(where, message)] = None
    if problems:
        found = sorted(problems)
        lines = [f"{path}: plan failed validation ({len(found)} error(s))"]
        lines += [f"  {where}: {message}" for where, message in found[:MAX_SHOWN]]
        if len(found) > MAX_SHOWN:
            lines.append(f"  ... and {len(found) - MAX_SHOWN} more")
        raise PlanError("\n".join(lines))


def _schema_problems(plan: dict[str, Any]) -> dict[tuple[str, str], None]:
    import jsonschema

    problems: dict[tuple[str, str], None] = {}
    for err in jsonschema.Draft202012Validator(schema()).iter_errors(plan):
        for leaf in _leaves(err):
            where = ".".join(str(p) for p in leaf.absolute_path) or "(root)"
            problems[(where, _short(leaf.message))] = None
    return problems


def _contract(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules across fields that the compiler guarantees and the runtime relies on."""
    out = []
    if not plan["objective"]["metrics"]:
        if plan["search"]["algorithm"] not in ("random", "grid"):
            out.append(("search.algorithm", f"`{plan['search']['algorithm']}` needs an objective, "
                                            "and objective.metrics is empty"))
        if plan["scheduler"]["name"] != "fifo":
            out.append(("scheduler.name", f"`{plan['scheduler']['name']}` needs an objective, "
                                          "and objective.metrics is empty"))
    seen: dict[str, dict[str, Any]] = {}
    for i, param in enumerate(plan["space"]["params"]):
        if param["name"] in seen:
            out.append((f"space.params.{i}.name", f"`{param['name']}` appears twice"))
        cond = param["condition"]
        parent = seen.get(cond["param"]) if cond else None
        if cond and (parent is None or parent["domain"] not in ("choice", "grid")):
            out.append((f"space.params.{i}.condition.param",
                        f"`{cond['param']}` is not an earlier choice/grid parameter"))
        seen[param["name"]] = param
    return out


def _leaves(err: Any) -> list[Any]:
    """The errors that say what is wrong. A nullable section (`anyOf: [object, null]`) fails
    as "<the whole section> is not valid under any of the given schemas"; its sub-errors
    name the field, so those are reported instead (without the "is not null" branch)."""
    if not err.context:
        return [err]
    subs = [e for e in err.context if not (e.validator == "type" and e.validator_value == "null")]
    out = [leaf for e in subs for leaf in _leaves(e)]
    return out or [err]


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
