"""Travel math for geo rules: great-circle distance and the speed it implies.

Pure functions on floats so that the per-event path stays cheap and the math
can be tested on its own.
"""

from __future__ import annotations

import math

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
MAX_SURFACE_DISTANCE_KM = math.pi * EARTH_RADIUS_KM  # antipodes, ~20,015 km


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km between two points given in degrees.

    Haversine stays accurate for short distances, where the spherical law of
    cosines loses precision; the sphere is good to ~0.5 %, plenty for travel.
    """
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlam = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, max(0.0, a))))


def effective_distance_km(distance_km: float, accuracy1_km: float, accuracy2_km: float) -> float:
    """Shortest distance the two holders could really be apart, given that each
    geolocated point may be off by its accuracy radius."""
    return max(0.0, distance_km - max(0.0, accuracy1_km) - max(0.0, accuracy2_km))


def speed_kmh(distance_km: float, elapsed_s: float) -> float:
    """Speed needed to cover ``distance_km`` in ``elapsed_s``; no time to cover a
    positive distance is an infinite speed, no distance is zero speed."""
    if distance_km <= 0:
        return 0.0
    elapsed = abs(elapsed_s)
    if elapsed == 0:
        return math.inf
    return distance_km / (elapsed / 3600.0)


def travel_horizon_s(max_speed_kmh: float) -> float:
    """How long a location stays interesting: after this, no point on Earth is
    too far to have been reached at ``max_speed_kmh``."""
    return MAX_SURFACE_DISTANCE_KM / max_speed_kmh * 3600.0


_KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180.0


def closer_than_km(lat1: float, lon1: float, lat2: float, lon2: float, km: float) -> bool:
    """Cheap certain answer that two points are closer than ``km``, without trig.

    Walking the meridian and then the parallel is never shorter than the great
    circle, and a parallel is never longer than the equator, so this bound is
    safe; most pairs (one city, one metro area) are settled here.
    """
    dlon = abs(lon1 - lon2) % 360.0
    if dlon > 180.0:
        dlon = 360.0 - dlon
    return (abs(lat1 - lat2) + dlon) * _KM_PER_DEGREE < km


# The accuracy the enricher gives a position that says nothing about where the user
# is (an in-flight or provider network: README "Egress lists").
UNLOCATED_ACCURACY_KM = MAX_SURFACE_DISTANCE_KM


def locates(accuracy_km: float | None) -> bool:
    """Whether a position with this accuracy says anything about where the user is."""
    return accuracy_km is None or accuracy_km < UNLOCATED_ACCURACY_KM
