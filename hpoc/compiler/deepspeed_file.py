"""A DeepSpeed config file as DeepSpeed will read it in every trial: what it refuses there,
after Ray and the workers have started, said by `hpoc check` instead (docs/language.md,
`resources`). The file's sections win over hpoc's settings; the runtime's merge is
`DeepSpeedStrategy.ds_config`."""

from __future__ import annotations

import json
import os
from typing import Any

from hpoc.compiler import deepspeed_keys
from hpoc.compiler.check import RESOURCES, VALUE, WARN_FILE, WARN_RESOURCES, Checker
from hpoc.plan import DS_AUTO_OPTIMIZER, DS_AUTO_SCHEDULER
from hpoc.plan.space import INT_DOMAINS, multiples

BATCH_KEYS = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps")
# Top-level keys whose "auto" hpoc fills in (the batch keys: DeepSpeed derives them). Inside
# other sections, DeepSpeed's own config models read "auto" as their default.
FILLED = (*BATCH_KEYS, "zero_optimization", "bf16", "fp16", "zero_allow_untested_optimizer",
          "steps_per_print", "wall_clock_breakdown", "gradient_clipping")
DEFAULT_BATCH = 64  # hpoc's loop without a `batch_size` (Trainer.batch_size), DeepSpeed's micro-batch then
MAX_VALUES = 4096  # a searched batch_size with more values is not enumerated


def check_file(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any]) -> None:
    at = ch.spans.get("resources.deepspeed.config")
    _misspelt(ch, config, ds, at)
    _half_precisions(ch, config, ds, at)
    _fp16_on_cpu(ch, out, config, ds, at)
    _unfilled_autos(ch, config, ds, at)
    _batch_split(ch, out, config, ds, at)
    _micro_batch(ch, out, config, ds, at)
    _offload(ch, config, ds, at)
    _offload_stage(ch, out, config, ds, at)


def _misspelt(ch: Checker, config: str, ds: dict[str, Any], at: Any) -> None:
    zero = ds.get("zero_optimization")
    removed = [k for k in ds if k in deepspeed_keys.REMOVED_TOP]
    removed += [f"zero_optimization.{k}" for k in zero if k in deepspeed_keys.REMOVED_ZERO] \
        if isinstance(zero, dict) else []
    for key in removed:
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets `{key}`, which DeepSpeed 0.19 removed: it '
                "refuses the file", at, notes=("every trial fails on it there; DeepSpeed 0.16 to 0.18 read it",),
                help=f"remove `{key}` from the DeepSpeed config, or keep DeepSpeed below 0.19 on the nodes")
    found = [(k, m, False) for k in ds if (m := deepspeed_keys.meant(k, deepspeed_keys.TOP))]
    for k in zero if isinstance(zero, dict) else ():
        if m := deepspeed_keys.meant(k, deepspeed_keys.ZERO):
            found.append((f"zero_optimization.{k}", m, True))
    for key, meant, refused in found:
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets `{key}`, which DeepSpeed does not know: '
                f"`{meant}`?", at,
                notes=("DeepSpeed refuses it there: every trial fails" if refused else
                       "DeepSpeed ignores a top-level key it does not know, without a word: the trials run "
                       "without it",),
                help=f"write `{meant}`")  # fmt: skip


def _half_precisions(ch: Checker, config: str, ds: dict[str, Any], at: Any) -> None:
    for k in ("bf16", "fp16"):
        enabled = ds[k].get("enabled", False) if isinstance(ds.get(k), dict) else False
        if isinstance(enabled, str) and enabled != "auto":
            # DeepSpeed reads "false" as false, hpoc's precision any string as on: they disagree
            ch.error(VALUE, f'the DeepSpeed config "{config}" sets `{k}.enabled` to {json.dumps(enabled)}: '
                     'write true, false or "auto"', at)  # fmt: skip
            return
    on = [k for k in ("bf16", "fp16") if isinstance(ds.get(k), dict) and ds[k].get("enabled") is True]
    if len(on) == 2:
        ch.error(VALUE, f'the DeepSpeed config "{config}" enables both `bf16` and `fp16`: DeepSpeed refuses '
                 "them together in every trial", at,
                 help='set one of the two `enabled` to false, or both to "auto" (the trial\'s `precision`)')


