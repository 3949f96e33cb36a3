"""Comments and blank lines put back on the AST, so that `hpoc fmt` can write them again.

The lexer collects comments as (line, column, text). Each is kept above the item after
it, after the item that ends on its line, or at the end of the block it is in.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hpoc.dsl import ast as A


class _Comments:
    """The comments in line order, taken by the items as they are reached."""

    def __init__(self, comments: list[tuple[int, int, str]], blank: set[int]):
        self.items = sorted(comments)
        self.i = 0
        self.blank = blank

    def before(self, line: int, item: bool = False) -> tuple[str, ...]:
        """The comments above `line`; a blank line between two of them, or after the last
        before an `item`, is kept as "" (a header set apart from the study stays so)."""
        out: list[str] = []
        last = None
        while self.i < len(self.items) and self.items[self.i][0] < line:
            n = self.items[self.i][0]
            if last is not None and self._gap(last, n):
                out.append("")
            out.append(self.items[self.i][2])
            last = n
            self.i += 1
        if item and last is not None and self._gap(last, line):
            out.append("")
        return tuple(out)

    def _gap(self, after: int, before: int) -> bool:
        return any(n in self.blank for n in range(after + 1, before))

    def on(self, line: int) -> str | None:
        if self.i < len(self.items) and self.items[self.i][0] == line:
            self.i += 1
            return self.items[self.i - 1][2]
        return None


def attach_comments(study: A.Study, comments: list[tuple[int, int, str]], text: str) -> A.Study:
    # Blank lines the author left between items of a block (groups of settings) are kept.
    lines = text.split("\n")
    blank = {n for n, line in enumerate(lines, 1) if not line.strip()}
    cs = _Comments(comments, blank)
    items = _attach_items(study.items, cs, blank, None, lines)
    return replace(study, items=items, end_comments=cs.before(10**12))


def _verbatim(item: A.Item, lines: list[str]) -> tuple[str, ...] | None:
    """A setting's value as written, its lines after the first re-indented relative to the
    setting's own line (so `hpoc fmt` can move it and stay idempotent)."""
    value = getattr(item, "value", None)
    sp = value.span if isinstance(item, A.Setting) and value is not None else None
    if sp is None or item.span is None or sp.end_line == sp.line:
        return None
    base = len(lines[item.span.line - 1]) - len(lines[item.span.line - 1].lstrip())
    out = [lines[sp.line - 1][sp.col - 1:].rstrip()]
    for n in range(sp.line + 1, sp.end_line + 1):
        line = lines[n - 1][: sp.end_col - 1] if n == sp.end_line else lines[n - 1].rstrip()
        indent = len(line) - len(line.lstrip())
        out.append(" " * max(0, indent - base) + line.lstrip())
    return tuple(out)


def _starts_on(items: Any, line: int) -> bool:
    """Whether the first of `items` (items or goals) starts on `line`."""
    return bool(items) and items[0].span is not None and items[0].span.line == line


def _attach_items(items: tuple[A.Item, ...], cs: _Comments, blank: set[int],
                  opened: int | None, lines: list[str], closed: int | None = None) -> tuple[A.Item, ...]:
    out: list[A.Item] = []
    previous = opened  # last line of the item before (or of the block's `{`); None at top level
    for k, item in enumerate(items):
        span = item.span
        if span is None:
            out.append(item)
            continue
        # A comment ends its line: it is about the last item there (`x = 1, y = 2  # on y`),
        # or follows the `}` of the block that ends there.
        owns_end = not _starts_on(items[k + 1:], span.end_line) and span.end_line != closed
        top = cs.items[cs.i][0] if cs.i < len(cs.items) and cs.items[cs.i][0] < span.line else span.line
        gap = previous is not None and previous != opened and any(n in blank for n in range(previous + 1, top))
        lead = cs.before(span.line, item=True)
        body = getattr(item, "body", None)
        if isinstance(item, (A.Block, A.IfBlock)) and body is not None:
            # A comment on the line of `}` follows it (nothing can follow a comment).
            one_line = span.end_line == span.line  # `trials { ... }  # note`: after the `}`
            trailing = None if one_line or _starts_on(body, span.line) else cs.on(span.line)
            new_body = _attach_items(body, cs, blank, span.line, lines, span.end_line)
            end = cs.before(span.end_line)
            out.append(replace(item, comments=lead, trailing=trailing, body=new_body, end_comments=end,
                               closing=cs.on(span.end_line) if owns_end else None,
                               blank_before=gap))
        elif isinstance(item, A.Objective) and item.braced:
            one_line = span.end_line == span.line
            trailing = None if one_line or _starts_on(item.goals, span.line) else cs.on(span.line)
            goals = []
            for j, g in enumerate(item.goals):
                if g.span is None or one_line:
                    goals.append(g)
                    continue
                last = not _starts_on(item.goals[j + 1:], g.span.end_line) and g.span.end_line != span.end_line
                goals.append(replace(g, comments=cs.before(g.span.line, item=True),
                                     trailing=cs.on(g.span.end_line) if last else None))
            end = cs.before(span.end_line)
            out.append(replace(item, comments=lead, trailing=trailing, goals=tuple(goals), end_comments=end,
                               closing=cs.on(span.end_line) if owns_end else None,
                               blank_before=gap))
        else:
            inner = cs.before(span.end_line)  # comments inside a multi-line value
            trailing = cs.on(span.end_line) if owns_end else None
            verbatim = _verbatim(item, lines) if inner else None
            if verbatim is None:  # nowhere to keep them but above the item
                out.append(replace(item, comments=lead + inner, trailing=trailing, blank_before=gap))
            else:
                out.append(replace(item, comments=lead, trailing=trailing, blank_before=gap, verbatim=verbatim))
        previous = span.end_line
    return tuple(out)
