"""Schedulers that cannot act with the study's epochs, trials, checkpoints or metrics
(HP805, HP801): every such rule lives here, so that one cause gives one warning. Each
rule follows what Ray Tune's scheduler does (ray/tune/schedulers/), not the papers: where
Tune does something reasonable, nothing is said."""

from __future__ import annotations

import math
from typing import Any

from hpoc.compiler import tables as T
from hpoc.compiler.check import WARN_METRIC, WARN_SCHEDULE, Checker
from hpoc.compiler.metrics import Reports
from hpoc.compiler.space import Space, is_count
from hpoc.dsl import ast as A
from hpoc.errors import did_you_mean
from hpoc.plan.space import grid_bound, total_trials

# Result keys Tune adds to every report of a trainable, whatever it reports itself.
TUNE_TIME_KEYS = ("training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore",
                  "iterations_since_restore", "timestamp")
_EPOCH_TIME = ("training_iteration", "epoch")  # time_attrs counted in epochs (hpoc reports both)
_HYPERBAND = ("hyperband", "bohb")
# When Ray's scheduler pauses a trial (it resumes later, from its checkpoint).
_PAUSING = {
    "hyperband": "HyperBand pauses a trial that reaches its bracket's next milestone before the others",
    "bohb": "BOHB pauses a trial that reaches its bracket's next milestone before the others",
    "median": "the median rule pauses a trial, while others wait to start, until enough others reach its epoch",
}
_MAX_BRACKETS, _MAX_BAND = 64, 1_000_000  # beyond: no HyperBand rule (reduction factor near 1)
# A trial that exploits another loads that trial's latest checkpoint: with only the two
# best kept, the latest may already be gone (Ray warns at `num_to_keep <= 2`).
POPULATION_KEEP = 4


def epochs_of(space: Space, out: dict[str, Any]) -> int | None:
    """The most epochs a trial runs, when the space says (`epochs` constant or choices) or,
    without `epochs` in the space, the trainer's argument (which the loop reads then); None
    for a value that is an error already (`epochs = 0`): no warnings follow from it."""
    value = space.constants.get("epochs")
    if is_count(value):
        return int(value)
    p = space.param("epochs")
    options = p and (p.args.get("categories") or p.args.get("values"))
    if options and all(is_count(v) for v in options):
        return int(max(options))
    if value is None and p is None:
        value = (((out.get("pipeline") or {}).get("trainer") or {}).get("args") or {}).get("epochs")
        return int(value) if is_count(value) else None
    return None


def _by_epoch(sched: dict[str, Any]) -> bool:
    return (sched.get("time_attr") or "training_iteration") in _EPOCH_TIME


def _horizon(sched: dict[str, Any], epochs: int | None) -> int | None:
    """The last epoch in `time_attr` units; None where they are not epochs (seconds)."""
    return epochs if _by_epoch(sched) else None


def stop_short(ch: Checker, out: dict[str, Any], epochs: int | None) -> None:
    """A `stop` on the epoch count below the last epoch cuts every trial there, as a `max_t`
    before it does (hpoc's loop reports once an epoch: `training_iteration` is the epoch)."""
    stop = out["trials"].get("stop") or {}
    for key in ("training_iteration", "epoch"):
        limit = stop.get(key)
        if epochs is None or not isinstance(limit, (int, float)) or isinstance(limit, bool) \
                or not 1 <= limit < epochs:
            continue  # below 1: every first report reaches it, said by its own rule
        ch.warn(WARN_SCHEDULE, f"trials stop at `stop.{key}` = {limit:g}, before their {epochs} `epochs`",
                ch.spans.get(f"trials.stop.{key}") or ch.spans.get("trials.stop"),
                help=f"remove `{key}` from `stop` (or set `epochs = {math.ceil(limit)}`, if {math.ceil(limit)} "
                     "epochs are meant)")  # fmt: skip