def _fp16_on_cpu(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any], at: Any) -> None:
    """A GPU config tried on CPU workers: the file's fp16 wins over hpoc's fp32 there, and
    DeepSpeed's CPU accelerator takes fp16 only on CPUs with AVX512-FP16 or AMX-FP16."""
    fp16 = ds.get("fp16")
    if out["resources"]["gpus_per_worker"] != 0 or not (isinstance(fp16, dict) and fp16.get("enabled") is True):
        return
    ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" enables `fp16`, but the trials get no GPU: on a CPU '
            'without fp16 support every trial fails ("Type fp16 is not supported on your device")', at,
            help='set `"enabled": "auto"` in its `fp16` section (the trial\'s `precision`, fp32 on CPU), or '
                 "give workers a GPU")  # fmt: skip


def _unfilled_autos(ch: Checker, config: str, ds: dict[str, Any], at: Any) -> None:
    """HF-style files leave values to "auto" for the HF Trainer to fill in from its arguments;
    hpoc fills in those the trial gives (DS_AUTO_*), and DeepSpeed takes any other for a number."""
    autos = [k for k, v in ds.items() if v == "auto" and k not in FILLED]
    for section, filled in (("optimizer", DS_AUTO_OPTIMIZER), ("scheduler", DS_AUTO_SCHEDULER)):
        params = ds.get(section, {}).get("params") if isinstance(ds.get(section), dict) else None
        if isinstance(params, dict):
            autos += [f"{section}.params.{k}" for k, v in params.items() if v == "auto" and k not in filled]
    if autos:
        listed = ", ".join(f"`{a}`" for a in autos)
        steps = any(a.endswith("_num_steps") for a in autos)
        ch.error(VALUE, f'the DeepSpeed config "{config}" leaves {listed} to "auto", which hpoc does not fill in: '
                 "every trial would fail on it", at,
                 notes=('hpoc fills in "auto" for the batch sizes, `gradient_accumulation_steps`, '
                        "`gradient_clipping`, `zero_optimization.stage`, `bf16`/`fp16` `enabled`, the optimizer's "
                        f"{_listed(DS_AUTO_OPTIMIZER)} (from the trainer's optimizer) and the scheduler's "
                        f"{_listed(DS_AUTO_SCHEDULER)}",),
                 help="give numbers (the HF Trainer filled these in from its own arguments"
                      + ("; a scheduler counts optimizer steps: epochs × batches per epoch ÷ "
                         "`gradient_accumulation_steps`" if steps else "")
                      + "), or remove them for DeepSpeed's defaults")  # fmt: skip


def _listed(keys: tuple[str, ...]) -> str:
    return ", ".join(f"`{k}`" for k in keys)


def _number(ch: Checker, config: str, ds: dict[str, Any], key: str, at: Any) -> int | None:
    """The file's value of a batch key; None when it leaves the key to hpoc or DeepSpeed."""
    v = ds.get(key)
    if v is None or v == "auto":
        return None
    if type(v) is not int or v < 1:
        ch.error(VALUE, f'the DeepSpeed config "{config}" sets `{key}` to {v!r}: DeepSpeed needs a whole number '
                 'of at least 1 (or "auto")', at)  # fmt: skip
        raise _Refused
    return v


class _Refused(Exception):
    pass


