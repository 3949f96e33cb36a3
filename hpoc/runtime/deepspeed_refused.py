"""A DeepSpeed config that DeepSpeed refuses at its start, said in one line naming the key:
its config models' (pydantic) error named only the model ("1 validation error for
DeepSpeedZeroConfig"), the key in the trial's error.txt; a half precision the device lacks
named no key at all; a section DeepSpeed 0.19 removed (`elasticity`) is its own
DeepSpeedConfigError, no ValueError. Each retry failed alike."""

from __future__ import annotations

import re
from typing import Any

# DeepSpeed's engine, checking the config's dtype against the accelerator
_NO_HALF = re.compile(r"Type (fp16|bf16) is not supported on your device\.?")

# DeepSpeed's config models by the section of the file each reads
SECTIONS = {"DeepSpeedZeroConfig": "zero_optimization", "DeepSpeedBF16Config": "bf16",
            "DeepSpeedFP16Config": "fp16", "DeepSpeedMonitorConfig": "", "CommsLoggerConfig": "comms_logger",
            "CompileConfig": "compile", "HybridEngineConfig": "hybrid_engine",
            "TPTrainingConfig": "tensor_parallel", "DeepSpeedThroughputTimerConfig": "timers",
            "WeightQuantConfig": "weight_quantization"}  # fmt: skip


def refusal(exc: BaseException, device: str = "cpu") -> str | None:
    """What DeepSpeed refused of the config, one line per key; None for any other error."""
    if half := _NO_HALF.fullmatch(str(exc)):
        kind = half.group(1)
        return (f"DeepSpeed refuses the config's `{kind}.enabled`: this device ({device}) does not support {kind}"
                f'\n  help: set `"enabled": "auto"` in its `{kind}` section (the trial\'s `precision`), or false')
    if type(exc).__name__ == "DeepSpeedConfigError":  # its own checks: a removed section, a value
        return (f"DeepSpeed refuses the config: {' '.join(str(exc).split())}"
                "\n  help: remove or mend that part of the DeepSpeed config file")
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


def refused(exc: BaseException, device: str = "cpu") -> Any:
    """`exc` as the trial's TrainerError (every retry would fail alike), or None."""
    said = refusal(exc, device)
    if said is None:
        return None
    from hpoc.runtime.returns import TrainerError  # it imports the strategies

    if "\n  help: " not in said:
        said += "\n  help: mend the DeepSpeed config file (`hpoc check` names a misspelt key)"
    return TrainerError(said)
