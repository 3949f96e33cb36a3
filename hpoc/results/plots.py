"""Static plots of a study (matplotlib, Agg backend, PNG bytes).

Each `*_figure` function returns a matplotlib Figure, or None when the study has nothing to
show for it (no hyperparameters, no objective). `make_plots` renders them all.
Figures are built with `matplotlib.figure.Figure` directly (no pyplot): no global state,
no display needed.
"""

from __future__ import annotations

import io
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from hpoc.results import palette
from hpoc.results.model import Results, Trial, number
from hpoc.results.palette import ERROR, STATUS_COLORS
from hpoc.results.rank import Ranking, param_names, pareto_front, status_label

LOG_DOMAINS = {"loguniform", "qloguniform", "lograndint", "qlograndint"}
CATEGORICAL_DOMAINS = {"choice", "grid"}
# A status's timeline bars: a hatch as well as a colour (palette.py), so bars of two
# statuses differ to a reader who cannot tell their colours apart.
STATUS_HATCHES = {"stopped early": "..", "time limit": "\\\\", "time budget": "xx",
                  "error": "//", "running": "--", "paused": "++"}
# A timeline past 60 rows names its shards instead, up to this many (a label is ~12 px high).
MAX_NAMED_SHARDS = 40
# A hatch is drawn in its bar's edge colour: a dark one, seen on any fill (a vermillion
# hatch on a vermillion bar was not). Unedged bars get matplotlib's black hatch.
HATCH_EDGE = "#222222"
# The best-so-far line: no status's colour, or it sinks among that status's dots.
BEST_LINE = "black"
# The width of the report's column at the figures' 100 dpi (html.py: 1240 px less padding):
# a wider figure is shrunk to fit, and its text with it.
PAGE_WIDTH_IN = 11.6
MAX_CURVE_METRICS = 4
# Learning curves of more trials than PALETTE has colours: the crowd, and the best trial
# (thicker, starred: not told by its colour alone).
CROWD_LINE, CROWD_BEST = "#7a9cc6", palette.OKABE_ITO["orange"]
# Line colours of small studies (Okabe-Ito; not black, the "stopped early" ×, nor
# vermillion, a failed trial's X; yellow is too faint for a line), and a marker each on its
# reports: the legend names a trial by colour and shape, as no twelve colours (nor five) are
# told apart by every reader.
_LINE_COLOURS = tuple(palette.OKABE_ITO[c] for c in ("blue", "orange", "bluish green",
                                                      "reddish purple", "sky blue"))
PALETTE = tuple(zip(_LINE_COLOURS * 3, ("o", "s", "^", "D", "v", "P", "<", ">", "p", "h", "d", "8")))
# A conditional parameter a trial does not have; None is a value (`choice(relu, null)`).
LACKS: Any = object()