def _batch_split(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any], at: Any) -> None:
    """DeepSpeed asserts train_batch_size = micro-batch × accumulation × workers. hpoc gives
    the micro-batch (the trial's `batch_size`) and the accumulation (the trainer's) where the
    file does not; DeepSpeed derives what is still missing from `train_batch_size`."""
    try:
        total, micro, steps = (_number(ch, config, ds, k, at) for k in BATCH_KEYS)
    except _Refused:
        return
    if total is None:
        return  # DeepSpeed computes it
    workers = out["resources"]["workers"]
    args = ((out.get("pipeline") or {}).get("trainer") or {}).get("args") or {}
    if steps is None and type(args.get("grad_accumulation_steps")) is int and args["grad_accumulation_steps"] > 1:
        steps = args["grad_accumulation_steps"]
    searched = False
    if micro is not None:
        sizes, whose = [micro], "`train_micro_batch_size_per_gpu`"
    else:
        sizes, whose, searched = batch_sizes(out)
        if sizes is None:
            return  # a domain too large to list (or not whole numbers: said elsewhere)
        if not sizes:  # no batch_size: the trainer tells DeepSpeed the loop's default
            sizes, whose = [DEFAULT_BATCH], f"hpoc's default `batch_size` ({DEFAULT_BATCH}; none is given)"
    bad = {m: why for m in sizes if (why := _split_fails(total, m, steps, workers))}
    if not bad:
        return
    first = next(iter(bad.values()))
    help = ("remove `train_batch_size` (DeepSpeed computes it from the trial's batch), or make it a multiple "
            "of the batch size × workers")
    if searched and len(bad) < len(sizes):
        failing = ", ".join(str(m) for m in bad)
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets `train_batch_size` to {total}: trials whose '
                f"`batch_size` is {failing} fail ({first})", at, help=help)  # fmt: skip
        return
    ch.error(RESOURCES, f'the DeepSpeed config "{config}" sets `train_batch_size` to {total}, which DeepSpeed cannot '
             f"split: {first}", at,
             notes=(f"the micro-batch is {whose}, in every trial",) if not searched else
             ("no searched `batch_size` fits it",), help=help)  # fmt: skip


def _micro_batch(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any], at: Any) -> None:
    """The file's micro-batch wins in DeepSpeed's counts only: hpoc's loop draws batches of
    the trial's `batch_size`, so the samples per step are not what the file says."""
    micro = ds.get("train_micro_batch_size_per_gpu")
    sizes, whose, _ = batch_sizes(out)
    if type(micro) is not int or micro < 1:
        return  # hpoc fills it in with the loop's batch (a bad value: said by the split's check)
    if sizes == []:
        sizes, whose = [DEFAULT_BATCH], "hpoc's default `batch_size`"
    if sizes is None or sizes == [micro]:
        return
    ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" sets `train_micro_batch_size_per_gpu` to {micro}, '
            f"but the trials train on batches of {whose} ({', '.join(map(str, sizes))}): DeepSpeed only counts with it",
            at, help="remove it from the DeepSpeed config (hpoc fills it in with the trial's `batch_size`), or set "
                     f"`batch_size = {micro}` in `space`")  # fmt: skip


def _split_fails(total: int, micro: int, steps: int | None, workers: int) -> str | None:
    """Why DeepSpeed refuses `total` as `micro` × `steps` × `workers` (None: it does not);
    a None `steps` is derived by DeepSpeed, rounding down."""
    if steps is None:
        steps = total // (micro * workers)
        if steps < 1:
            return f"a micro-batch of {micro} × {workers} workers is already {micro * workers}"
    if steps >= 1 and micro >= 1 and total == micro * steps * workers:
        return None
    return f"a micro-batch of {micro} × {steps} accumulation steps × {workers} workers is {micro * steps * workers}"


def batch_sizes(out: dict[str, Any]) -> tuple[list[int] | None, str, bool]:
    """The trial's `batch_size` values (none: []), where they come from, and whether searched."""
    space = out["space"]
    if "batch_size" in space["constants"]:
        return _whole([space["constants"]["batch_size"]]), "`batch_size`", False
    for p in space["params"]:
        if p["name"] == "batch_size":
            return _whole(_domain_values(p)), "`batch_size`", True
    args = ((out.get("pipeline") or {}).get("trainer") or {}).get("args") or {}
    if "batch_size" in args:
        return _whole([args["batch_size"]]), "the trainer's `batch_size`", False
    return [], "", False


def _whole(values: list[Any] | None) -> list[int] | None:
    if values is None or any(type(v) is not int or v < 1 for v in values):
        return None
    return list(dict.fromkeys(values))


