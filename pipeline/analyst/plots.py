"""The notebooks' main figures, drawn so they read without the code next to them.

Every figure has a title, labelled axes and a legend; places and thresholds that land on the
same spot are merged into one label or fanned out, never printed on top of each other. The
notebooks call these; ``pipeline.analyst.screenshots`` exports what they drew.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator
from matplotlib.transforms import Bbox, offset_copy

from pipeline.analyst import basemap

HOLDER_KINDS = ("issued", "refreshed", "used", "session_started")
"""Events where the token or session holder was on the network named: an issue, a refresh, a
use, a login. A disablement or revocation is someone else's action (an admin, the IdP), from
their own address, so it never stands for where a token was used from."""


# -- 02: where a lineage was used from ----------------------------------------------------------
def holder_events(timeline: pd.DataFrame) -> pd.DataFrame:
    """The located events of ``timeline`` done by the token or session holder (``HOLDER_KINDS``)."""
    return timeline[timeline["kind"].isin(HOLDER_KINDS)].dropna(subset=["lat", "lon"])


def evidence_on_map(located: pd.DataFrame, evidence: pd.DataFrame) -> pd.DataFrame:
    """The alert's evidence that belongs on the map: its events done by the holder of the
    alert's token or session. An admin's disablement in the evidence stays off the map."""
    return located[located["event_id"].isin(set(evidence["event_id"]))]


def places(located: pd.DataFrame) -> pd.DataFrame:
    """One row per network a lineage was seen from (country, AS organisation), with its
    position, event count, hosting flag and first time, in order of first appearance."""
    if located.empty:
        return pd.DataFrame(columns=["country", "as_org", "lat", "lon", "events", "hosting", "first"])
    keyed = located.assign(country=located["country"].fillna("??"), as_org=located["as_org"].fillna("unknown AS"))
    keyed = keyed.assign(network=keyed["as_org"].str.casefold())  # sources spell AS names in different cases
    out = (keyed.groupby(["country", "network"], as_index=False, sort=False)
           .agg(as_org=("as_org", _most_common), lat=("lat", "median"), lon=("lon", "median"),
                events=("event_id", "size"), hosting=("hosting", "max"), first=("time", "min")))
    return out.drop(columns="network").sort_values("first", kind="stable").reset_index(drop=True)


def _most_common(values: pd.Series) -> Any:
    return values.value_counts().index[0]


def _fan(count: int, radius_pt: float = 9.0) -> list[tuple[float, float]]:
    """Offsets (points) that spread ``count`` markers sharing one position around it."""
    if count <= 1:
        return [(0.0, 0.0)]
    return [(radius_pt * math.cos(2 * math.pi * k / count + math.pi / 2),
             radius_pt * math.sin(2 * math.pi * k / count + math.pi / 2)) for k in range(count)]


def travel_map(located: pd.DataFrame, evidence: pd.DataFrame, title: str) -> Figure:
    """Networks a lineage was used from, on coastlines and borders, joined in time order; the
    alert's evidence marked. One legend entry per network instead of text on the map: country-level
    positions put every network of a country on one point (they are fanned out around it)."""
    fig = Figure(figsize=(12, 6.5))
    ax = fig.add_subplot()
    basemap.draw(ax)
    where = places(located)
    colours = colormaps["tab10"]
    offsets: dict[tuple[str, str], tuple[float, float]] = {}
    for (_, _), group in where.groupby(["lat", "lon"], sort=False):
        for (_, row), offset in zip(group.iterrows(), _fan(len(group)), strict=True):
            offsets[(row["country"], row["as_org"].casefold())] = offset
    position = {(row["country"], row["as_org"].casefold()): (row["lon"], row["lat"]) for _, row in where.iterrows()}
    path = located.sort_values("time", kind="stable")
    keys = zip(path["country"].fillna("??"), path["as_org"].fillna("unknown AS").str.casefold(), strict=True)
    steps = [position[key] for key in keys]
    moves = dict.fromkeys((a, b) for a, b in zip(steps, steps[1:], strict=False) if a != b)  # each move once
    for a, b in moves:
        ax.annotate("", xy=b, xytext=a, zorder=2,
                    arrowprops={"arrowstyle": "-|>", "color": "tab:blue", "alpha": 0.6, "linewidth": 1.2,
                                "shrinkA": 6, "shrinkB": 6})
    for i, row in where.iterrows():
        dx, dy = offsets[(row["country"], row["as_org"].casefold())]
        shifted = offset_copy(ax.transData, fig=fig, x=dx, y=dy, units="points")
        hosting = " · hosting" if bool(row["hosting"]) is True else ""
        label = f"{row['country']} · {row['as_org']}{hosting} ({row['events']} event{'s' * (row['events'] != 1)})"
        ax.scatter([row["lon"]], [row["lat"]], s=60 + 10 * math.sqrt(row["events"]), color=colours(int(i) % 10),
                   edgecolors="black", linewidths=0.6, transform=shifted, zorder=3, label=label)
    proof = evidence_on_map(located, evidence)
    if len(proof):
        keys = zip(proof["country"].fillna("??"), proof["as_org"].fillna("unknown AS").str.casefold(), strict=True)
        for (lon, lat), key in zip(proof[["lon", "lat"]].to_numpy(), keys, strict=True):
            dx, dy = offsets.get(key, (0.0, 0.0))
            ax.scatter([lon], [lat], marker="x", s=110, color="red", linewidths=2.2, zorder=4,
                       transform=offset_copy(ax.transData, fig=fig, x=dx, y=dy, units="points"))
        ax.scatter([], [], marker="x", s=110, color="red", linewidths=2.2, label="alert evidence (this token's events)")
    basemap.set_extent(ax, where["lon"], where["lat"])
    ax.set(title=title, xlabel="longitude (°)", ylabel="latitude (°)")
    ax.grid(alpha=0.25, linewidth=0.5)
    if len(where):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, title="network (events)",
                  markerscale=0.7, frameon=False)
    fig.tight_layout()
    return fig


# -- 03: threshold sweeps -----------------------------------------------------------------------
_SERIES_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", (0, (5, 1)))]


def unit_of(parameter: str) -> str:
    """The unit a threshold's name ends with (``…_s`` seconds, ``…_kmh`` km/h)."""
    key = parameter.rpartition(".")[2]
    for suffix, unit in (("_kmh", "km/h"), ("_km", "km"), ("_s", "s"), ("_pct", "%")):
        if key.endswith(suffix):
            return unit
    return ""