def settings(ch: Checker, out: dict[str, Any], epochs: int | None, label: A.Span | None) -> None:
    """Before the shards are known, what holds whatever the trials: a `max_t` before the
    last epoch cuts every trial short; PBT's default keeps enough checkpoints to clone."""
    sched = out["scheduler"]
    name, opts = sched["name"], sched["options"]
    horizon, max_t = _horizon(sched, epochs), opts.get("max_t")
    if name in ("asha", "hyperband", "bohb") and horizon is not None and max_t is not None and max_t < horizon \
            and opts.get("stop_last_trials", True):
        ch.warn(WARN_SCHEDULE, f"trials stop at `max_t` = {max_t}, before their {horizon} `epochs`",
                ch.spans.get("scheduler.options.max_t", label),
                help=f"set `max_t = {horizon}` (the longest a trial runs, in epochs), "
                     "or `stop_last_trials = false`")  # fmt: skip
    clock = sched.get("time_attr") in ("time_total_s", "time_since_restore")
    if name in ("asha", "hyperband", "bohb") and clock and max_t is not None and "scheduler.options.max_t" \
            not in ch.spans and opts.get("stop_last_trials", True):  # the default is epochs', read as seconds
        example = "in seconds, e.g. `max_t = 7200` (2 hours)" if ch.file.endswith((".yaml", ".yml")) \
            else "e.g. `max_t = 2h`"  # YAML's `max_t` is an integer: no `2h`
        ch.warn(WARN_SCHEDULE, f"every trial stops after {max_t} s of training: `max_t` is not given, and its "
                               f"default, {max_t}, counts `time_attr` units, here seconds", label,
                help=f"set `max_t` to the longest a trial may train, {example}")  # fmt: skip
    if name in T.POPULATION and ch.spans.get("checkpoint.keep") is None:
        _population_default_keep(out)


def check(ch: Checker, out: dict[str, Any], epochs: int | None, label: A.Span | None,
          reports: Reports) -> None:
    """After the shards are known: what keeps each shard's scheduler from acting. A shard
    with one trial to compare is the cause to fix first, and then the only one said."""
    sched = out["scheduler"]
    name = sched["name"]
    if name == "fifo":
        return
    horizon = _horizon(sched, epochs)
    if out["objective"]["metrics"]:  # (without, its missing objective is an error already)
        _time_attr(ch, out, label, reports)
        if not _trials(ch, out, horizon, label):
            return
    if name in ("asha", "median"):
        _grace(ch, sched, horizon, label)
    if name == "asha":
        _asha_brackets(ch, sched["options"], horizon, label, "epochs" if _by_epoch(sched) else "`time_attr` units")
    if name in T.POPULATION:
        _population_keep(ch, out, name)
        _perturbation_checkpoints(ch, out, epochs, label)


