"""Charts as inline SVG, drawn on the server: no script, no library, each bar a link to its rows.

A bar chart is enough for spend by day (people compare heights, not read values); every bar carries
a ``<title>`` tooltip with the exact value and links to the chargeback rows behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from .render import usd


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its axis label, value, and where clicking it leads."""

    label: str
    value: float
    href: str
    tooltip: str = ""
    muted: bool = False
    """Drawn lighter (a forecast, a day not over yet)."""


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    if value < 1:
        power = 1.0
        while power / 10 >= value:
            power /= 10
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def bar_chart(bars: Sequence[Bar], *, width: int = 760, height: int = 180, label_every: int = 1) -> Markup:
    """An SVG bar chart of ``bars`` with a y-axis maximum and x labels every ``label_every`` bars."""
    left, bottom, top = 56, 22, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    top_value = _nice_max(max((b.value for b in bars), default=0.0))
    slot = plot_w / max(len(bars), 1)
    bar_w = max(slot * 0.72, 1.0)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="spend by day" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{left}" y1="{top}" x2="{width - 4}" y2="{top}" class="grid"/>',
        f'<line x1="{left}" y1="{top + plot_h / 2:.1f}" x2="{width - 4}" y2="{top + plot_h / 2:.1f}" class="grid"/>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" class="axis"/>',
        f'<text x="{left - 6}" y="{top + 4}" class="ylabel">{escape(usd(top_value))}</text>',
        f'<text x="{left - 6}" y="{top + plot_h / 2 + 4:.1f}" class="ylabel">{escape(usd(top_value / 2))}</text>',
        f'<text x="{left - 6}" y="{top + plot_h + 4}" class="ylabel">$0</text>',
    ]
    for i, bar in enumerate(bars):
        h = plot_h * (bar.value / top_value) if top_value else 0
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        tip = escape(bar.tooltip or f"{bar.label}: {usd(bar.value)}")
        cls = "bar muted" if bar.muted else "bar"
        parts.append(
            f'<a href="{escape(bar.href)}"><rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
            f'height="{max(h, 0.5):.1f}" class="{cls}"><title>{tip}</title></rect></a>'
        )
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 6}" class="xlabel">{escape(bar.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of a stacked bar: its share of the whole (0 to 1), its kind (a CSS class), its link."""

    share: float
    kind: str
    href: str
    tooltip: str


def stacked_bar(segments: Sequence[Segment], *, width: int = 420, height: int = 16) -> Markup:
    """A horizontal bar split into ``segments`` left to right (shares of one whole, e.g. a source mix)."""
    parts = [
        f'<svg class="stack" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="share by source" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="0" y="0" width="{width}" height="{height}" class="empty"/>',
    ]
    x = 0.0
    for seg in segments:
        w = width * min(max(seg.share, 0.0), 1.0)
        if w <= 0:
            continue  # a line with no share (calls only, no cost) has nothing to draw
        parts.append(
            f'<a href="{escape(seg.href)}"><rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" '
            f'class="seg {escape(seg.kind)}"><title>{escape(seg.tooltip)}</title></rect></a>'
        )
        x += w
    parts.append("</svg>")
    return Markup("".join(parts))
