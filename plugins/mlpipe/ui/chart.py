"""A small inline SVG line chart of a metric across model versions (no JavaScript, no external assets)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_Y = 520, 180, 48, 16, 22
COLORS = ("#1f6feb", "#8c959f")


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def trend_svg(versions: Sequence[int], series: Sequence[tuple[str, Sequence[float | None]]],
              highlight: int | None = None, title: str = "") -> str:
    """An SVG chart: one line per ``(label, values)`` in ``series`` over ``versions`` (oldest first).

    Missing values leave a gap in their line; ``highlight`` (e.g. the champion) gets a ring.
    Returns the SVG markup (every text in it escaped), or an empty string with fewer than one value.
    """
    values = [v for _, line in series for v in line if v is not None]
    if not versions or not values:
        return ""
    smallest, largest = min(values), max(values)
    low, high = (smallest - 0.01, largest + 0.01) if largest - smallest < 1e-9 else (smallest, largest)
    span = high - low
    low, high = low - 0.08 * span, high + 0.08 * span  # a margin, so no point sits on the frame
    inner_w, inner_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - 2 * PAD_Y

    def x(index: int) -> float:
        return PAD_LEFT + (inner_w * index / (len(versions) - 1) if len(versions) > 1 else inner_w / 2)

    def y(value: float) -> float:
        return PAD_Y + inner_h * (high - value) / (high - low)

    parts = [f'<svg class="trend" role="img" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}"><title>{escape(title)}</title>',
             f'<line x1="{PAD_LEFT}" y1="{PAD_Y}" x2="{PAD_LEFT}" y2="{HEIGHT - PAD_Y}" stroke="#d0d7de"/>',
             f'<line x1="{PAD_LEFT}" y1="{HEIGHT - PAD_Y}" x2="{WIDTH - PAD_RIGHT}" y2="{HEIGHT - PAD_Y}" '
             'stroke="#d0d7de"/>']
    for value in sorted({largest, smallest}, reverse=True):
        parts.append(f'<text x="{PAD_LEFT - 4}" y="{y(value) + 4:.1f}" text-anchor="end" font-size="10">'
                     f'{_fmt(value)}</text>')
    for index, version in enumerate(versions):
        parts.append(f'<text x="{x(index):.1f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="10">'
                     f'v{int(version)}</text>')
    for (label, line), color in zip(series, COLORS * len(series), strict=False):
        segments, current = [], []
        for index, value in enumerate(line):
            if value is None:
                segments, current = [*segments, current] if current else segments, []
                continue
            current.append(f"{x(index):.1f},{y(value):.1f}")
        segments = [*segments, current] if current else segments
        for points in segments:
            parts.append(f'<polyline class="series" data-series="{escape(label)}" fill="none" stroke="{color}" '
                         f'stroke-width="2" points="{" ".join(points)}"/>')
        for index, value in enumerate(line):
            if value is None:
                continue
            ring = int(versions[index]) == highlight
            parts.append(f'<circle cx="{x(index):.1f}" cy="{y(value):.1f}" r="{5 if ring else 3}" '
                         f'fill="{"#fff" if ring else color}" stroke="{color}" stroke-width="2">'
                         f'<title>{escape(label)} v{int(versions[index])}: {_fmt(value)}</title></circle>')
    legend_x = PAD_LEFT + 6
    for (label, _), color in zip(series, COLORS * len(series), strict=False):
        parts.append(f'<rect x="{legend_x}" y="6" width="10" height="3" fill="{color}"/>'
                     f'<text x="{legend_x + 14}" y="11" font-size="10">{escape(label)}</text>')
        legend_x += 14 + 7 * len(label) + 16
    parts.append("</svg>")
    return "".join(parts)