def _trials(ch: Checker, out: dict[str, Any], horizon: int | None, label: A.Span | None) -> bool:
    """What each shard's scheduler can compare. False when it has at most one trial to
    compare (said here, or an error already)."""
    sched = out["scheduler"]
    name, opts = sched["name"], sched["options"]
    if grid_bound(out["space"]) > T.MAX_GRID_POINTS:
        return True  # HP304 already
    if "trials.num_samples" in ch.invalid:
        return False  # its error is enough: the default of 1 stands in for it
    shards = out["shards"]["count"]
    n = total_trials(out) // max(1, shards)  # the smallest shard's trials
    if n < 1:
        return False  # more shards than trials: HP503 already
    per = " per shard" if shards > 1 else ""
    trials_span = ch.spans.get("trials.num_samples") or label
    if n == 1:
        what = "exploits nothing" if name in T.POPULATION else "stops no trial early"
        ch.warn(WARN_SCHEDULE, f"`scheduler {name}` {what}: it compares trials, and the study runs one{per}",
                trials_span, help="raise `trials.num_samples`, or use `scheduler fifo`")  # fmt: skip
        return False
    if name in _PAUSING and out["checkpoint"]["every"] == 0:
        ch.warn(WARN_SCHEDULE, f"`scheduler {name}` pauses trials and resumes them from their latest "
                "checkpoint, but `checkpoint.every` is 0: a paused trial starts over from its first epoch",
                ch.spans.get("checkpoint.every") or label, notes=(_PAUSING[name],),
                help="set `checkpoint { every = 1 }`")  # fmt: skip
    if name == "median" and n <= opts["min_samples_required"]:
        need = opts["min_samples_required"]
        ch.warn(WARN_SCHEDULE, f"`scheduler median` stops no trial: it compares a trial with at least "
                f"`min_samples_required` ({need}) others, and {n} trials{per} leave {n - 1}",
                ch.spans.get("scheduler.options.min_samples_required") or trials_span,
                help=f"lower `min_samples_required` to {n - 1}, or run more than {need} trials{per}")  # fmt: skip
    if name in _HYPERBAND:
        _hyperband(ch, name, opts, n, horizon, per, trials_span, out["trials"]["max_concurrent"])
    if name in T.POPULATION and opts.get("quantile_fraction") == 0:  # Ray's quantiles: ceil(n * 0) trials
        ch.warn(WARN_SCHEDULE, f"`scheduler {name}` never exploits a trial: with `quantile_fraction = 0` no trial "
                "is in the bottom quantile", ch.spans.get("scheduler.options.quantile_fraction") or label,
                help="raise `quantile_fraction` above 0 (Ray's default is 0.25, at most 0.5)")  # fmt: skip
    elif name in T.POPULATION and horizon is not None:
        for key in ("perturbation_interval", "burn_in_period"):
            value = opts.get(key)
            if value is not None and value >= horizon:
                ch.warn(WARN_SCHEDULE, f"`scheduler {name}` never exploits a trial: `{key}` ({value:g}) is not "
                        f"below `epochs` ({horizon})", ch.spans.get(f"scheduler.options.{key}") or label,
                        notes=("a trial is perturbed once it has trained that long, and not at its last epoch",),
                        help=f"lower `{key}` below {horizon}")  # fmt: skip
                break
    return True


def _grace(ch: Checker, sched: dict[str, Any], horizon: int | None, label: A.Span | None) -> None:
    """ASHA and median compare no trial before `grace_period`: at or after the last
    epoch, or (ASHA) at `max_t`, where every trial is stopped before it is compared."""
    name, opts = sched["name"], sched["options"]
    grace = opts.get("grace_period")
    if grace is not None and horizon is not None and grace >= horizon:
        ch.warn(WARN_SCHEDULE, f"`scheduler {name}` stops no trial early: `grace_period` ({grace}) is not "
                               f"below `epochs` ({horizon})",
                ch.spans.get("scheduler.options.grace_period", label),
                help=f"lower `grace_period` below {horizon}, e.g. {max(1, horizon // 4)}" if horizon > 1
                else "one epoch leaves nothing to stop early: raise `epochs`, or use `scheduler fifo`")  # fmt: skip
    elif name == "asha" and grace == opts["max_t"] and opts["stop_last_trials"]:
        # Ray's only rung is then at max_t.
        ch.warn(WARN_SCHEDULE, f"`scheduler asha` stops no trial early: `grace_period` equals `max_t` "
                f"({opts['max_t']}), where every trial ends anyway",
                ch.spans.get("scheduler.options.grace_period", label),
                help="lower `grace_period` (the first point where trials are compared)")  # fmt: skip


def asha_rungs(opts: dict[str, Any]) -> list[list[float]]:
    """The rungs of each of Ray's ASHA brackets (its `_Bracket`): bracket s's milestones are
    grace_period * rf ** (k + s), as many as fit below max_t (none for a late bracket)."""
    grace, rf = opts["grace_period"], opts["reduction_factor"]
    return [[grace * rf ** (k + s) for k in range(_rung_count(opts, s))] for s in range(opts["brackets"])]


def _rung_count(opts: dict[str, Any], s: int) -> int:
    return max(0, int(math.log(opts["max_t"] / opts["grace_period"]) / math.log(opts["reduction_factor"]) - s + 1))