@dataclass
class Plot:
    name: str      # file stem, e.g. "learning-curves"
    title: str
    caption: str
    png: bytes


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_bytes(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def direction(mode: str) -> str:
    return "lower is better" if mode == "min" else "higher is better"


# ---------------------------------------------------------------- parameter kinds

@dataclass
class Param:
    name: str
    categorical: bool
    log: bool
    categories: list[Any]


def params(results: Results, configs: dict[int, dict[str, Any]]) -> list[Param]:
    """Searched hyperparameters with how to draw them (log axis, categories), from the
    trials' `configs` (flat_configs)."""
    domains = {p["name"]: p for p in results.space()}
    out = []
    for name in param_names(results):
        values = [v for v in (configs[id(t)].get(name, LACKS) for t in results.trials)
                  if v is not LACKS]
        spec = domains.get(name)
        if spec is not None:
            domain, args = spec.get("domain"), spec.get("args")  # a marker's: any shape
            args = args if isinstance(args, dict) else {}
            categorical = domain in CATEGORICAL_DOMAINS
            log = domain in LOG_DOMAINS
            cats = args.get("categories") or args.get("values")
            cats = list(cats) if isinstance(cats, list) else []
        else:
            nums = [number(v) for v in values]
            categorical = any(n is None for n in nums) or len(set(values)) <= 3
            positive = [n for n in nums if n is not None and n > 0]
            log = (not categorical and len(positive) == len(nums) and positive
                   and max(positive) / min(positive) >= 100)
            cats = []
        if categorical:
            seen = list(cats)
            extra = [v for v in dict.fromkeys(_hashable(v) for v in values) if v not in seen]
            if spec is None and all(number(v) is not None for v in extra):
                extra.sort()
            cats = seen + extra
        out.append(Param(name, categorical, bool(log), cats))
    return out


def named(results: Results, trial: Trial) -> str:
    """A trial's id, with its shard where shards repeat ids (each numbers from 00000)."""
    return f"{trial.trial_id} (shard {trial.shard})" if results.sharded else trial.trial_id


def flat_configs(results: Results, ranking: Ranking) -> dict[int, dict[str, Any]]:
    """id(trial) -> the config of the report the ranking takes, by dotted names: PBT changes
    a trial's config as it runs, and the table shows that report's, not the trial's last."""
    return {id(t): results.flat(ranking.config(t)) for t in results.trials}


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _position(param: Param, value: Any) -> float | None:
    if value is LACKS:
        return None
    if param.categorical:
        value = _hashable(value)
        cats = [_hashable(c) for c in param.categories]
        return float(cats.index(value)) if value in cats else None
    return number(value)


def _label(value: Any) -> str:
    """As the table and the spec write it: `true`, `null`, not Python's `True`, `None`."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


# A log axis's label steps, richest first, and the labels a third of the page holds.
LOG_STEPS = ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,))
MAX_LOG_LABELS = 5


def _log_axis(axis: Any, set_scale: Any) -> None:
    """Log scale with plain labels and unlabelled minor ticks (matplotlib's default labels
    every minor tick of a short range, and they overlap). Labels at 1-2-5 steps, else 1-3,
    else decades: the richest that gives MAX_LOG_LABELS at most (two decades of 1-2-5 ran
    5e-05 into 0.0001 and 0.0005 into 0.001 over a panel's width)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    set_scale("log")
    lo, hi = axis.get_data_interval()
    decades = math.log10(hi / lo) if 0 < lo < hi else 0.0
    subs = next((s for s in LOG_STEPS if _log_labels(lo, hi, s) <= MAX_LOG_LABELS), LOG_STEPS[-1]) \
        if decades > 0 else LOG_STEPS[0]
    if 0 < decades < 1:
        # Under a decade, 1-2-5 leaves one tick at most, and matplotlib then falls back to a
        # linear tick every 0.00025 (0.0015, 0.00175, ... ran into each other): a few instead.
        axis.set_major_locator(MaxNLocator(nbins=4))
    else:
        axis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_labels(lo: float, hi: float, subs: tuple[float, ...]) -> int:
    """The labels at `subs` steps between lo and hi, and the margin the axis adds (5% a side)."""
    pad = (hi / lo) ** 0.05
    lo, hi = lo / pad, hi * pad
    return sum(lo <= s * 10.0 ** e <= hi for e in range(math.floor(math.log10(lo)),
                                                        math.ceil(math.log10(hi)) + 1) for s in subs)


# ---------------------------------------------------------------- learning curves

def learning_curves_figure(results: Results, ranking: Ranking):
    metrics = [ranking.metric] if ranking.metric else []
    metrics += [m for m in results.metric_names() if m not in metrics]
    metrics = metrics[:MAX_CURVE_METRICS]
    trials = [t for t in results.trials if t.history]
    if not metrics or not trials:
        return None
    cols = min(2, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = _figure(PAGE_WIDTH_IN / 2 * cols, 3.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    # A colour per trial while a legend names them; past that, one muted colour for all and
    # a loud one for the best (a gradient gave it its neighbours' colour).
    named = len(trials) <= len(PALETTE)
    best = ranking.best
    colors = {t.trial_id + str(t.shard): (PALETTE[i][0] if named else
                                          CROWD_LINE if t is not best else CROWD_BEST)
              for i, t in enumerate(trials)}
    shapes = {t.trial_id + str(t.shard): PALETTE[i][1] for i, t in enumerate(trials) if named}
    alpha = 0.9 if len(trials) <= 20 else 0.5 if len(trials) <= 200 else 0.25
    from matplotlib.collections import LineCollection

    for ax, metric in zip(axes, metrics):
        # One collection for all lines and one marker series per kind: thousands of trials
        # still draw in about a second.
        segments, seg_colors, seg_styles = [], [], []
        stopped: list[tuple[float, float]] = []
        failed: list[tuple[float, float]] = []
        best_curve = None
        dots: list[tuple[float, float, Any]] = []
        drawn = False
        for trial in trials:
            xs, ys = _curve(trial, metric)
            if not xs:
                continue
            drawn = True
            if best is not None and trial is best:
                best_curve = (xs, ys, colors[trial.trial_id + str(trial.shard)])
            else:
                segments.append(list(zip(xs, ys)))
                seg_colors.append(colors[trial.trial_id + str(trial.shard)])
                seg_styles.append("--" if trial.status == "ERROR" else "-")
                if len(xs) == 1 and not named:  # a line of one point draws nothing
                    dots.append((xs[0], ys[0], seg_colors[-1]))
            if named:  # each report marked with the trial's own shape
                ax.plot(xs, ys, marker=shapes[trial.trial_id + str(trial.shard)], markersize=4,
                        linestyle="none", color=colors[trial.trial_id + str(trial.shard)],
                        alpha=alpha, zorder=3)
            if trial.stopped_early:
                stopped.append((xs[-1], ys[-1]))
            elif trial.status == "ERROR":
                failed.append((xs[-1], ys[-1]))
        if segments:
            ax.add_collection(LineCollection(segments, colors=seg_colors, linestyles=seg_styles,
                                             linewidths=1.2, alpha=alpha, zorder=2))
        if dots:
            ax.scatter([d[0] for d in dots], [d[1] for d in dots], s=14,
                       color=[d[2] for d in dots], alpha=alpha, zorder=2, linewidths=0)
        if best_curve is not None:
            xs, ys, color = best_curve
            ax.plot(xs, ys, color=color, linewidth=2.6, zorder=3)
            ax.plot(xs[-1:], ys[-1:], marker="*", markersize=14, color="gold",
                    markeredgecolor="black", linestyle="none", zorder=5)
        if stopped:
            ax.plot([p[0] for p in stopped], [p[1] for p in stopped], marker="x",
                    markersize=9, markeredgewidth=2, color="black", linestyle="none", zorder=4)
        if failed:
            ax.plot([p[0] for p in failed], [p[1] for p in failed], marker="X", markersize=9,
                    color=ERROR, linestyle="none", zorder=4)
        ax.autoscale_view()
        if not drawn:  # an empty axis of made-up ticks: every value NaN, or none yet
            diverged = any(_not_finite(r.get(metric)) for t in trials for r in t.history)
            ax.text(0.5, 0.5, "no finite value reported (NaN or inf)" if diverged else
                    "not reported yet", ha="center", va="center", transform=ax.transAxes,
                    fontsize=9, color="#555555")
            ax.set_yticks([])
        objective = results.metric(metric)
        ax.set_title(metric + (f" ({direction(objective.mode)})" if objective else ""))
        ax.set_xlabel("epoch (training iteration)")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        if results.max_epochs:
            ax.set_xlim(0.8, results.max_epochs + 0.2)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: 1
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    _curve_legend(fig, results, best if any(t is best for t in trials) else None,
                  colors.get(best.trial_id + str(best.shard)) if best is not None else None)
    if len(trials) <= len(PALETTE):  # few enough to name each line
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=colors[t.trial_id + str(t.shard)],
                          marker=shapes[t.trial_id + str(t.shard)], markersize=5,
                          linestyle="--" if t.status == "ERROR" else "-",
                          label=(f"s{t.shard} " if results.sharded else "") + t.trial_id)
                   for t in trials]
        fig.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)),
                   fontsize="small", frameon=False)
    return fig


