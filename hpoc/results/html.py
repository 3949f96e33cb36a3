"""The self-contained HTML report: one file, plots inlined as base64 PNG, no external
resource of any kind (a Content-Security-Policy in the page enforces it), so it opens from
a cluster's shared filesystem or an e-mail attachment without a server or internet."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import re
import shlex
from html import escape

from hpoc.results import palette
from hpoc.results.model import Results, Trial
from hpoc.results.plots import Plot, began
from hpoc.results.rank import Ranking, error_groups, label_counts, lines_differ, status_label
from hpoc.results.rank import failed as failed_trial
from hpoc.results.table import extended_said, fmt, is_number, render_best, render_pareto, rows
from hpoc.counts import plural

# The table's rows in sight, then more folded under them; past those the trials are only
# counted: a 200-shard study's 2,000 rows made a page of megabytes that nobody read.
TABLE_ROWS = 20
FOLDED_ROWS = 180
# Distinct errors listed (the most frequent first); the others are counted.
ERROR_ENTRIES = 20

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
       "script-src 'unsafe-inline'")

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       color: #1d1d1f; background: #fafafa; }
main { max-width: 1240px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; }
.meta { color: #555; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; }
.card b { display: block; font-size: 20px; }
.warn { background: #fff4e5; border: 1px solid #f0b35a; border-radius: 6px; padding: 8px 14px; }
pre { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px;
      overflow-x: auto; font-size: 12.5px; }
figure { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 16px 0;
         padding: 12px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #555; font-size: 13px; margin-top: 6px; }
table { border-collapse: collapse; background: #fff; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f0f0f0; cursor: pointer; user-select: none; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tablewrap { overflow-x: auto; max-height: 70vh; }
.s-error { font-weight: 600; }
.extended { background: #eef6fc; border: 1px solid #56B4E9; border-radius: 6px; padding: 8px 14px; }
.extended::first-letter { text-transform: uppercase; }
details > summary { cursor: pointer; margin: 8px 0; }
tr.best td { background: #fff8d6; }
tr.best td:nth-child(2)::after { content: "\\00a0★ best"; color: #6b5a00; }
.columns { display: flex; gap: 16px; flex-wrap: wrap; } .columns > div { flex: 1 1 380px; }
"""

# Click a header to sort by that column (numbers numerically, "-" last).
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var asc = th.dataset.asc !== "1"; th.dataset.asc = asc ? "1" : "0";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      if (x === "-" || y === "-") return (x === "-") - (y === "-");
      var nx = x.trim() === "" ? NaN : Number(x), ny = y.trim() === "" ? NaN : Number(y);
      var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def render(results: Results, ranking: Ranking, plots: list[Plot], version: str = "",
           target: str | None = None, rows_shown: int | None = TABLE_ROWS) -> str:
    """The page; `target` is the PATH the report was made of (the extended study's hint),
    `rows_shown` the table's rows in sight (None: every selected trial)."""
    title = f"hpoc report: {results.study}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}{palette.css()}</style></head><body><main>",
        f"<h1>{escape(title)}</h1>",
        _meta(results, version),
        _extended(results, target),
        _warnings(results, ranking),
        _cards(results, ranking),
        _best(results, ranking),
        _pareto(results, ranking),
        _plots(plots, results.over, selected=len(ranking.trials)),
        _table(results, ranking, rows_shown, target),
        _errors(ranking, target),
        f"</main><script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _meta(results: Results, version: str) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    items = [f"results: <code>{escape(str(results.root))}</code>"]
    if results.plan_hash:
        items.append(f"plan {escape(results.plan_hash[:19])}")
    if results.shards_said:
        items.append(results.shards_said)
    items += [escape(words) for words in results.ended]  # why trials of the budget never ran
    items.append(f"generated {now}" + (f" by hpoc {escape(version)}" if version else ""))
    return f'<p class="meta">{" · ".join(items)}</p>'


def _extended(results: Results, target: str | None) -> str:
    """The trials the plan added have not run: the table is not the whole study (status
    says `extended`). In `hpoc results`' words."""
    said = extended_said(results, target)
    return f'<p class="extended">{_code(said)}</p>' if said else ""