def _asha_brackets(ch: Checker, opts: dict[str, Any], horizon: int | None, label: A.Span | None,
                   unit: str) -> None:
    """Ray's ASHA puts each trial in a bracket at random, weighted e ** (its rungs): a
    bracket whose rungs all lie where trials end (`max_t`, the last epoch) stops none of
    its share. The first bracket's case is `_grace`'s."""
    count, grace, rf = opts["brackets"], opts["grace_period"], opts["reduction_factor"]
    if not 1 < count <= _MAX_BRACKETS or grace > opts["max_t"]:
        return
    limits = [horizon] if horizon is not None else []
    if opts["stop_last_trials"]:
        limits.append(opts["max_t"])
    if not limits:
        return
    end = min(limits)
    sizes = [_rung_count(opts, s) for s in range(count)]
    useful = [n > 0 and grace * rf ** s < end for s, n in enumerate(sizes)]  # its first rung before the end
    if not useful[0] or all(useful):
        return
    weights = [math.exp(n - max(sizes)) for n in sizes]
    raise_ = [f"`{k}`" for k, v in (("max_t", opts["max_t"] if opts["stop_last_trials"] else None),
                                      ("epochs", horizon)) if v == end]
    idle = sum(w for w, u in zip(weights, useful) if not u) / sum(weights)
    ch.warn(WARN_SCHEDULE, f"`scheduler asha` stops no trial early in {useful.count(False)} of its {count} "
            f"brackets: about {idle:.0%} of the trials", ch.spans.get("scheduler.options.brackets") or label,
            notes=(f"Ray's ASHA puts each trial in one of its brackets at random; its k-th bracket compares "
                   f"trials first after `grace_period` * `reduction_factor` ** (k - 1) {unit} (here: "
                   f"{', '.join(f'{grace * rf ** s:g}' for s in range(count))}), and trials end at {end:g}",),
            help=f"set `brackets = {useful.index(False)}`, or raise {' and '.join(raise_)}")  # fmt: skip


def _population_default_keep(out: dict[str, Any]) -> None:
    """The default of 2 kept checkpoints is too few for a trial to clone another's."""
    keep = out["checkpoint"]["keep"]
    if keep is not None and keep <= 2:
        out["checkpoint"]["keep"] = POPULATION_KEEP


def _population_keep(ch: Checker, out: dict[str, Any], name: str) -> None:
    """A `keep` the user set that is too few (said only where trials are compared)."""
    keep, span = out["checkpoint"]["keep"], ch.spans.get("checkpoint.keep")
    if keep is None or keep > 2 or span is None:
        return
    ch.warn(WARN_SCHEDULE, f"`scheduler {name}` clones trials' latest checkpoints; with `keep = {keep}` "
            "a trial's latest may be deleted before another trial clones it", span,
            help=f"keep {POPULATION_KEEP} or more (the default under `scheduler {name}`)")  # fmt: skip


# What Ray's scheduler does with a result that lacks its time_attr (PBT/PB2: the default).
_MISSING_TIME = {
    "asha": "skips every result without it: it would stop no trial",
    "median": "skips every result without it: it would stop no trial",
    "hyperband": "fails the study at the first result without it",
    "bohb": "fails the study at the first result without it",
}


def _time_attr(ch: Checker, out: dict[str, Any], label: A.Span | None, reports: Reports) -> None:
    """A time_attr nobody reports: ASHA and median skip every result (stop nothing),
    HyperBand (KeyError) and PBT (`require_attrs`) fail the study: Tune runs schedulers in
    its driver loop. As for the objective's metrics (rules.py), a trainer with a loop of
    its own reports only what it passes to `checkpoint_and_report`."""
    sched = out["scheduler"]
    attr = sched.get("time_attr") or "training_iteration"
    if attr in TUNE_TIME_KEYS:
        return
    own, reported = reports
    if own is None and attr in T.DEFAULT_METRICS:
        return
    if reported is not None and attr in reported:
        return
    name = sched["name"]
    effect = _MISSING_TIME.get(name, "fails the study at the first result without it (`require_attrs`)")
    if name in T.POPULATION and sched["options"].get("require_attrs") is False:
        effect = "skips every result without it: it would exploit nothing"
    tune_adds = f"Tune adds {', '.join(f'`{k}`' for k in TUNE_TIME_KEYS[:3])}"
    span = ch.spans.get("scheduler.time_attr") or label
    if own is not None:
        ch.warn(WARN_METRIC, f"`time_attr` `{attr}` is not reported to Tune by the trainer, nor added by Tune", span,
                notes=(f"Ray's `{name}` {effect}", f"{tune_adds}; the trainer's loop reports "
                       f"{', '.join(f'`{n}`' for n in sorted(own))} with `checkpoint_and_report`"),
                help=did_you_mean(attr, (*TUNE_TIME_KEYS, *sorted(own)))
                or f"add `{attr}` to the metrics the trainer passes to `checkpoint_and_report`")  # fmt: skip
        return
    notes = [f"Ray's `{name}` {effect}", f"{tune_adds}; hpoc's loop reports `epoch`"]
    if reported is not None:
        notes.append("and the trainer's module has no dict with that key")
    ch.warn(WARN_METRIC, f"`time_attr` `{attr}` is not reported by hpoc's default train loop or by Tune",
            span, notes=tuple(notes),
            help=did_you_mean(attr, (*TUNE_TIME_KEYS, *T.DEFAULT_METRICS, *(reported or ())))
            or f"make sure the trainer reports `{attr}` every epoch")  # fmt: skip


