"""Small server-rendered SVG pictures (no script, no library): a day timeline and day bars.

Each function returns SVG markup with a <title> and <desc> so screen readers get the gist;
colours come from CSS variables so the high-contrast theme applies to the charts too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

HOURS = 24
CELL_W = 16
PLOT_H = 140
BARS_W = 440  # the day bars' drawing width, whatever the number of days (a phone shrinks it little)
FONT = 19  # viewBox units: a phone shows the charts at about 3/4 of that
BIG_FONT = 26  # "Grands caractères": the charts' words grow with the page's
CHAR_W = 0.62  # a character's width for the font size (system-ui, generous)
HOUR_TICKS = range(0, HOURS + 1, 6)
GET_UP_LOW_H, GET_UP_HIGH_H = 4.0, 12.0
MIN_SLOTS = 7  # the day bars' plot is divided for at least a week


def text_width(text: str, font: float) -> float:
    """An upper estimate of `text`'s width at `font` (so that labels are given room)."""
    return len(text) * font * CHAR_W


def day_timeline(
    rooms: Mapping[str, Sequence[int]],
    labels: Mapping[str, str],
    title: str,
    now_hour: int | None,
    *,
    big: bool = False,
) -> str:
    """A heat strip per room: one cell per hour, darker for more activity. Each room's name
    sits on its own line above its strip, so that the cells take the whole width (a phone
    shows them, and the names, larger) and a long name is never clipped."""
    font = BIG_FONT if big else FONT
    names = sorted(rooms)
    pad = math.ceil(text_width("24 h", font) / 2) + 2  # room for the end ticks' halves
    label_h = round(font * 1.3)
    cell_h = round(font * 1.2)
    row_h = label_h + cell_h + 6
    axis_h = round(font * 1.4)
    widest = max([text_width(labels.get(n, n), font) for n in names] + [0.0])
    width = max(HOURS * CELL_W + 2 * pad, round(widest) + 4)
    height = axis_h + len(names) * row_h + 4
    peak = max([max(v) for v in rooms.values() if v] + [1])
    out = [
        f'<svg class="chart timeline" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet" '
        f'font-size="{font}">',
        f"<title>{escape(title)}</title>",
    ]
    for h in HOUR_TICKS:
        x = pad + h * CELL_W
        out.append(f'<text class="axis" x="{x}" y="{axis_h - 6}" text-anchor="middle">{h} h</text>')
    for i, name in enumerate(names):
        y = axis_h + i * row_h
        shown = escape(labels.get(name, name))
        out.append(f'<text class="label" x="2" y="{y + label_h - 5}">{shown}</text>')
        counts = list(rooms[name])[:HOURS]
        for h, n in enumerate(counts):
            x = pad + h * CELL_W
            level = 0.0 if n <= 0 else 0.25 + 0.75 * n / peak
            out.append(
                f'<rect class="cell" x="{x}" y="{y + label_h}" width="{CELL_W - 2}" '
                f'height="{cell_h}" fill-opacity="{level:.2f}">'
                f"<title>{shown} {h} h : {n}</title></rect>"
            )
    if now_hour is not None:
        x = pad + (now_hour + 1) * CELL_W - 1
        out.append(f'<line class="now" x1="{x}" y1="{axis_h}" x2="{x}" y2="{height - 2}"/>')
    out.append("</svg>")
    return "".join(out)


