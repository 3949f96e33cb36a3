"""What a results PATH names: a plan (build directory, plan.json, or a spec compiled here)
or one study's experiment directory, also when PATH is the storage path above several."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hpoc.files import moved_aside_from
from hpoc.results.model import ResultsError
from hpoc.runtime.runlock import LOCK as RUN_MARKER  # the driver's lock, in each experiment dir

SPEC_SUFFIXES = (".hpo", ".yaml", ".yml")
_SHARD_DIR = re.compile(r"shard-(\d+)$")


def find_plan(target: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """(plan, where it came from), or (None, None) for a directory without plan.json."""
    if target.is_file():
        candidate = target
    elif (target / "plan.json").is_file():
        candidate = target / "plan.json"
    elif (spec := lone_spec(target)) is not None:
        candidate = spec
    elif (build := lone_build(target)) is not None:
        candidate = build / "plan.json"
    else:
        return None, None
    if candidate.suffix.lower() in SPEC_SUFFIXES:
        return spec_plan(candidate), candidate
    from hpoc.plan import PlanError, load as load_plan

    try:
        return load_plan(candidate), candidate
    except PlanError as exc:
        other = OtherPlanVersion.of(candidate)
        raise (other or ResultsError(str(exc))) from None


def holds_study(target: Path) -> bool:
    """Whether `target` is (or holds) something hpoc can show: a build, a study file, an
    experiment directory or a storage path above some; or one trial's directory (which
    `status` and `results` point to its study)."""
    return ((target / "plan.json").is_file() or lone_spec(target) is not None or _builds_in(target)
            or _is_study(target)
            or _has_trials(target) or bool(_studies_below(target))
            or (target / "result.json").is_file() or (target / "params.json").is_file())


def lone_spec(target: Path) -> Path | None:
    """The one study file of a study's own directory (`hpoc status .` beside study.hpo),
    before it ran or with its results below; None where the directory is a build or an
    experiment, or the studies below it are not that spec's (an edited name)."""
    if not target.is_dir() or (target / "plan.json").is_file() or _is_study(target) or _has_trials(target):
        return None
    try:
        specs = [c for c in target.iterdir() if c.suffix.lower() in SPEC_SUFFIXES and c.is_file()]
    except OSError:
        return None
    if len(specs) != 1:
        return None
    spec = target / specs[0].name
    below = _studies_below(target)
    if not below:
        return spec
    from hpoc.errors import HpocError
    from hpoc.runtime.shards import study_root

    try:
        root = study_root(spec_plan(spec)).resolve()
    except (HpocError, ResultsError, KeyError):
        return None  # the directory's studies are read as they are
    return spec if root in {b.resolve() for b in below} else None


def lone_build(target: Path) -> Path | None:
    """The one build directory in `target` (`build/`, where `hpoc compile SPEC` writes
    `build/<study>/`), None where it holds none; an error where it holds several (the
    studies of one project, compiled one after the other). None for a study's own directory
    too (its spec files, its results below): what it holds is read as before."""
    if not target.is_dir() or (target / "plan.json").is_file() or _is_study(target) or _has_trials(target):
        return None
    try:
        if any(c.suffix.lower() in SPEC_SUFFIXES for c in target.iterdir()) or _studies_below(target):
            return None
    except OSError:
        return None
    builds = sorted(c for c in _children(target) if (c / "plan.json").is_file())
    if len(builds) > 1:
        raise ResultsError(f"{target} holds {len(builds)} build directories: "
                           f"{', '.join(str(target / b.name) for b in builds)}; pass one of them")
    return target / builds[0].name if builds else None