def stop_keys(ch: Checker, out: dict[str, Any], reports: Reports, nowhere: bool = False) -> None:
    """A `stop` key no report carries is skipped by Ray (a log line at most): the trials
    run on to their last epoch, as if the criterion were not there (`epochs` for `epoch`).
    `nowhere`: a YAML config's trainer module is not read (not found, installed elsewhere):
    its loop is not hpoc's, what it reports (and in which units) is unknown."""
    stop = out["trials"].get("stop") or {}
    if not stop or nowhere:
        return
    own, known = result_keys(out, reports)
    for key in stop:
        if key == "val_accuracy" and not own and key not in (reports[1] or ()) and _number(stop[key]) \
                and 1 < stop[key] <= 100:  # a percentage: hpoc's loop reports the fraction
            ch.warn(WARN_SCHEDULE, f"`stop` ends a trial once `{key}` reaches {stop[key]:g}, but hpoc's default "
                                   "train loop reports it as a fraction, from 0 to 1: no trial reaches it",
                    ch.spans.get(f"trials.stop.{key}") or ch.spans.get("trials.stop"),
                    help=f"write `{key} = {stop[key] / 100:g}`")  # fmt: skip
        if key in known or "/" in key:
            continue  # ("perf/train_s": a nested value, as Tune flattens it)
        by = "to Tune by the trainer, nor added by Tune" if own else "by hpoc's default train loop or by Tune"
        ch.warn(WARN_METRIC, f"`stop` key `{key}` is not reported {by}",
                ch.spans.get(f"trials.stop.{key}") or ch.spans.get("trials.stop"),
                notes=("Ray skips a stop criterion that no result holds: it would stop no trial",),
                help=did_you_mean(key, known) or f"make sure the trainer reports `{key}` every epoch")  # fmt: skip


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def result_keys(out: dict[str, Any], reports: Reports) -> tuple[bool, tuple[str, ...]]:
    """(whether the trainer has a loop of its own, the keys a trial's results may hold):
    Tune's counters, the objective's metrics, hpoc's default loop metrics unless the
    trainer's own loop reports, and what the trainer's source says it reports."""
    own, reported = reports
    return own is not None, (*TUNE_TIME_KEYS, *(T.DEFAULT_METRICS if own is None else ()),
                             *(m["name"] for m in out["objective"]["metrics"]), *sorted(reported or ()))


# ------------------------------------------------------------------------ hyperband


def band(max_t: int, eta: float, bohb: bool) -> list[tuple[int, int, int]]:
    """(s, r0, n0) of the brackets of one band, in the order Ray's HyperBandScheduler
    (s = 0, 1, ...: its first bracket halves nothing) or HyperBandForBOHB (s from the
    largest) fills them: n0 trials each, first halving after r0."""
    s_max_1 = int(round(math.log(max_t) / math.log(eta))) + 1
    order = range(s_max_1 - 1, -1, -1) if bohb else range(s_max_1)
    return [(s, int(max_t * eta ** (-s)), int(math.ceil(s_max_1 / (s + 1) * eta ** s)))
            for s in order if int(max_t * eta ** (-s)) > 0]  # Ray skips a bracket too small


