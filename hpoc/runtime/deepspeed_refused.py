"""A DeepSpeed config that DeepSpeed's own config models (pydantic) refuse, said in one line
naming the key: DeepSpeed's error named only the model ("1 validation error for
DeepSpeedZeroConfig"), the key in the trial's error.txt, and each retry failed alike."""

from __future__ import annotations

from typing import Any

# DeepSpeed's config models by the section of the file each reads
SECTIONS = {"DeepSpeedZeroConfig": "zero_optimization", "DeepSpeedBF16Config": "bf16",
            "DeepSpeedFP16Config": "fp16", "DeepSpeedMonitorConfig": "", "CommsLoggerConfig": "comms_logger",
            "CompileConfig": "compile", "HybridEngineConfig": "hybrid_engine",
            "TPTrainingConfig": "tensor_parallel", "DeepSpeedThroughputTimerConfig": "timers"}  # fmt: skip


def refusal(exc: BaseException) -> str | None:
    """What DeepSpeed refused of the config, one line per key; None for any other error."""
    errors = getattr(exc, "errors", None)
    if type(exc).__name__ != "ValidationError" or not callable(errors):
        return None
    section = SECTIONS.get(getattr(exc, "title", ""), getattr(exc, "title", ""))
    lines = []
    for e in errors(include_url=False):
        key = ".".join([section] * bool(section) + [str(p) for p in e.get("loc", ())])
        why = ("it is not a setting DeepSpeed knows (a misspelling?)" if e.get("type") == "extra_forbidden"
               else e.get("msg", "refused"))
        lines.append(f"DeepSpeed refuses the config's `{key}`: {why}")
    return "\n".join(lines) or None


def refused(exc: BaseException) -> Any:
    """`exc` as the trial's TrainerError (every retry would fail alike), or None."""
    said = refusal(exc)
    if said is None:
        return None
    from hpoc.runtime.returns import TrainerError  # it imports the strategies

    return TrainerError(said + "\n  help: mend the DeepSpeed config file (`hpoc check` names a misspelt key)")
