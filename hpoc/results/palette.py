"""How the report marks each trial status, in its plots and its HTML alike.

Colours are Okabe and Ito's palette (distinct under the common colour-vision deficiencies),
with two greys for the statuses that say least. Colour is never the only cue: every status
also has a marker shape (plots) and a glyph (the HTML, before the status word), the same shape.
"""

from __future__ import annotations

# Okabe & Ito, "Color Universal Design" (2008).
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
             "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00",
             "reddish purple": "#CC79A7", "black": "#000000"}
GREYS = ("#999999", "#5F5F5F")

# status label (rank.status_label) -> (colour, matplotlib marker, the same shape as a glyph)
STATUS_STYLE = {
    "completed": (OKABE_ITO["blue"], "o", "●"),
    "stopped early": (GREYS[0], "v", "▼"),
    "time limit": (OKABE_ITO["reddish purple"], "s", "■"),
    "time budget": (OKABE_ITO["orange"], "D", "◆"),
    "no reports": (GREYS[1], "<", "◀"),
    "error": (OKABE_ITO["vermillion"], "X", "✖"),
    "running": (OKABE_ITO["sky blue"], ">", "▶"),
    "paused": (OKABE_ITO["bluish green"], "P", "✚"),
    "pending": (OKABE_ITO["yellow"], "^", "▲"),
}
STATUS_COLORS = {label: style[0] for label, style in STATUS_STYLE.items()}
STATUS_MARKERS = {label: style[1] for label, style in STATUS_STYLE.items()}
STATUS_GLYPHS = {label: style[2] for label, style in STATUS_STYLE.items()}
ERROR = STATUS_COLORS["error"]
UNKNOWN = ("#333333", "o")  # a status hpoc does not know (a newer Ray's)


def color(label: str) -> str:
    return STATUS_COLORS.get(label, UNKNOWN[0])


def marker(label: str) -> str:
    return STATUS_MARKERS.get(label, UNKNOWN[1])


def css_class(label: str) -> str:
    return "s-" + label.replace(" ", "-")


def css() -> str:
    """The HTML's status rules: the plots' colour and shape before the status word (a
    pseudo-element: the word stays the cell's text, which the table sorts by)."""
    return "\n".join(f'.{css_class(label)}::before {{ content: "{glyph}\\00a0"; color: {colour}; }}'
                     for label, (colour, _, glyph) in STATUS_STYLE.items())