def brackets(max_t: int, eta: float, trials: int, bohb: bool) -> list[tuple[int, int, int, int]]:
    """(s, r0, n0, trials in it) of each bracket `trials` added one after another fill."""
    out: list[tuple[int, int, int, int]] = []
    left = trials
    while left > 0:  # bands repeat
        for s, r0, n0 in band(max_t, eta, bohb):
            out.append((s, r0, n0, min(n0, left)))
            left -= min(n0, left)
            if left == 0:
                break
    return out


def bracket_stops(s: int, r0: int, n0: int, trials: int, max_t: int, eta: float, horizon: int | None) -> bool:
    """Whether a bracket of `trials` stops one at a halving before they end (`horizon`)."""
    live, n, r = trials, n0, r0
    for _ in range(s):  # a bracket halves s times, at r0, r0 * eta, ...
        if horizon is not None and r >= horizon:
            return False  # the trials finished (or report their last epoch) before
        n = int(math.ceil(n / eta))
        if live > n:
            return True
        r = int(min(r * eta, max_t))
    return False


def stops_any(max_t: int, eta: float, trials: int, bohb: bool, horizon: int | None) -> bool:
    # A whole band holds every kind of bracket: more trials than that stop nothing new.
    trials = min(trials, sum(n0 for _, _, n0 in band(max_t, eta, bohb)))
    return any(bracket_stops(s, r0, n0, k, max_t, eta, horizon)
               for s, r0, n0, k in brackets(max_t, eta, trials, bohb))


def _hyperband(ch: Checker, name: str, opts: dict[str, Any], n: int, horizon: int | None, per: str,
               trials_span: A.Span | None, cap: int | None) -> None:
    max_t, eta = opts["max_t"], opts["reduction_factor"]
    bohb = name == "bohb"
    size = sum(b[2] for b in band(max_t, eta, bohb)) if math.log(max_t) / math.log(eta) < _MAX_BRACKETS else 0
    if not size or size > _MAX_BAND:
        return  # (a reduction factor near 1 makes bands too large to reason about)
    if stops_any(max_t, eta, n, bohb, horizon):
        _hyperband_cap(ch, name, brackets(max_t, eta, min(n, size), bohb), max_t, eta, horizon, cap, trials_span)
        return
    filled = brackets(max_t, eta, min(n, size), bohb)
    s, r0, n0, _ = filled[0]
    notes = []
    if s == 0:
        them = "trials and runs each" if n0 > 1 else "trial and runs it"
        notes.append(f"Ray's HyperBand fills its brackets in turn: the first takes {n0} {them} "
                     f"to `max_t` ({max_t}) without comparing {'them' if n0 > 1 else 'it'}")
    later = [b for b in filled if b[0] > 0]
    if horizon is not None and later and all(b[1] >= horizon for b in later):
        notes.append(f"the next compares trials after {later[0][1]} epochs, and they train {horizon}")
    need = None  # the fewest trials that stop one (more trials never stop fewer)
    if stops_any(max_t, eta, size, bohb, horizon):
        lo, need = n + 1, size
        while lo < need:
            mid = (lo + need) // 2
            lo, need = (lo, mid) if stops_any(max_t, eta, mid, bohb, horizon) else (mid + 1, need)
    lower = f"lower `max_t` to the {horizon} epochs a trial runs" if horizon is not None and max_t > horizon else None
    help = ", or ".join(x for x in (f"run at least {need} trials{per}" if need else None, lower,
                                   "use `scheduler asha`") if x)
    ch.warn(WARN_SCHEDULE, f"`scheduler {name}` stops no trial early with {n} trials{per}",
            ch.spans.get("scheduler.options.max_t") or trials_span, notes=tuple(notes), help=help)  # fmt: skip


