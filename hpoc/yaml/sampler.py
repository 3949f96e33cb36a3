"""Optuna's `sampler` written as its class, as hydra or jsonargparse configs do
(`sampler: {_target_: optuna.samplers.TPESampler, seed: 7}`): the samplers hpoc builds
(`tpe`, `random`, `cmaes`, `gp`, `nsga2`) with the arguments it passes them; others are errors."""

from __future__ import annotations

from hpoc.dsl import ast as A
from hpoc.errors import one_of
from hpoc.yaml.build import DUPLICATE, MISSING, VALUE, Builder
from hpoc.yaml.classes import class_args, class_key
from hpoc.yaml.nodes import YMap, YNode, YScalar

# optuna's sampler classes hpoc builds, with the arguments it passes them (besides `seed`).
_SAMPLERS = {"TPESampler": ("tpe", ("n_startup_trials",)), "RandomSampler": ("random", ()),
             "CmaEsSampler": ("cmaes", ("n_startup_trials",)), "GPSampler": ("gp", ("n_startup_trials",)),
             "NSGAIISampler": ("nsga2", ("population_size",))}


def is_sampler_object(node: YNode) -> bool:
    """`sampler:` as optuna's class (`optuna.samplers.TPESampler`, or a mapping with
    `_target_`/`class_path`), not one of .hpo's names (`tpe`)."""
    if isinstance(node, YMap):
        return True
    return isinstance(node, YScalar) and isinstance(node.value, str) and "Sampler" in node.value


def read_sampler(b: Builder, node: YNode, seed_names: tuple[str, ...]) -> list[tuple[str, A.Span, A.Value]]:
    """`sampler: {_target_: optuna.samplers.TPESampler, seed: 7}` as `sampler = tpe, seed = 7`."""
    target, args = node, []
    if isinstance(node, YMap):
        key = class_key(node)
        if key is None:
            b.error(MISSING, "a `sampler` mapping names its optuna class with `_target_` or `class_path`",
                    node.span, help="write `_target_: optuna.samplers.TPESampler`, or `sampler: tpe`")
            return []
        found = class_args(b, node, "`sampler`")
        if found is None:
            return []
        target, args = node.get(key), found  # type: ignore[assignment]
    text = b.word(target, "`_target_` of `sampler`")
    if text is None:
        return []
    cls = text.strip().rsplit(".", 1)[-1]
    if cls not in _SAMPLERS or not (text.strip() == cls or text.strip().startswith("optuna.")):
        b.error(VALUE, f"optuna sampler `{text.strip()}` is not supported", target.span,
                help=f"hpoc's optuna samplers: {one_of(list(_SAMPLERS))}")
        return []
    kind, passed = _SAMPLERS[cls]
    out = [("sampler", target.span, A.Ref(kind, span=target.span))]
    seen: set[str] = set()
    for key, kspan, value in args:
        hpo = "seed" if key in seed_names else key
        if hpo in seen:
            b.error(DUPLICATE, f"`{hpo}` is given twice to `{cls}`", kspan, help="keep one of them")
        elif hpo != "seed" and hpo not in passed:
            b.error(VALUE, f"`{cls}` argument `{key}` cannot be set in a config", kspan,
                    help=f"hpoc sets only `{cls}`'s {' and '.join(f'`{a}`' for a in ('seed', *passed))}; "
                         f"remove `{key}`")
        else:
            out.append((hpo, kspan, b.value(value)))
        seen.add(hpo)
    return out