def _code(text: str) -> str:
    """Plain text whose `backquoted` commands are set as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


def _warnings(results: Results, ranking: Ranking) -> str:
    lines = list(results.warnings) + list(ranking.notes)
    if not lines:
        return ""
    body = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return f'<div class="warn"><b>Note</b><ul>{body}</ul></div>'


def _cards(results: Results, ranking: Ranking) -> str:
    cards = [("trials", str(len(results.trials)))]
    cards += [(label, str(n)) for label, n in label_counts(results.trials)]
    if ranking.best is not None:
        cards.append((f"best {ranking.metric}", fmt(ranking.value(ranking.best))))
    walls = [s.wall_s for s in results.shards if s.wall_s]
    if walls:
        # A summary times its own run: a resumed study's trials of earlier runs are not in it.
        starts = [t for t in map(began, results.trials) if t is not None]
        ends = [t.end_ts for t in results.trials if t.end_ts is not None]
        span = max(ends) - min(starts) if starts and ends else 0.0
        if span > max(walls) + 60:
            cards.append((f"wall time (last run{'s' * results.sharded})", _duration(max(walls))))
            cards.append(("first trial to last report", _duration(span)))
        else:
            cards.append(("wall time", _duration(max(walls))))
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{escape(v)}</b>{_status_key(k)}</div>' for k, v in cards) + "</div>"


def _status_key(label: str, said: str | None = None) -> str:
    """A status word (`said`: as a count reads it) with the plots' mark for it (the key to
    their colours); other words as they are."""
    said = label if said is None else said
    if label not in palette.STATUS_STYLE:
        return escape(said)
    return f'<span class="{palette.css_class(label)}">{escape(said)}</span>'


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}h {rest // 60:02d}m" if h else f"{rest // 60}m {rest % 60:02d}s"


def _best(results: Results, ranking: Ranking) -> str:
    text = render_best(results, ranking)
    if not text:
        return ""
    if ranking.best is None:
        return f"<h2>Best trial</h2><p>{escape(text)}</p>"
    head, _, rest = text.partition("\n\nconfig (JSON):\n")
    config_json, _, kv = rest.partition("\n\nconfig (key = value):\n")
    schedule = "\n".join(ln.strip() for ln in head.splitlines()[1:]
                         if ln.strip() and not ln.strip().startswith("directory:"))
    return (f"<h2>Best trial</h2><p>{escape(head.splitlines()[0])}</p>"
            + (f"<pre>{escape(schedule)}</pre>" if schedule else "") +
            '<div class="columns">'
            f"<div><p>Config as JSON:</p><pre>{escape(config_json)}</pre></div>"
            f"<div><p>As <code>key = value</code> lines, to paste into a spec:</p>"
            f"<pre>{escape(kv)}</pre></div></div>")


def _pareto(results: Results, ranking: Ranking) -> str:
    text = render_pareto(results, ranking)
    return f"<h2>Pareto front</h2><pre>{escape(text)}</pre>" if text else ""


def _plots(plots: list[Plot], over: bool = False, selected: int | None = None) -> str:
    if not plots:
        said = "no trial reported a metric" if over else "no trial has reported a metric yet"
        if selected == 0:
            said = "no trial is selected (--top, --status)"
        return f"<h2>Plots</h2><p>No plot: {said}.</p>"
    out = ["<h2>Plots</h2>"]
    for plot in plots:
        data = base64.b64encode(plot.png).decode("ascii")
        out.append(
            f'<figure id="plot-{escape(plot.name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{escape(plot.title)}"><figcaption><b>{escape(plot.title)}.</b> '
            f"{escape(plot.caption)}</figcaption></figure>")
    return "\n".join(out)


def _table(results: Results, ranking: Ranking, shown: int | None = TABLE_ROWS,
           target: str | None = None) -> str:
    """The best `shown` trials of the selection in sight, the next FOLDED_ROWS folded under
    them, the others counted by status (every one is in `hpoc results --all`, --csv)."""
    trials = ranking.trials
    shown = len(trials) if shown is None else shown
    listed = min(len(trials), shown + FOLDED_ROWS)
    header, body = rows(results, ranking, limit=listed)
    numeric = {i for i in range(len(header))
               if all(is_number(r[i]) for r in body) and i != header.index("trial")}
    selected = f" ({len(trials)} of {ranking.total})" if len(trials) < ranking.total else ""
    out = [f"<h2>Trials{selected}</h2>"]
    path = shlex.quote(target) if target else "PATH"
    if shown < len(trials):
        by = f" by {ranking.metric} ({ranking.scope} reported value)" if ranking.metric else ""
        out.append(f'<p class="meta">{shown} of {len(trials)} trials shown, best first{escape(by)}; '
                   "a click on a header sorts these rows only. "
                   f"<code>hpoc results {escape(path)} --all</code> lists every one; <code>--csv</code> "
                   "and <code>--json</code> give them all as data.</p>")
    out.append(_rows_table(results, ranking, header, body[:shown], trials[:shown], numeric))
    if listed > shown:
        first, last = shown + 1, listed
        out.append(f"<details><summary>the next {last - shown} trials (ranks {first}–{last})"
                   f"</summary>{_rows_table(results, ranking, header, body[shown:], trials[shown:listed], numeric)}"
                   "</details>")
    left = trials[listed:]
    if left:
        counts = ", ".join(f"{n} {_status_key(label, plural(n, label))}" for label, n in label_counts(left))
        out.append(f'<p class="meta">{len(left)} more not listed (ranks {listed + 1}–{len(trials)}): '
                   f"{counts}; <code>hpoc results {escape(path)} --all</code> lists them.</p>")
    return "\n".join(out)


def _rows_table(results: Results, ranking: Ranking, header: list[str], body: list[list[str]],
                trials: list[Trial], numeric: set[int]) -> str:
    status_col = header.index("status")
    out = ['<div class="tablewrap"><table class="sortable"><thead><tr>']
    out += [f'<th title="click to sort">{escape(h)}</th>' for h in header]
    out.append("</tr></thead><tbody>")
    for trial, row in zip(trials, body):
        cls = ' class="best"' if trial is ranking.best else ""
        cells = []
        for i, cell in enumerate(row):
            if i == status_col:
                cells.append(f'<td class="{palette.css_class(status_label(trial))}">{escape(cell)}</td>')
            else:
                cells.append(f'<td{" class=num" if i in numeric else ""}>{escape(cell)}</td>')
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def _errors(ranking: Ranking, target: str | None = None) -> str:
    failed = [t for t in ranking.trials if failed_trial(t)]  # the selection's, as the table's
    if not failed:
        return ""
    # One entry per distinct error, as `hpoc results` lists them: 500 trials that failed
    # alike made 500 copies of a traceback of kilobytes. The first trial's stands for them.
    groups = error_groups(failed)
    out = [f"<h2>Errors ({len(failed)})</h2>"]
    for trials in groups[:ERROR_ENTRIES]:
        first = trials[0]
        error = first.error or "failed"
        detail = first.error_text or first.error or "no message kept"
        config = escape(json.dumps(first.config, sort_keys=True, ensure_ascii=False))
        if len(trials) == 1:
            head, about = f"<code>{escape(first.trial_id)}</code>", f"config: <code>{config}</code>"
        else:
            ids = ", ".join(escape(t.trial_id) for t in trials)
            head = f"{len(trials)} trials" + (", alike but for numbers or ids" if lines_differ(trials) else "")
            about = (f"trials: <code>{ids}</code></p><p>traceback of <code>"
                     f"{escape(first.trial_id)}</code> (config: <code>{config}</code>); the others' "
                     "are in their trial directories")
        out.append(f"<details><summary>{head}: {escape(error)}</summary>"
                   f"<p>{about}</p><pre>{escape(detail)}</pre></details>")
    left = groups[ERROR_ENTRIES:]
    if left:
        path = shlex.quote(target) if target else "PATH"
        out.append(f'<p class="meta">{len(left)} more errors (of {sum(map(len, left))} trials): '
                   f"<code>hpoc results {escape(path)} --all</code> lists them.</p>")
    return "\n".join(out)