def _hyperband_cap(ch: Checker, name: str, filled: list[tuple[int, int, int, int]], max_t: int, eta: float,
                   horizon: int | None, cap: int | None, trials_span: A.Span | None) -> None:
    """HyperBand halves the trials a bracket holds once all of them reach its milestone, and
    Tune makes trial `cap + 1` only once one ends. A bracket after others (whose trials run
    longer) then halves only its trials among the first `cap`: seen with Ray 2.60, max_t = 3,
    trials 3-5 in the bracket that halves: under a cap of 2 or 3 none was stopped, under 4
    or 5 two were. (With fewer slots than the cap, trials start later, and timing decides.)"""
    if not cap:
        return
    first, need, halving = 1, None, None
    for s, r0, n0, k in filled:
        if bracket_stops(s, r0, n0, k, max_t, eta, horizon):
            held = min(first + k - 1, cap) - first + 1
            if held > 1 and bracket_stops(s, r0, n0, held, max_t, eta, horizon):
                return
            fewest = next(p for p in range(2, k + 1) if bracket_stops(s, r0, n0, p, max_t, eta, horizon))
            need = min(need or math.inf, first - 1 + fewest)
            if halving is None:
                kept = int(math.ceil(n0 / eta))
                halving = (f"the first bracket that halves (trials {first} to {first + k - 1}) holds "
                           f"{max(held, 0)} of its {k} then, and keeps {kept}")
        first += k
    if halving is None:
        return
    ch.warn(WARN_SCHEDULE, f"`scheduler {name}` stops no trial early under `max_concurrent = {cap}`",
            ch.spans.get("trials.max_concurrent") or trials_span,
            notes=("a bracket compares the trials it holds once all of them reach its milestone, and Tune makes "
                   f"more trials only as others end: {halving}",),
            help=f"raise `max_concurrent` to {need} or more, or leave it out, or use `scheduler asha`")


def _perturbation_checkpoints(ch: Checker, out: dict[str, Any], epochs: int | None, label: A.Span | None) -> None:
    """Ray's PBT clones what a donor reported at its perturbation: a function trainable's
    "save" is its last report. With no checkpoint there, asynchronous PBT skips the exploit;
    synchronous PBT pauses every trial, which then restarts from its latest checkpoint (or
    epoch 0) and clones an older one (seen: `every = 3`, interval 2, 6 epochs: epochs 1, 2
    and 4 trained twice). So perturbations must fall on checkpoint epochs."""
    sched = out["scheduler"]
    every, interval = out["checkpoint"]["every"], sched["options"].get("perturbation_interval")
    if not every or every == 1 or interval is None:
        return
    by_epoch = _by_epoch(sched)
    whole = by_epoch and float(interval).is_integer()
    if whole and int(interval) % every == 0:
        return
    name = sched["name"]
    if by_epoch and epochs is not None and max(interval, sched["options"].get("burn_in_period") or 0) >= epochs:
        return  # no perturbation at all: _trials says so
    if sched["options"].get("synch"):
        when = "trials repeat the epochs since their latest checkpoint at each perturbation between checkpoints"
        note = ("synchronous PBT pauses every trial at a perturbation; without a checkpoint there a trial "
                "restarts from its latest one (or from scratch), and an exploiting trial clones the donor's latest")
    else:
        note = "PBT skips an exploit when the donor's report at the perturbation has no checkpoint"
        when = "most perturbations cannot exploit"
        if whole:
            lcm = math.lcm(int(interval), every)
            when = (f"no trial ever exploits another in its {epochs} epochs" if epochs is not None and lcm >= epochs
                    else f"trials exploit others only every {lcm} epochs, not every {int(interval)}")
    unit = "epochs" if by_epoch else f"`{sched.get('time_attr')}`"
    ch.warn(WARN_SCHEDULE, f"`scheduler {name}` clones the checkpoint a trial reports at a perturbation "
            f"(every {interval:g} {unit}), but trials checkpoint every {every} epochs: {when}",
            ch.spans.get("checkpoint.every") or ch.spans.get("scheduler.options.perturbation_interval")
            or label, notes=(note,),
            help=f"set `checkpoint {{ every = 1 }}`"
                 + (f", or a `perturbation_interval` that is a multiple of {every}" if by_epoch else ""))  # fmt: skip