def _value_text(values: Iterable[Any]) -> str:
    ordered = sorted(values)
    return f"{ordered[0]:g}" if len(ordered) == 1 else f"{ordered[0]:g}–{ordered[-1]:g}"


def tradeoff_points(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct (alerts, recall) point of a sweep, with the threshold values that
    land there merged into one label (``1–1800``): equal outcomes are one point, not a pile."""
    recall = frame["caught"] / frame["attacks"].where(frame["attacks"] > 0)
    points = frame.assign(recall=recall.fillna(0.0))
    merged = (points.groupby(["alerts", "recall"], sort=False)["value"].agg(list).reset_index()
              .rename(columns={"value": "values"}))
    merged["label"] = merged["values"].map(_value_text)
    return merged


def sweep_panels(results: Mapping[str, pd.DataFrame], configured: Mapping[str, float | None]) -> Figure:
    """One panel per swept threshold: alerts of the rule, attacks caught and alerts on benign
    users against the value. Each line has its own style and hollow marker size, so lines that
    are equal stay visible on top of each other."""
    fig = Figure(figsize=(4.6 * max(len(results), 1), 4.4))
    axes = fig.subplots(1, max(len(results), 1), squeeze=False)[0]
    lines = [  # column, label, marker, line style, marker size, line width, alpha: a wide pale line under narrow ones
        ("alerts", "alerts of the rule", "o", "-", 11, 4.0, 0.45), ("caught", "attacks caught", "s", "--", 6.5, 1.6, 1.0),
        ("false_positives", "alerts on benign users", "x", ":", 7, 1.8, 1.0)]
    for ax, (parameter, frame) in zip(axes, results.items(), strict=False):
        for column, label, marker, style, size, width, alpha in lines:
            ax.plot(frame["value"], frame[column], marker=marker, linestyle=style, markersize=size, alpha=alpha,
                    markerfacecolor="none" if marker in "os" else None, linewidth=width, label=label)
        now = configured.get(parameter)
        if now is not None:
            ax.axvline(now, color="grey", linestyle=(0, (2, 2)), linewidth=1, label=f"configured ({now:g})")
        ax.set_xscale("symlog", linthresh=1)
        low, high = float(frame["value"].min()), float(frame["value"].max())
        ax.set_xlim(0 if low <= 0 else low / 2, high * 2 if high > 0 else 1)
        ax.set_ylim(-0.5, max(float(frame[["alerts", "caught", "false_positives"]].to_numpy().max(initial=0)), 1) + 0.5)
        unit = unit_of(parameter)
        ax.set(title=parameter, xlabel=f"threshold ({unit}, log scale)" if unit else "threshold (log scale)",
               ylabel="count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Threshold sweeps: alerts raised against injected attacks caught", fontsize=13)
    fig.tight_layout()
    return fig


def tradeoff_chart(results: Mapping[str, pd.DataFrame], configured: Mapping[str, float | None]) -> Figure:
    """Alert volume against the share of attacks caught, one line per threshold swept. Values
    with the same outcome are one point; only the configured value and the ends are labelled,
    each label where it overlaps no other label, point or the legend (else left out)."""
    fig = Figure(figsize=(9, 6))
    ax = fig.add_subplot()
    colours = colormaps["tab10"]
    labels: list[tuple[str, tuple[float, float], Any]] = []
    for i, (parameter, frame) in enumerate(results.items()):
        points = tradeoff_points(frame)
        marker, style = _SERIES_STYLES[i % len(_SERIES_STYLES)]
        size = 13 - 2.5 * (i % len(_SERIES_STYLES))  # later series smaller: coincident points stay visible
        colour = colours(i % 10)
        unit = unit_of(parameter)
        ax.plot(points["alerts"], points["recall"], marker=marker, linestyle=style, markersize=size,
                markerfacecolor="none", markeredgewidth=1.6, color=colour, linewidth=1.4,
                label=f"{parameter}" + (f" ({unit})" if unit else ""))
        now = configured.get(parameter)
        chosen = [k for k, values in enumerate(points["values"]) if now in values] + [0, len(points) - 1]
        for k in dict.fromkeys(chosen):  # the configured value first: it wins a crowded spot
            row = points.iloc[k]
            text = row["label"] + (" (configured)" if now in row["values"] else "")
            labels.append((text, (float(row["alerts"]), float(row["recall"])), colour))
    most = max((int(frame["alerts"].max()) for frame in results.values() if len(frame)), default=0)
    wide = most > 10  # log scale (linear below 1, so 0 stays on the axis): 1, 2 and 3 alerts stay apart
    if wide:
        ax.set_xscale("symlog", linthresh=1)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.set_xlim(-0.3, most * 1.6)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(-0.08 * max(most, 1), max(most, 1) * 1.12)
    ax.set(title="Alert volume against attacks caught, per threshold value",
           xlabel="alerts raised by the rule" + (" (log scale)" if wide else ""),
           ylabel="share of the rule's injected attacks caught", ylim=(-0.12, 1.15))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title="threshold swept (labels: its values)")
    fig.tight_layout()
    place_labels(ax, labels)
    return fig


_CANDIDATES = [(8, 8), (-8, 8), (8, -14), (-8, -14), (0, 18), (0, -24), (18, 24), (-18, 24), (18, -30),
               (-18, -30), (30, 0), (-30, 0), (0, 32), (0, -38)]  # offsets in points, nearest first


def _along_lines(ax: Axes, step_px: float = 8.0) -> list[tuple[float, float]]:
    """Display positions of every plotted point and of points every ``step_px`` along the lines."""
    out: list[tuple[float, float]] = []
    for line in ax.get_lines():
        shown = ax.transData.transform(np.asarray(line.get_xydata(), dtype=float))
        for (x0, y0), (x1, y1) in zip(shown, shown[1:], strict=False):
            steps = max(int(math.hypot(x1 - x0, y1 - y0) / step_px), 1)
            out += [(x0 + (x1 - x0) * k / steps, y0 + (y1 - y0) * k / steps) for k in range(steps)]
        out += [(float(x), float(y)) for x, y in shown[-1:]]
    return out


def place_labels(ax: Axes, labels: Iterable[tuple[str, tuple[float, float], Any]]) -> None:
    """Annotate each (text, (x, y), colour) at the nearest offset where it stays inside the axes
    and overlaps no label placed before it, no plotted point and not the legend; a label with no
    free spot is left out rather than printed over another."""
    fig = ax.get_figure()
    assert isinstance(fig, Figure)
    renderer = FigureCanvasAgg(fig).get_renderer()  # type: ignore[no-untyped-call]  # matplotlib leaves it unannotated
    inside = ax.get_window_extent(renderer)
    taken = [Bbox.from_extents(x - 5, y - 5, x + 5, y + 5) for x, y in _along_lines(ax)]
    legend = ax.get_legend()
    if legend is not None:
        taken.append(legend.get_window_extent(renderer))
    for text, xy, colour in labels:
        for dx, dy in _CANDIDATES:
            style: dict[str, Any] = {"xytext": (dx, dy), "textcoords": "offset points", "fontsize": 8, "color": colour,
                                     "ha": "left" if dx > 0 else "right" if dx < 0 else "center",
                                     "va": "bottom" if dy > 0 else "top"}
            note = ax.annotate(text, xy, **style)
            box = note.get_window_extent(renderer).padded(2)
            note.remove()
            if inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1) and not any(
                    box.overlaps(other) for other in taken):
                taken.append(box)  # placed; a thin leader line ties it to its point
                ax.annotate(text, xy, **style, arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.6,
                                                           "alpha": 0.8, "shrinkA": 1, "shrinkB": 4})
                break


# -- 04: the anomaly model's alert budget --------------------------------------------------------
def budget_chart(benign_per_10k: float, budget_per_10k: float, per_attack: Mapping[str, tuple[int, int]]) -> Figure:
    """Recall per attack kind beside benign alert volume against the budget, with the budget
    spelled out (alerts per 10,000 active tokens per day) and the verdict on the bar."""
    fig = Figure(figsize=(13, 4.5))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})
    _recall_bars(left, per_attack)
    held = benign_per_10k <= budget_per_10k
    bars = right.bar(["false alerts\n(on benign tokens)", "budget\n(alerts_per_10k_tokens_per_day)"], [benign_per_10k, budget_per_10k],
                     color=["tab:green" if held else "tab:red", "lightgrey"], edgecolor="black", linewidth=0.6)
    for bar, value in zip(bars, (benign_per_10k, budget_per_10k), strict=True):
        right.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 3),
                       textcoords="offset points", ha="center", fontsize=10)
    right.axhline(budget_per_10k, color="black", linestyle="--", linewidth=1)
    ratio = benign_per_10k / budget_per_10k if budget_per_10k else math.inf
    verdict = "within budget" if held else f"over budget ×{ratio:.1f}"
    right.set(title=f"Anomaly alerts on benign tokens: {verdict}",
              ylabel="alerts per 10,000 active tokens per day", ylim=(0, max(benign_per_10k, budget_per_10k) * 1.2))
    fig.tight_layout()
    return fig


def _recall_bars(ax: Axes, per_attack: Mapping[str, tuple[int, int]]) -> None:
    kinds = sorted(per_attack, key=lambda k: (per_attack[k][0] / max(per_attack[k][1], 1), k))
    recall = [per_attack[k][0] / max(per_attack[k][1], 1) for k in kinds]
    bars = ax.barh(kinds, recall, color="tab:blue")
    for bar, kind in zip(bars, kinds, strict=True):
        caught, total = per_attack[kind]
        ax.annotate(f"{caught}/{total}", (bar.get_width(), bar.get_y() + bar.get_height() / 2), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=9)
    ax.set(title="Recall per attack kind", xlabel="share of attack windows flagged", xlim=(0, 1.15))