def _curve(trial: Trial, metric: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(trial.history, 1):
        y = number(row.get(metric))
        if y is None:
            continue
        xs.append(number(row.get("training_iteration")) or float(i))
        ys.append(y)
    return xs, ys


def _curve_legend(fig: Any, results: Results, best: Trial | None, best_color: Any) -> None:
    """What the marks mean, above the panels: inside one it hid the curves of a big study."""
    from matplotlib.lines import Line2D

    handles = []
    if any(t.stopped_early for t in results.trials):
        handles.append(Line2D([], [], color="black", marker="x", linestyle="none",
                              markersize=9, markeredgewidth=2, label="stopped early by scheduler"))
    if any(t.status == "ERROR" and t.history for t in results.trials):  # one with a curve
        handles.append(Line2D([], [], color=ERROR, marker="X", linestyle="--",
                              markersize=9, label="error (trial failed)"))
    if best is not None:
        handles.append(Line2D([], [], color=best_color, linewidth=2.6, marker="*",
                              markerfacecolor="gold", markeredgecolor="black", markersize=14,
                              label=f"best trial {named(results, best)}"))
    if handles:
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles),
                   frameon=False)


# ---------------------------------------------------------------- objective vs params

def objective_vs_params_figure(results: Results, ranking: Ranking):
    configs = flat_configs(results, ranking)
    plist = params(results, configs)
    scored = [(t, ranking.value(t)) for t in results.trials]
    scored = [(t, v) for t, v in scored if v is not None]
    if not plist or not scored or ranking.metric is None:
        return None
    cols = min(3, len(plist))
    rows = math.ceil(len(plist) / cols)
    fig = _figure(PAGE_WIDTH_IN / 3 * cols, 3.5 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    # A name wider than its panel wraps at its dots and underscores (a character of 10 pt is
    # up to 8 px wide at 100 dpi): unwrapped, neighbouring names ran into each other.
    chars = max(12, int(fig.get_figwidth() / cols * 100 * 0.8 / 8))
    jitter = random.Random(0)
    for ax, param in zip(axes, plist):
        best_x = None
        for label, color in STATUS_COLORS.items():
            pts = [(t, _position(param, configs[id(t)].get(param.name, LACKS)), v)
                   for t, v in scored if status_label(t) == label]
            pts = [(t, x, y) for t, x, y in pts if x is not None]
            if not pts:
                continue
            xs = [x + (jitter.uniform(-0.15, 0.15) if param.categorical else 0.0)
                  for _, x, _ in pts]
            # The star goes on the best trial's own (jittered) dot, not beside it.
            best_x = next((x for (t, _, _), x in zip(pts, xs) if t is ranking.best), best_x)
            ax.scatter(xs, [y for _, _, y in pts], s=28, color=color, alpha=0.8, label=label,
                       marker=palette.marker(label), edgecolors="white", linewidths=0.5)
        if best_x is not None:
            ax.scatter([best_x], [ranking.value(ranking.best)], marker="*", s=220, color="gold",
                       edgecolors="black", zorder=5, label="best")
        if param.categorical:
            ax.set_xticks(range(len(param.categories)))
            ax.set_xticklabels([_label(c) for c in param.categories])
            ax.set_xlim(-0.5, len(param.categories) - 0.5)
        elif param.log:
            _log_axis(ax.xaxis, ax.set_xscale)
        ax.set_xlabel(_wrap(param.name + (" (log scale)" if param.log else ""), chars))
        ax.set_ylabel(f"{ranking.metric} ({ranking.scope})")
        ax.grid(True, alpha=0.3)
        if not ax.collections:  # an empty axis would say no trial has the parameter
            ax.text(0.5, 0.5, f"no trial with a finite {ranking.metric} has it", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9, color="#555555")
    for ax in axes[len(plist):]:
        ax.set_visible(False)
    # Markers of the dots' size read well on the page, but not in a legend: a 5 px shape
    # does not say which status it is.
    from matplotlib.lines import Line2D

    drawn = {c.get_label() for ax in axes for c in ax.collections}
    handles = [Line2D([], [], color=c, marker=palette.marker(s), markersize=8, linestyle="none", label=s)
               for s, c in STATUS_COLORS.items() if s in drawn]
    if "best" in drawn:
        handles.append(Line2D([], [], marker="*", markersize=15, color="gold", markeredgecolor="black",
                              linestyle="none", label="best"))
    _legend_below(fig, handles)
    # A NaN or inf has no place on the axis, nor has a trial that reported other metrics
    # only: said, since such a trial is in no panel (one yet to report is not: it will be).
    unplaced = [t for t in results.trials if t.history and ranking.value(t) is None]
    diverged = sum(1 for t in unplaced if any(_not_finite(r.get(ranking.metric)) for r in t.history))
    never = len(unplaced) - diverged
    parts = ([f"{diverged} trial{'s' * (diverged != 1)} with a NaN or infinite {ranking.metric}"]
             if diverged else []) + ([f"{never}{'' if diverged else ' trial' + 's' * (never != 1)} "
                                      f"that never reported {'it' if diverged else ranking.metric}"]
                                     if never else [])
    left_out = f"; {' and '.join(parts)} not shown" if parts else ""
    fig.suptitle(_fit(f"{ranking.metric} vs each hyperparameter ({direction(ranking.mode)})"
                      + left_out, fig.get_figwidth()))
    return fig


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _fit(title: str, width_in: float) -> str:
    """A figure title broken into lines that fit `width_in` (a character of the title's
    12 pt is up to 9 px wide at 100 dpi): a one-panel figure cut it at both ends."""
    import textwrap

    return "\n".join(textwrap.wrap(title, max(20, int(width_in * 100 / 9)))) or title


def _legend_below(fig: Any, handles: list | None = None) -> None:
    """One legend for every panel (of `handles`, else of what the panels labelled), under
    them: inside a panel (loc="best") it covered the data of any study big enough to leave
    no empty corner."""
    entries: dict[str, Any] = {}
    for ax in fig.axes if handles is None else []:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    for handle in handles or []:
        entries.setdefault(handle.get_label(), handle)
    if entries:
        # One row when it fits the figure (about 7 px a character, 50 px a marker), else two.
        wide = sum(7 * len(label) + 50 for label in entries) <= fig.get_figwidth() * 100
        fig.legend(list(entries.values()), list(entries), loc="outside lower center",
                   ncols=len(entries) if wide else 1 if len(entries) <= 3 else math.ceil(len(entries) / 2),
                   frameon=False)  # three in two columns left one alone on a row


# ---------------------------------------------------------------- parallel coordinates

ABSENT = -0.12  # where a parallel-coordinates line meets an axis of a parameter it lacks


# Parallel coordinates' axes past the objective's: 35 hyperparameters put their axes 30 px
# apart, names and values running together. The first ones of the spec are drawn.
MAX_PARALLEL_AXES = 12


def parallel_coordinates_figure(results: Results, ranking: Ranking):
    configs = flat_configs(results, ranking)
    every = params(results, configs)
    plist = every[:MAX_PARALLEL_AXES]
    scored = [(t, ranking.value(t)) for t in results.trials]
    scored = [(t, v) for t, v in scored if v is not None]
    if not plist or len(scored) < 2 or ranking.metric is None:
        return None
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    columns: list[tuple[str, list[float], list[tuple[float, str]]]] = []
    for param in plist:
        raw = [_position(param, configs[id(t)].get(param.name, LACKS)) for t, _ in scored]
        if param.categorical:
            n = max(1, len(param.categories) - 1)
            norm = [None if r is None else r / n for r in raw]
            ticks = [(i / n, _label(c)) for i, c in enumerate(param.categories)]
        else:
            vals = [r for r in raw if r is not None and (r > 0 or not param.log)]
            tf = (lambda x: math.log10(x)) if param.log else (lambda x: x)
            lo, hi = (min(map(tf, vals)), max(map(tf, vals))) if vals else (0.0, 1.0)
            span = (hi - lo) or 1.0
            norm = [None if r is None or (param.log and r <= 0) else (tf(r) - lo) / span
                    for r in raw]
            inv = (lambda u: 10 ** u) if param.log else (lambda u: u)
            ticks = [(0.0, _label(inv(lo))), (1.0, _label(inv(hi)))] if vals else []
        if any(n is None for n in norm):
            # A conditional parameter a trial lacks: a point of its own below the axis. Left
            # out, the line would cross this axis where its neighbours put it, as if a value.
            norm = [ABSENT if n is None else n for n in norm]
            ticks.append((ABSENT, "(absent)"))
        columns.append((param.name + (" (log)" if param.log else ""), norm, ticks))
    values = [v for _, v in scored]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    columns.append((ranking.metric, [(v - lo) / span for v in values],
                    [(0.0, _label(lo)), (1.0, _label(hi))]))

    fig = _figure(min(PAGE_WIDTH_IN, max(6.0, 1.9 * len(columns))), 4.6)
    ax = fig.subplots()
    # Good trials in bright colours, drawn last (on top).
    cmap = colormaps["viridis_r" if ranking.mode == "min" else "viridis"]
    norm = Normalize(vmin=lo, vmax=hi)
    order = sorted(range(len(scored)), key=lambda i: values[i], reverse=ranking.mode == "min")
    xs = list(range(len(columns)))
    from matplotlib.collections import LineCollection

    lines = []
    for i in order:
        pts = [(x, col[1][i]) for x, col in zip(xs, columns)]
        lines.append(pts)
    ax.add_collection(LineCollection(lines, colors=[cmap(norm(values[i])) for i in order],
                                     linewidths=1.6, alpha=0.85))
    for x, (name, _, ticks) in zip(xs, columns):
        ax.axvline(x, color="black", linewidth=0.8)
        for y, text in ticks:
            # On a white ground: on the lines themselves the values could not be read.
            ax.text(x + 0.04, y, text, fontsize="small", va="center", zorder=3,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    ax.set_xticks(xs)
    # An axis's name wraps at its dots and underscores to the width between two axes (a
    # character of 8 pt is up to 7 px wide; the colour bar takes 1.3 inches).
    chars = max(8, int((fig.get_figwidth() - 1.3) * 100 / len(columns) / 7))
    ax.set_xticklabels([_wrap(c[0], chars) for c in columns], fontsize="small")
    ax.set_yticks([])
    ax.set_ylim(ABSENT - 0.06, 1.08)
    ax.set_xlim(-0.2, len(columns) - 0.6)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    bar.set_label(f"{ranking.metric} ({direction(ranking.mode)})")
    some = f" (the first {len(plist)} of {len(every)})" if len(plist) < len(every) else ""
    ax.set_title(_fit(f"Hyperparameters{some} of {len(scored)} trials, coloured by {ranking.metric}",
                      fig.get_figwidth() - 1.3))
    return fig


def _wrap(name: str, width: int) -> str:
    """`name` on lines of at most `width` characters, broken after its dots and underscores
    (a part longer than that keeps its line)."""
    import re

    lines = [""]
    for part in re.findall(r"[^._]+[._]?|[._]", name):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)


# ---------------------------------------------------------------- best so far

def _time_unit(span_s: float) -> tuple[float, str]:
    if span_s >= 3 * 3600:
        return 3600.0, "hours"
    if span_s >= 180:
        return 60.0, "minutes"
    return 1.0, "seconds"


def study_start(results: Results) -> float | None:
    if results.started is not None:  # a selection's: the whole study's
        return results.started
    starts = [began(t) for t in results.trials if began(t) is not None]
    return min(starts) if starts else None


def report_times(trial: Trial) -> list[float | None]:
    """When each report came. result.json's timestamps are whole seconds: next to Ray's exact
    start and end (the dots, the timeline) a short trial's reports would land up to a second
    early, before the trial began. With those, each report is placed back from the end by
    the training time (`time_total_s`) that followed it."""
    stamps = [number(r.get("timestamp")) for r in trial.history]
    start, end = trial.started_at, trial.ended_at
    last = number(trial.last.get("time_total_s"))
    if start is None or end is None or last is None:
        return stamps
    times: list[float | None] = []
    for report, stamp in zip(trial.history, stamps):
        total = number(report.get("time_total_s"))
        times.append(stamp if total is None else min(max(end - (last - total), start), end))
    return times


def best_so_far_figure(results: Results, ranking: Ranking):
    metric, mode = ranking.metric, ranking.mode
    t0 = study_start(results)
    if metric is None or t0 is None:
        return None
    better = (lambda a, b: a < b) if mode == "min" else (lambda a, b: a > b)
    events = sorted((ts, v) for t in results.trials if t.status != "ERROR"
                    for ts, v in zip(report_times(t), (number(r.get(metric)) for r in t.history))
                    if ts is not None and v is not None)
    # Every trial that ended counts, a diverged one (NaN) too: only those with a value are dots.
    ended = sorted(((t.end_ts, ranking.value(t), t) for t in results.trials
                    if t.end_ts is not None and t.status in ("TERMINATED", "ERROR")),
                   key=lambda e: e[0])
    finished = [e for e in ended if e[1] is not None]
    if not events and not finished:
        return None
    span = max(ts for ts, _ in events) - t0 if events else 1.0
    unit, unit_name = _time_unit(span)
    fig = _figure(11.0, 3.8)
    ax_time, ax_count = fig.subplots(1, 2)

    xs, ys, best = [], [], None
    for ts, v in events:
        if best is None or better(v, best):
            best = v
        xs.append((ts - t0) / unit)
        ys.append(best)
    ax_time.step(xs, ys, where="post", color=BEST_LINE, linewidth=2, label="best so far",
                 zorder=4)  # above the dots: thousands of them hid it
    _status_dots(ax_time, [((e[0] - t0) / unit, e[1], e[2]) for e in finished])
    ax_time.set_xlabel(f"time since study start ({unit_name})")
    ax_time.set_ylabel(metric)
    ax_time.set_title(f"best {metric} so far vs time ({direction(mode)})")
    ax_time.grid(True, alpha=0.3)

    counts, running, best = [], [], None
    for i, (_, v, trial) in enumerate(ended, 1):
        if v is None:
            continue
        if trial.status != "ERROR" and (best is None or better(v, best)):
            best = v
        counts.append(i)
        running.append(best)
    _status_dots(ax_count, [(c, e[1], e[2]) for c, e in zip(counts, finished)])
    pts = [(c, b) for c, b in zip(counts, running) if b is not None]
    if pts:
        ax_count.step([p[0] for p in pts], [p[1] for p in pts], where="post", color=BEST_LINE,
                      linewidth=2, label="best so far", zorder=4)
    ax_count.set_xlabel("trials finished")
    ax_count.set_ylabel(metric)
    ax_count.set_title(f"best {metric} so far vs trials finished")
    from matplotlib.ticker import MaxNLocator

    ax_count.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax_count.set_xlim(0.5, max(1, len(ended)) + 0.5)  # one trial: a tick at 1, not 0.96, 0.98, ...
    ax_count.grid(True, alpha=0.3)
    if not events:  # every trial that reported failed: no line, and the legend names none
        for ax in (ax_time, ax_count):
            ax.text(0.5, 0.5, f"no best: no trial without an error reported {metric}", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9, color="#555555")
    handles = _status_handles(finished, "best so far" if events else None)
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return fig


def _status_dots(ax: Any, points: list[tuple[float, float, Trial]]) -> None:
    """A dot per trial in its status's colour and shape: one scatter per status."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for x, y, trial in points:
        groups.setdefault(status_label(trial), []).append((x, y))
    for label, pts in groups.items():
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, color=palette.color(label),
                   marker=palette.marker(label), zorder=3)


def _status_handles(finished: list[tuple[float, float, Trial]], line_label: str | None) -> list:
    from matplotlib.lines import Line2D

    used = {status_label(e[2]) for e in finished}
    handles = [Line2D([], [], color=BEST_LINE, linewidth=2, label=line_label)] if line_label else []
    handles += [Line2D([], [], color=c, marker=palette.marker(s), linestyle="none", label=f"trial {s}")
                for s, c in STATUS_COLORS.items() if s in used]
    return handles


# ---------------------------------------------------------------- timeline / shards

def began(trial: Trial) -> float | None:
    """When a trial began: its first report's start, else (it never reported) Ray's."""
    return trial.start_ts if trial.start_ts is not None else trial.started_at


def timeline_figure(results: Results, ranking: Ranking):
    t0 = study_start(results)
    if t0 is None or not results.trials:
        return None
    # Every trial the table lists has a row: one that never reported is a mark where it
    # began, or a word when it never began (or Ray kept no time for it).
    rows = sorted(results.trials, key=lambda t: (t.shard, began(t) is None, began(t) or 0.0,
                                                 t.trial_id))
    spans = [t for t in rows if t.start_ts is not None and t.end_ts is not None]
    ends = [t.end_ts for t in spans] + [t.started_at for t in rows if t.started_at is not None]
    span = max(ends, default=t0) - t0  # a selection may hold only trials never started
    unit, unit_name = _time_unit(span)
    height = min(12.0, 1.4 + 0.28 * len(rows))
    fig = _figure(10.0, height)
    ax = fig.subplots()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    # A failed bar's outline, no thicker than half a row: with thousands of rows (fractions
    # of a point each) a 1.2 pt outline painted its neighbours red.
    outline = min(1.2, 0.5 * 72 * height / len(rows))
    # Hatches while a bar is tall enough to show one (6 px); on thinner rows they are not
    # seen and cost seconds per thousand bars.
    hatches = STATUS_HATCHES if 100 * height / len(rows) >= 6 else {}
    shard_ids = sorted({t.shard for t in rows})

    def color(trial: Trial) -> Any:
        return cmap(shard_ids.index(trial.shard) % 10) if results.sharded \
            else palette.color(status_label(trial))

    bars: dict[str, list[tuple[int, float, float, Any]]] = {}  # by status label
    marks: list[tuple[float, int, Any]] = []
    spanned = {id(t) for t in spans}  # by identity: thousands of trials, compared by value, crawl
    for y, trial in enumerate(rows):
        if id(trial) in spanned:
            left = (trial.start_ts - t0) / unit
            width = max((trial.end_ts - trial.start_ts) / unit, max(span / unit, 1.0) / 400)
            bars.setdefault(status_label(trial), []).append((y, width, left, color(trial)))
        elif trial.started_at is not None:
            marks.append(((trial.started_at - t0) / unit, y, color(trial)))
        elif len(rows) <= 60:  # a word per row: readable while the rows are named
            said = "never started" if trial.status == "PENDING" else f"{status_label(trial)}, no time kept"
            ax.text(0, y, f" {said}", va="center", fontsize="small", color="#555")
    from matplotlib.collections import PolyCollection

    for label, group in bars.items():
        # One collection per status (its hatch): a patch per trial took seconds per thousand.
        failed = label == "error"  # outlined too: a bar of a few pixels has no room for a hatch
        boxes = PolyCollection(
            [[(x, y - 0.35), (x + w, y - 0.35), (x + w, y + 0.35), (x, y + 0.35)]
             for y, w, x, _ in group],
            facecolors=[g[3] for g in group], edgecolors=HATCH_EDGE if failed else "none",
            hatch=hatches.get(label), linewidths=outline, label=label)
        boxes.sticky_edges.x.append(0.0)  # time starts at the study's start, as barh did
        ax.add_collection(boxes)
    ax.autoscale_view()
    if marks:
        ax.scatter([m[0] for m in marks], [m[1] for m in marks], c=[m[2] for m in marks],
                   marker="|", s=160, linewidths=2.5, zorder=3)
    if len(rows) <= 60:
        ax.set_yticks(range(len(rows)))
        labels = [(f"s{t.shard} " if results.sharded else "") + t.trial_id for t in rows]
        ax.set_yticklabels(labels, fontsize="small")  # 8 pt: x-small blurred when projected
    elif results.sharded and len(shard_ids) <= MAX_NAMED_SHARDS:
        # Too many rows to name: each shard's block of rows is named at its middle, since
        # its colour alone (ten that repeat) does not say which shard it is.
        first: dict[int, int] = {}
        for y, trial in enumerate(rows):
            first.setdefault(trial.shard, y)
        ends = [first[s] for s in shard_ids[1:]] + [len(rows)]
        ax.set_yticks([(first[s] + end - 1) / 2 for s, end in zip(shard_ids, ends)])
        ax.set_yticklabels([f"shard {s}" for s in shard_ids], fontsize="small")
        ax.set_ylabel(f"{len(rows)} trials, grouped by shard")
    else:  # too many to name: one row per trial, unlabelled
        ax.set_yticks([])
        ax.set_ylabel(f"{len(rows)} trials" + (", grouped by shard" if results.sharded else ""))
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top; a row of words only still shows
    if span <= 0:  # nothing with a length (a word per row, one instant): no negative time
        ax.set_xlim(0, 1)
    ax.set_xlabel(f"time since study start ({unit_name})")
    ax.grid(True, axis="x", alpha=0.3)
    _timeline_legend(ax, results, rows, spans, bool(marks), cmap, shard_ids, hatches)
    return fig


def _timeline_legend(ax: Any, results: Results, rows: list[Trial], spans: list[Trial], marked: bool,
                     cmap: Any, shard_ids: list[int], hatches: dict[str, str]) -> None:
    """The timeline's title and legend: shards, or the statuses its bars and marks show."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if results.sharded:
        per_shard = Counter(t.shard for t in rows)
        # Past ten shards the colours repeat: a legend would name each colour many times.
        handles = [Patch(color=cmap(i % 10), label=f"shard {s} ({per_shard[s]} trials)")
                   for i, s in enumerate(shard_ids)] if len(shard_ids) <= 10 else []
        ax.set_title("Which shard ran which trial, and when" + (
            f" ({len(shard_ids)} shards; colours repeat every 10)" if not handles else ""))
    else:
        used = {status_label(t) for t in spans} | {status_label(t) for t in rows
                                                   if t.started_at is not None}
        handles = [Patch(facecolor=c, edgecolor=HATCH_EDGE if s == "error" else "none",
                         hatch=hatches.get(s), label=s)
                   for s, c in STATUS_COLORS.items() if s in used]
        ax.set_title("Trial timeline")
    if results.sharded:  # the colour is the shard's: a hatch, or a failed bar's outline, says the status
        marked_by_bar = (set(hatches) if hatches else {"error"}) & {status_label(t) for t in spans}
        handles += [Patch(facecolor="white", edgecolor=HATCH_EDGE, hatch=hatches.get(s), label=s)
                    for s in STATUS_COLORS if s in marked_by_bar]
    if marked:
        handles.append(Line2D([], [], color="#333", marker="|", markersize=12, markeredgewidth=2.5,
                              linestyle="none",
                              label="began, never reported" if results.over else "began, no report yet"))
    _legend_below(ax.figure, handles)


# ---------------------------------------------------------------- Pareto front

def pareto_figure(results: Results, ranking: Ranking):
    """Several objectives: the first two against each other, the front's trials joined."""
    front = pareto_front(results, ranking.scope)
    if not front:
        return None
    (m1, m2), scope = results.metrics[:2], ranking.scope
    others = [t for t in results.trials if t not in front and t.status != "ERROR"
              and t.value(m1.name, scope, m1.mode) is not None
              and t.value(m2.name, scope, m2.mode) is not None]
    fig = _figure(6.4, 4.6)
    ax = fig.subplots()
    ax.scatter([t.value(m1.name, scope, m1.mode) for t in others],
               [t.value(m2.name, scope, m2.mode) for t in others], s=26, color="#9a9a9a",
               label="other trials")
    pts = sorted(((t.value(m1.name, scope, m1.mode), t.value(m2.name, scope, m2.mode), t)
                  for t in front), key=lambda p: p[:2])  # ties: in front order, not by Trial
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", color="black", markersize=6,  # red means error
            label=f"Pareto front ({len(pts)} trial{'s' if len(pts) != 1 else ''})")
    if ranking.best is not None and ranking.best in front:
        ax.scatter([ranking.best.value(m1.name, scope, m1.mode)],
                   [ranking.best.value(m2.name, scope, m2.mode)], marker="*", s=260,
                   color="gold", edgecolors="black", zorder=5,
                   label=f"best trial {named(results, ranking.best)} (by {m1.name})")
    ax.set_xlabel(f"{m1.name} ({direction(m1.mode)})")
    ax.set_ylabel(f"{m2.name} ({direction(m2.mode)})")
    extra = f" (of {len(results.metrics)} objectives)" if len(results.metrics) > 2 else ""
    ax.set_title(f"{m1.name} vs {m2.name}{extra}")
    ax.grid(True, alpha=0.3)
    _legend_below(fig)
    return fig