def day_bars(
    days: Sequence[tuple[str, float, float | None]],
    title: str,
    dot_label: str = "",
    *,
    big: bool = False,
    activity_label: str = "",
) -> str:
    """Bars of one value per day (activity, left axis) and optional dots (the get-up hour,
    4 h to 12 h, right axis). Date labels are spaced so that they never overlap."""
    font = BIG_FONT if big else FONT
    n = max(len(days), 1)
    peak = max([v for _d, v, _t in days] + [1.0])
    left = round(text_width(f"{peak:.0f}", font) + 12)
    right = round(text_width("12 h", font) + 12)
    top = round(font * 1.6)
    plot_w = BARS_W - left - right
    slot = plot_w / max(n, MIN_SLOTS)  # a first day is one bar, not a wall
    bar_w = max(2.0, slot * 0.7)
    base = top + PLOT_H
    height = base + round(font * 1.9)
    label_every = max(1, math.ceil((text_width("00/00", font) + font * 0.6) / slot))
    out = [
        f'<svg class="chart bars" role="img" viewBox="0 0 {BARS_W} {height}" '
        f'width="{BARS_W}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet" '
        f'font-size="{font}">',
        f"<title>{escape(title)}</title>",
        f'<line class="axisline" x1="{left - 4}" y1="{base}" x2="{BARS_W - right + 4}" '
        f'y2="{base}"/>',
        f'<line class="axisline" x1="{left - 4}" y1="{top}" x2="{left - 4}" y2="{base}"/>',
        f'<text class="axis" x="{left - 8}" y="{top + font * 0.35:.0f}" '
        f'text-anchor="end">{peak:.0f}</text>',
        f'<text class="axis" x="{left - 8}" y="{base - font * 0.3:.0f}" text-anchor="end">0</text>',
    ]
    if activity_label:
        out.append(f"<desc>{escape(activity_label)}</desc>")
    has_dots = any(hour is not None for _d, _v, hour in days)
    if has_dots:
        out.append(
            f'<line class="axisline" x1="{BARS_W - right + 4}" y1="{top}" '
            f'x2="{BARS_W - right + 4}" y2="{base}"/>'
        )
        for tick in (GET_UP_LOW_H, 8.0, GET_UP_HIGH_H):
            y = base - PLOT_H * (tick - GET_UP_LOW_H) / (GET_UP_HIGH_H - GET_UP_LOW_H)
            # baselines kept above the bottom line, clear of the dates below it
            out.append(
                f'<text class="axis dotaxis" x="{BARS_W - right + 10}" '
                f'y="{min(y + font * 0.35, base - font * 0.3):.0f}">{tick:.0f} h</text>'
            )
    dots: list[str] = []
    last = n - 1
    for i, (day, value, hour) in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        mid = x + bar_w / 2
        h = PLOT_H * value / peak
        out.append(
            f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" '
            f'width="{bar_w:.1f}" height="{h:.1f}">'
            f"<title>{escape(short_day(day))} : {value:.0f}</title></rect>"
        )
        # from the newest day backwards, so that the last day always has its date
        if (last - i) % label_every == 0:
            out.append(
                f'<text class="axis" x="{mid:.0f}" y="{base + font * 1.3:.0f}" '
                f'text-anchor="middle">{escape(short_day(day))}</text>'
            )
        if hour is not None:
            frac = min(max((hour - GET_UP_LOW_H) / (GET_UP_HIGH_H - GET_UP_LOW_H), 0.0), 1.0)
            y = base - PLOT_H * frac
            hh = int(hour)
            mm = round((hour - hh) * 60) % 60
            dots.append(
                f'<circle class="dot" cx="{mid:.1f}" cy="{y:.1f}" r="{font * 0.3:.1f}">'
                f"<title>{escape(dot_label)} {hh:02d}:{mm:02d}</title></circle>"
            )
    out.extend(dots)
    out.append("</svg>")
    return "".join(out)


def daily_bars(
    days: Sequence[Mapping[str, Any]],
    title: str,
    dot_label: str = "",
    *,
    big: bool = False,
    activity_label: str = "",
) -> str:
    """`day_bars` of `veille.aggregate.daily/1` bodies: activity per day, get-up hour as dots."""
    return day_bars(
        [(str(d.get("date", "")), daily_activity(d), hhmm_hours(d.get("get_up"))) for d in days],
        title,
        dot_label,
        big=big,
        activity_label=activity_label,
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