class OtherPlanVersion(ResultsError):
    """A plan of another plan_version (an older hpoc compiled it): this hpoc cannot use it,
    but the trials are where it says, and they read without a plan."""

    def __init__(self, note: str, storage: Path):
        super().__init__(note)
        self.note, self.storage = note, storage

    @classmethod
    def of(cls, plan_file: Path) -> OtherPlanVersion | None:
        """The plan's case, when it is of another version and its study directory exists."""
        import json

        from hpoc.plan import PLAN_VERSION

        try:
            raw = json.loads(plan_file.read_text(encoding="utf-8"))
            version = raw.get("plan_version")
            storage = Path(raw["storage"]["path"]) / raw["storage"]["name"]
        except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError):
            return None
        if version == PLAN_VERSION or not storage.is_dir():
            return None
        return cls(f"{plan_file}: plan_version {version!r} is not supported by this hpoc "
                   f"(expects {PLAN_VERSION}): its trials are read without it, from {storage}",
                   storage)


def spec_plan(path: Path) -> dict[str, Any]:
    """The plan of a spec, compiled in memory (as `hpoc run SPEC` does): where it stores."""
    from hpoc.compiler import compile_path
    from hpoc.errors import HpocError
    from hpoc.plan import content_hash

    try:
        plan = compile_path(path).plan
    except HpocError as exc:
        raise ResultsError(f"{path}: the spec does not compile:\n{exc}") from None
    plan["content_hash"] = content_hash(plan)
    return plan


def study_dir(target: Path, warnings: list[str]) -> Path:
    """`target`, or the one study below it; a storage path holding several is an error
    (merging them would mix unrelated trials and epoch counts)."""
    if _is_study(target) or _has_trials(target):
        return target
    found = sorted(_studies_below(target))
    studies = [c for c in found if not _moved_aside(c, found)]
    names = [str(c.relative_to(target)) for c in studies]
    if len(studies) > 1:
        listed = [n + _unsummarised(c) for n, c in zip(names, studies)]
        raise ResultsError(f"{target} holds {len(studies)} studies: {', '.join(listed)}; "
                           f"pass one of them (e.g. {studies[0]})")
    if studies:
        aside = len(found) - len(studies)
        warnings.append(f"{target} holds one study, {names[0]}: showing it"
                        + (f" (not its {aside} earlier run(s) that `--fresh` moved aside)" if aside else ""))
        return studies[0]
    return target


def _unsummarised(study: Path) -> str:
    """What a study without hpoc's files has, so that the list says why it looks different."""
    if _is_study(study):
        return ""
    if any(study.glob("experiment_state-*.json")):
        return " (Ray state only: no summary.json)"
    return " (trial folders only: no summary.json or Ray state)"


def _moved_aside(path: Path, studies: list[Path]) -> bool:
    """An earlier run of one of `studies` (another run of the same study, not a study)."""
    return moved_aside_from(path) in studies


def _studies_below(path: Path, depth: int = 2) -> list[Path]:
    """Experiment directories in `path` or one level further (a spec's directory holds
    `results/<name>`), also one with trial folders only (a run killed before Ray saved its
    state, or Ray's own experiment)."""
    out = []
    for child in _children(path):
        if _is_study(child) or _has_trials(child):
            out.append(child)
        elif depth > 1 and child.name not in ("mlruns", "tensorboard", "__pycache__"):
            out += _studies_below(child, depth - 1)
    return out


def _builds_in(target: Path) -> bool:
    return any((c / "plan.json").is_file() for c in _children(target))


def _children(path: Path) -> list[Path]:
    try:
        return [c for c in path.iterdir() if c.is_dir()]
    except OSError:
        return []


def _is_study(path: Path) -> bool:
    """An experiment directory hpoc's driver made: it leaves summary.json or its run marker
    there, and a sharded study keeps one per shard-<k>/."""
    if (path / "summary.json").is_file() or (path / RUN_MARKER).is_file():
        return True
    return any(_SHARD_DIR.match(c.name) and _is_study(c) for c in _children(path))


def _has_trials(path: Path) -> bool:
    """Ray's own experiment: its state file, or trial directories right inside."""
    if any(path.glob("experiment_state-*.json")):
        return True
    return any((c / "result.json").is_file() or (c / "params.json").is_file()
               for c in _children(path))