# ---------------------------------------------------------------- all of them

# (name, title, figure, caption, whole): a `whole` plot shows how the search went, which
# only the whole study tells; the others show the trials --top/--status selected.
PLOTS = (
    ("learning-curves", "Learning curves", learning_curves_figure,
     "Every trial's reported metrics per epoch. × marks a trial the scheduler stopped early; "
     "a dashed line ending in a red X is a trial that failed.", False),
    ("pareto-front", "Pareto front", pareto_figure,
     "Several objectives: each dot is a trial, at its first two objective metrics; the red line "
     "joins the trials no other trial beats on every objective. The best trial is the front's "
     "best by the first metric only.", True),
    ("objective-vs-params", "Objective vs hyperparameters", objective_vs_params_figure,
     "Each dot is a trial. Log-scaled parameters use a log axis; categories are jittered.", False),
    ("parallel-coordinates", "Parallel coordinates", parallel_coordinates_figure,
     "One line per trial through its hyperparameter values, coloured by the objective.", False),
    ("best-so-far", "Best so far", best_so_far_figure,
     "How the best objective improved with wall-clock time and with the number of trials.", True),
    ("timeline", "Timeline", timeline_figure,
     "When each trial ran (and on which shard, for sharded studies). A tick marks when a "
     "trial that never reported began; a trial that never started has a row and no bar.", False),
)


