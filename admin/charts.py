"""Server-rendered SVG charts: bars or lines of labelled series, with no JavaScript and no network.

One function, :func:`chart`, draws any of paydesk's charts (contributions per day or month,
failures per day, per hour, ...)::

    chart("Completed contributions per day", labels=["01 Nov", ...],
          series=[Series("Completed", [3, 0, 5, ...])], kind="bar")

It returns markup for a ``<figure>``: the SVG (``role="img"`` with a ``<title>`` and a
``<desc>`` that states the figures in words), a legend, and the same numbers as a table in a
``<details>`` element, so the chart is readable without seeing it. Colours and sizes come from
``app.css`` (classes ``chart``, ``series-N``): the page's CSP allows no inline styles.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_ids = itertools.count(1)


@dataclass
class Series:
    name: str
    values: Sequence[float]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``value`` (an axis maximum that reads well)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power  # pragma: no cover - the loop always returns


def _fmt(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


def _summary(labels: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str]) -> str:
    parts = []
    for s in series:
        total = sum(s.values)
        peak = max(range(len(s.values)), key=lambda i: s.values[i]) if s.values else None
        text = f"{s.name}: {fmt(total)} in all"
        if peak is not None and s.values[peak] > 0:
            text += f", most on {labels[peak]} ({fmt(s.values[peak])})"
        parts.append(text)
    return (
        f"{len(labels)} periods from {labels[0]} to {labels[-1]}. " + "; ".join(parts) + "."
        if labels
        else "No data."
    )


def chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    kind: str = "bar",
    desc: str | None = None,
    width: int = 480,
    height: int = 200,
    label_every: int | None = None,
    value_format: Callable[[float], str] = _fmt,
    table_caption: str | None = None,
) -> Markup:
    """A bar chart (series side by side in each period) or a line chart of ``series`` over ``labels``."""
    if kind not in ("bar", "line"):
        raise ValueError("kind is bar or line")
    if any(len(s.values) != len(labels) for s in series):
        raise ValueError("every series needs one value per label")
    uid = f"chart{next(_ids)}"
    left, right, top, bottom = 44, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = nice_ceiling(max([v for s in series for v in s.values] or [0]))
    n = max(len(labels), 1)
    slot = plot_w / n

    def y(v: float) -> float:
        return top + plot_h - (v / top_value) * plot_h

    out = [
        f'<figure class="chart chart-{kind}" aria-labelledby="{uid}-cap">',
        f'<figcaption id="{uid}-cap" class="chart-title">{escape(title)}</figcaption>',
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-labelledby="{uid}-t {uid}-d" '
        f'preserveAspectRatio="xMidYMid meet" focusable="false">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(desc or _summary(labels, series, value_format))}</desc>',
    ]
    whole = all(float(v).is_integer() for s in series for v in s.values)
    for frac in (0, 0.5, 1):  # grid lines and y labels at 0, half and the top (no half a count)
        tick = top_value * frac
        if whole and not float(tick).is_integer():
            continue
        gy = y(tick)
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{gy:.1f}" y2="{gy:.1f}"/>')
        out.append(
            f'<text class="axis" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{escape(value_format(tick))}</text>"
        )
    every = label_every or max(1, math.ceil(n / 8))
    for i, label in enumerate(labels):
        if i % every == 0:
            out.append(
                f'<text class="axis" x="{left + slot * (i + 0.5):.1f}" y="{height - 8}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    for k, s in enumerate(series):
        if kind == "bar":
            bar_w = max(1.0, slot * 0.8 / max(len(series), 1))
            for i, v in enumerate(s.values):
                x = left + slot * i + slot * 0.1 + bar_w * k
                out.append(
                    f'<rect class="series-{k}" x="{x:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" '
                    f'height="{max(0.0, top + plot_h - y(v)):.1f}"><title>{escape(labels[i])}: '
                    f"{escape(s.name)} {escape(value_format(v))}</title></rect>"
                )
        else:
            points = " ".join(f"{left + slot * (i + 0.5):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
            out.append(f'<polyline class="series-{k}" fill="none" points="{points}"/>')
            for i, v in enumerate(s.values):
                if v:
                    out.append(
                        f'<circle class="series-{k}" cx="{left + slot * (i + 0.5):.1f}" cy="{y(v):.1f}" r="2.5">'
                        f"<title>{escape(labels[i])}: {escape(s.name)} {escape(value_format(v))}</title></circle>"
                    )
    out.append(
        f'<line class="baseline" x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}"/>'
    )
    out.append("</svg>")
    out.append(
        '<ul class="chart-legend">'
        + "".join(
            f'<li><span class="swatch series-{k}" aria-hidden="true"></span>{escape(s.name)}</li>'
            for k, s in enumerate(series)
        )
        + "</ul>"
    )
    out.append(_table(uid, table_caption or title, labels, series, value_format))
    out.append("</figure>")
    return Markup("".join(out))


def _table(
    uid: str, caption: str, labels: Sequence[str], series: Sequence[Series], fmt: Callable[[float], str]
) -> str:
    head = "".join(f'<th scope="col" class="num">{escape(s.name)}</th>' for s in series)
    rows = "".join(
        f'<tr><th scope="row">{escape(label)}</th>'
        + "".join(f'<td class="num">{escape(fmt(s.values[i]))}</td>' for s in series)
        + "</tr>"
        for i, label in enumerate(labels)
    )
    return (
        f'<details class="chart-data"><summary>Show the numbers</summary>'
        f'<table class="table" id="{uid}-table"><caption class="visually-hidden">{escape(caption)}</caption>'
        f'<thead><tr><th scope="col">Period</th>{head}</tr></thead><tbody>{rows}</tbody></table></details>'
    )
