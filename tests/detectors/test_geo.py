"""Travel math: known distances, edge cases and the properties a distance must have."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.geo import (
    EARTH_RADIUS_KM,
    MAX_SURFACE_DISTANCE_KM,
    closer_than_km,
    effective_distance_km,
    haversine_km,
    speed_kmh,
    travel_horizon_s,
)

lat = st.floats(min_value=-90, max_value=90, allow_nan=False)
lon = st.floats(min_value=-180, max_value=180, allow_nan=False)


@pytest.mark.parametrize(
    ("a", "b", "km"),
    [
        ((51.5007, -0.1246), (40.6892, -74.0445), 5574.8),  # Big Ben -> Statue of Liberty
        ((52.52, 13.405), (40.71, -74.0), 6384.9),  # Berlin -> New York
        ((52.52, 13.405), (53.55, 9.99), 255.4),  # Berlin -> Hamburg
        ((0.0, 0.0), (0.0, 1.0), 2 * math.pi * EARTH_RADIUS_KM / 360),  # one degree on the equator
    ],
)
def test_known_distances(a: tuple[float, float], b: tuple[float, float], km: float) -> None:
    assert haversine_km(*a, *b) == pytest.approx(km, abs=0.5)


def test_same_point_and_antipodes() -> None:
    assert haversine_km(52.52, 13.405, 52.52, 13.405) == 0.0
    assert haversine_km(0, 0, 0, 180) == pytest.approx(MAX_SURFACE_DISTANCE_KM)
    assert haversine_km(90, 0, -90, 0) == pytest.approx(MAX_SURFACE_DISTANCE_KM)


def test_dateline_is_short() -> None:
    assert haversine_km(0, 179.5, 0, -179.5) == pytest.approx(111.2, abs=0.1)


@given(lat, lon, lat, lon)
def test_symmetric_and_bounded(lat1: float, lon1: float, lat2: float, lon2: float) -> None:
    d = haversine_km(lat1, lon1, lat2, lon2)
    assert d == pytest.approx(haversine_km(lat2, lon2, lat1, lon1), abs=1e-6)
    assert 0.0 <= d <= MAX_SURFACE_DISTANCE_KM + 1e-6


@given(lat, lon, lat, lon, lat, lon)
def test_triangle_inequality(a1: float, o1: float, a2: float, o2: float, a3: float, o3: float) -> None:
    # 1 m of slack: haversine loses a few digits near antipodal points.
    assert haversine_km(a1, o1, a3, o3) <= haversine_km(a1, o1, a2, o2) + haversine_km(a2, o2, a3, o3) + 1e-3


def test_effective_distance_subtracts_both_radii_and_never_goes_negative() -> None:
    assert effective_distance_km(1000, 50, 25) == 925
    assert effective_distance_km(600, 300, 300) == 0
    assert effective_distance_km(100, 300, 300) == 0
    assert effective_distance_km(100, -5, 0) == 100


def test_speed() -> None:
    assert speed_kmh(9870, 20 * 60) == pytest.approx(29_610)
    assert speed_kmh(100, -3600) == pytest.approx(100)  # order of the two events does not matter
    assert speed_kmh(600, 0) == math.inf
    assert speed_kmh(0, 0) == 0.0


def test_travel_horizon_covers_half_the_planet() -> None:
    assert travel_horizon_s(1000) == pytest.approx(MAX_SURFACE_DISTANCE_KM / 1000 * 3600)
    assert 20 * 3600 < travel_horizon_s(1000) < 21 * 3600


@given(lat, lon, lat, lon, st.floats(min_value=0, max_value=25_000))
def test_quick_closeness_bound_is_never_wrong(lat1: float, lon1: float, lat2: float, lon2: float, km: float) -> None:
    if closer_than_km(lat1, lon1, lat2, lon2, km):
        assert haversine_km(lat1, lon1, lat2, lon2) < km + 1e-6


def test_quick_closeness_settles_one_metro_area_and_the_dateline() -> None:
    assert closer_than_km(52.52, 13.405, 52.50, 13.39, 500)  # Berlin home vs mobile
    assert closer_than_km(0, 179.9, 0, -179.9, 500)
    assert not closer_than_km(52.52, 13.405, 1.29, 103.85, 500)