def selected(results: Results, ranking: Ranking) -> Results:
    """The study as --top/--status narrowed it: the trials the table shows, in trial order.
    Times stay counted from the whole study's start, so a selection's plot lines up with
    the unfiltered one."""
    if len(ranking.trials) == len(results.trials):
        return results
    shown = {id(t) for t in ranking.trials}
    return replace(results, trials=[t for t in results.trials if id(t) in shown], _names=None,
                   started=study_start(results))


def figures(results: Results, ranking: Ranking) -> list[tuple[str, str, str, Any]]:
    """(name, title, caption, figure) of each plot the study has something to show for."""
    view = selected(results, ranking)
    out = []
    for name, title, build, caption, whole in PLOTS:
        fig = build(results if whole else view, ranking)
        if fig is None:
            continue
        if name == "learning-curves":
            caption += _star(view, ranking)
        if view is not results:
            n, total = len(view.trials), len(results.trials)
            caption += (f" Shows all {total} trials of the study, not only the {n} selected."
                        if whole else f" Shows the {n} trials selected, of {total}.")
        if name == "timeline" and results.sharded:
            title = "Shards"
        out.append((name, title, caption, fig))
    return out


def _star(view: Results, ranking: Ranking) -> str:
    """The learning curves' words for the best trial: its gold star, where it is drawn."""
    best = ranking.best
    if best is None:
        return ""
    if any(t is best for t in view.trials):
        return " The gold star is the best trial."
    return f" The best trial, {named(view, best)}, is not among them."


def make_plots(results: Results, ranking: Ranking) -> list[Plot]:
    return [Plot(name, title, caption, png_bytes(fig))
            for name, title, caption, fig in figures(results, ranking)]