def _domain_values(p: dict[str, Any]) -> list[Any] | None:
    a, domain = p["args"], p["domain"]
    if domain == "choice":
        return list(a["categories"])
    if domain == "grid":
        return list(a["values"])
    if domain not in INT_DOMAINS:
        return None
    first, last, q = multiples(domain, a)
    if (last - first) // q >= MAX_VALUES:
        return None
    return list(range(first, last + 1, q))


def _offload(ch: Checker, config: str, ds: dict[str, Any], at: Any) -> None:
    zero = ds.get("zero_optimization")
    if not isinstance(zero, dict):
        return
    for part in ("offload_optimizer", "offload_param"):
        o = zero.get(part)
        device = o.get("device") if isinstance(o, dict) else None
        if device is not None and device not in ("none", "cpu", "nvme"):
            ch.error(VALUE, f'the DeepSpeed config "{config}" sets `zero_optimization.{part}.device` to '
                     f'{json.dumps(device)}: DeepSpeed offloads to "cpu" or "nvme" (or "none")', at)  # fmt: skip
            return
        path = o.get("nvme_path") if isinstance(o, dict) and o.get("device") == "nvme" else None
        here = os.path.expanduser(os.path.expandvars(path)) if isinstance(path, str) else None
        # checked here, not on the nodes: a node-local disk may exist there only; the runtime
        # expands `$VARS` on the node, where one unset here ($LOCAL_SCRATCH) may be set
        if here is not None and "$" not in here and not os.path.isdir(here):
            ch.warn(WARN_FILE, f'the DeepSpeed config "{config}" offloads to NVMe at "{path}", which does not exist '
                    "here", at, help="it must be a directory on every compute node when the study runs")  # fmt: skip
    o = zero.get("offload_optimizer")
    device = o.get("device") if isinstance(o, dict) else ("cpu" if zero.get("cpu_offload") is True else None)
    if device in ("cpu", "nvme") and "optimizer" not in ds and ds.get("zero_force_ds_cpu_optimizer") is not False:
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" offloads the optimizer to {device} but defines no '
                "`optimizer`: DeepSpeed refuses the trainer's (a torch optimizer) in every trial", at,
                notes=("unless the trainer builds `deepspeed.ops.adam.DeepSpeedCPUAdam` itself",),
                help='add an `optimizer` section (e.g. {"type": "AdamW", "params": {"lr": 0.001}}), or set '
                     '`"zero_force_ds_cpu_optimizer": false`')  # fmt: skip


def _offload_stage(ch: Checker, out: dict[str, Any], config: str, ds: dict[str, Any], at: Any) -> None:
    """DeepSpeed reads `offload_param` under stage 3 only and `offload_optimizer` under a ZeRO
    stage only, and says nothing otherwise: what the file moved off the GPU stays on it."""
    zero = ds.get("zero_optimization")
    if not isinstance(zero, dict):
        return
    stage = zero.get("stage", "auto")
    if stage == "auto":  # the spec's, else the runtime's default (DeepSpeedStrategy)
        stage = (out["resources"].get("deepspeed") or {}).get("zero_stage")
        stage = 2 if stage is None else stage
    for part, what, need, ok in (("offload_param", "the parameters", "stage 3", stage == 3),
                                 ("offload_optimizer", "the optimizer", "stages 1 to 3", stage >= 1)):
        o = zero.get(part)
        if ok or not isinstance(o, dict) or o.get("device") in (None, "none"):
            continue
        it, stay = ("them", "stay") if part == "offload_param" else ("it", "stays")
        ch.warn(WARN_RESOURCES, f'the DeepSpeed config "{config}" offloads {what} (`{part}`) under ZeRO stage '
                f"{stage}: DeepSpeed offloads {it} only under {need}", at,
                notes=(f"DeepSpeed ignores `{part}` there without a word: {what} {stay} on the GPU",),
                help=f'set `"stage": 3` in `zero_optimization`, or remove `{part}`')  # fmt: skip
