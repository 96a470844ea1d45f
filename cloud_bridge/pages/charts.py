"""Small server-rendered SVG pictures (no script, no library): a day timeline and day bars.

Each function returns SVG markup with a <title> and <desc> so screen readers get the gist;
colours come from CSS variables so the high-contrast theme applies to the charts too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

HOURS = 24
ROW_H = 40
LABEL_W = 96
CELL_W = 16
BAR_W = 22
PLOT_H = 140


def day_timeline(
    rooms: Mapping[str, Sequence[int]], labels: Mapping[str, str], title: str, now_hour: int | None
) -> str:
    """A heat strip per room: one cell per hour, darker for more activity."""
    names = sorted(rooms)
    width = LABEL_W + HOURS * CELL_W + 4
    height = (len(names) + 1) * ROW_H + 6
    peak = max([max(v) for v in rooms.values() if v] + [1])
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet" '
        f'font-size="17">',
        f"<title>{escape(title)}</title>",
    ]
    for h in range(0, HOURS + 1, 6):
        x = LABEL_W + h * CELL_W
        out.append(f'<text class="axis" x="{x}" y="{ROW_H - 8}" text-anchor="middle">{h}h</text>')
    for i, name in enumerate(names):
        y = (i + 1) * ROW_H
        out.append(
            f'<text class="label" x="{LABEL_W - 6}" y="{y + ROW_H * 0.65:.0f}" '
            f'text-anchor="end">{escape(labels.get(name, name))}</text>'
        )
        counts = list(rooms[name])[:HOURS]
        for h, n in enumerate(counts):
            x = LABEL_W + h * CELL_W
            level = 0.0 if n <= 0 else 0.25 + 0.75 * n / peak
            out.append(
                f'<rect class="cell" x="{x}" y="{y + 2}" width="{CELL_W - 2}" height="{ROW_H - 4}" '
                f'fill-opacity="{level:.2f}">'
                f"<title>{escape(labels.get(name, name))} {h}h: {n}</title></rect>"
            )
    if now_hour is not None:
        x = LABEL_W + (now_hour + 1) * CELL_W - 1
        out.append(f'<line class="now" x1="{x}" y1="{ROW_H}" x2="{x}" y2="{height - 2}"/>')
    out.append("</svg>")
    return "".join(out)


def day_bars(
    days: Sequence[tuple[str, float, float | None]], title: str, dot_label: str = ""
) -> str:
    """Bars of one value per day (e.g. activity) and optional dots (e.g. get-up hour, 4..12 h)."""
    n = max(len(days), 1)
    width = 40 + n * BAR_W + 10
    height = PLOT_H + 40
    peak = max([v for _d, v, _t in days] + [1.0])
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet" '
        f'font-size="15">',
        f"<title>{escape(title)}</title>",
        f'<line class="axisline" x1="38" y1="{PLOT_H + 4}" x2="{width - 6}" y2="{PLOT_H + 4}"/>',
        f'<text class="axis" x="34" y="14" text-anchor="end">{peak:.0f}</text>',
        f'<text class="axis" x="34" y="{PLOT_H + 4}" text-anchor="end">0</text>',
    ]
    dots: list[str] = []
    for i, (day, value, hour) in enumerate(days):
        x = 40 + i * BAR_W
        h = PLOT_H * value / peak
        out.append(
            f'<rect class="bar" x="{x}" y="{PLOT_H + 4 - h:.1f}" '
            f'width="{BAR_W - 4}" height="{h:.1f}">'
            f"<title>{escape(day)}: {value:.0f}</title></rect>"
        )
        if i % max(1, n // 7) == 0 or i == n - 1:
            out.append(
                f'<text class="axis" x="{x + (BAR_W - 4) / 2:.0f}" y="{PLOT_H + 22}" '
                f'text-anchor="middle">{escape(short_day(day))}</text>'
            )
        if hour is not None:
            # 4 h at the bottom, 12 h at the top
            frac = min(max((hour - 4.0) / 8.0, 0.0), 1.0)
            y = PLOT_H + 4 - PLOT_H * frac
            hh = int(hour)
            mm = round((hour - hh) * 60) % 60
            dots.append(
                f'<circle class="dot" cx="{x + (BAR_W - 4) / 2:.1f}" cy="{y:.1f}" r="4">'
                f"<title>{escape(dot_label)} {hh:02d}:{mm:02d}</title></circle>"
            )
    out.extend(dots)
    out.append("</svg>")
    return "".join(out)


def daily_bars(days: Sequence[Mapping[str, Any]], title: str, dot_label: str = "") -> str:
    """`day_bars` of `veille.aggregate.daily/1` bodies: activity per day, get-up hour as dots."""
    return day_bars(
        [(str(d.get("date", "")), daily_activity(d), hhmm_hours(d.get("get_up"))) for d in days],
        title,
        dot_label,
    )


def short_day(day: str) -> str:
    """`2024-03-14` -> `14/03`."""
    return f"{day[8:10]}/{day[5:7]}" if len(day) == 10 else day


def hhmm_hours(text: str | None) -> float | None:
    """`07:30` -> 7.5; None for None or malformed."""
    if not text or len(text) != 5 or text[2] != ":":
        return None
    try:
        return int(text[:2]) + int(text[3:]) / 60.0
    except ValueError:
        return None


def daily_activity(summary: Mapping[str, object]) -> float:
    """Total activity of a `veille.aggregate.daily/1` body over its rooms."""
    rooms = summary.get("rooms")
    if not isinstance(rooms, Mapping):
        return 0.0
    total = 0.0
    for stats in rooms.values():
        if isinstance(stats, Mapping):
            value = stats.get("activity", 0)
            if isinstance(value, int | float) and not isinstance(value, bool):
                total += float(value)
    return total
