"""Bar charts as SVG, drawn on the server: no JavaScript and no chart library in the browser.

A chart is geometry (bars with their labels and values) that the template writes out as SVG,
with a title and a table of the same figures for screen readers and for copying.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

WIDTH = 480
BAR_HEIGHT = 22  # horizontal bars
PLOT_HEIGHT = 180  # vertical bars
LABEL_WIDTH = 130
TOP = 10
BOTTOM = 40


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    label_x: float
    label_y: float
    value_x: float
    value_y: float
    series: int = 0


@dataclass
class Chart:
    id: str
    title: str
    unit: str
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    rows: list[tuple[str, list[str]]] = field(default_factory=list)  # label, values (the table)
    columns: list[str] = field(default_factory=list)
    legend: list[str] = field(default_factory=list)
    axis: tuple[float, float, float, float] | None = None


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def count(value: float | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def horizontal(
    id: str,
    title: str,
    points: Sequence[tuple[str, float | None]],
    fmt: Callable[[float | None], str],
    unit: str,
    top: float | None = None,
) -> Chart:
    """One bar a label, longest value widest; `top` fixes the scale (1.0 for rates)."""
    scale = top or max((value or 0 for _, value in points), default=0) or 1
    plot = WIDTH - LABEL_WIDTH - 70
    chart = Chart(id, title, unit, WIDTH, TOP + BAR_HEIGHT * len(points) + 10, columns=[unit])
    for index, (label, value) in enumerate(points):
        y = TOP + index * BAR_HEIGHT
        width = plot * (value or 0) / scale
        chart.bars.append(
            Bar(
                LABEL_WIDTH,
                y + 3,
                width,
                BAR_HEIGHT - 6,
                _short(label, 20),
                fmt(value),
                LABEL_WIDTH - 6,
                y + BAR_HEIGHT / 2 + 4,
                LABEL_WIDTH + width + 4,
                y + BAR_HEIGHT / 2 + 4,
            )
        )
        chart.rows.append((label, [fmt(value)]))
    chart.axis = (LABEL_WIDTH, TOP, LABEL_WIDTH, TOP + BAR_HEIGHT * len(points))
    return chart


def vertical(
    id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    fmt: Callable[[float | None], str],
    unit: str,
    top: float | None = None,
) -> Chart:
    """Bars over time: one group a label, one bar a series in each group."""
    values = [value or 0 for _, points in series for value in points]
    scale = top or max(values, default=0) or 1
    slot = (WIDTH - 20) / max(len(labels), 1)
    width = max(2.0, slot * 0.8 / max(len(series), 1))
    chart = Chart(
        id,
        title,
        unit,
        WIDTH,
        TOP + PLOT_HEIGHT + BOTTOM,
        columns=[name for name, _ in series],
        legend=[name for name, _ in series] if len(series) > 1 else [],
    )
    base = TOP + PLOT_HEIGHT
    every = max(1, len(labels) // 10)  # at most about ten labels under the axis
    for index, label in enumerate(labels):
        for number, (_, points) in enumerate(series):
            value = points[index]
            height = PLOT_HEIGHT * (value or 0) / scale
            x = 10 + index * slot + slot * 0.1 + number * width
            chart.bars.append(
                Bar(
                    x,
                    base - height,
                    width,
                    height,
                    label[5:] if number == 0 and index % every == 0 else "",
                    fmt(value),
                    x + width / 2,
                    base + 16,
                    x + width / 2,
                    base - height - 3,
                    number,
                )
            )
        chart.rows.append((label, [fmt(points[index]) for _, points in series]))
    chart.axis = (10, base, WIDTH - 10, base)
    return chart


def _short(text: Any, length: int) -> str:
    text = "(none)" if text is None else str(text)
    return text if len(text) <= length else text[: length - 1] + "…"
