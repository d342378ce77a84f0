"""The anomaly model: train on baseline windows, calibrate to an alert budget, persist.

Files are skops archives, never pickle: loading checks every type in the file
against an allowlist (scikit-learn's own estimators plus the tree structure of
IsolationForest) and refuses anything else, so a model file from an untrusted
place cannot run code. Trust boundary: whoever can write the model file can
change what is alerted on, not what runs. A model records the feature list it
was trained on; a file whose features differ from this code's is refused.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from detectors.anomaly.archive import DEFAULT_LIMITS, ArchiveError, ArchiveLimits, check_archive
from detectors.anomaly.features import FEATURES

if TYPE_CHECKING:  # scikit-learn and skops load on first use: `tokenwatch` starts fast without a model
    from sklearn.ensemble import IsolationForest

FORMAT = "tokenwatch-anomaly"
FORMAT_VERSION = 1
# Types skops does not trust by default that an IsolationForest needs; nothing else loads.
_TRUSTED_EXTRA = frozenset({"sklearn.tree._tree.Tree"})


class ModelError(ValueError):
    """A model file that cannot be used: missing, corrupt, untrusted or incompatible."""


KINDS = ("tail", "isolation_forest")


@dataclass(frozen=True)
class AnomalyModel:
    """``kind`` "isolation_forest": scikit-learn's IsolationForest, score = its anomaly score.
    ``kind`` "tail": per feature, how rare a value at least this high was in the baseline
    (-log10 of its empirical upper-tail probability from a quantile grid, extrapolated
    beyond the largest baseline value), summed over features (HBOS-like). The tail model
    scores an unseen value (a first mailbox read, a share of 1.0 where the baseline never
    exceeded 0.2) by how far beyond the baseline it lies; IsolationForest cannot, since
    its splits only span the training range (see README "Anomaly detection")."""

    kind: str
    estimator: "IsolationForest | None"
    grid: np.ndarray | None  # tail: features x quantiles of the baseline
    spread: np.ndarray | None  # tail: per-feature scale of extrapolation beyond the maximum
    features: tuple[str, ...]
    version: str
    trained_from: float  # event time of the first and last baseline window (epoch s)
    trained_to: float
    threshold: float
    windows: int
    token_days: int
    budget_per_10k_token_days: float
    medians: tuple[float, ...]  # per feature, over the baseline: the "usual" value for explanations
    sklearn_version: str

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Higher = more unusual."""
        if self.kind == "isolation_forest":
            assert self.estimator is not None
            scores: np.ndarray = -self.estimator.score_samples(rows)  # scikit-learn is untyped
            return scores
        assert self.grid is not None and self.spread is not None
        return tail_scores(self.grid, self.spread, self.windows, rows)

    def describe(self) -> str:
        start = datetime.fromtimestamp(self.trained_from, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        end = datetime.fromtimestamp(self.trained_to, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        return (f"model {self.version} ({self.kind}): {self.windows:,} windows, {self.token_days:,} active token-days "
                f"{start}–{end} UTC, threshold {self.threshold:.4f} "
                f"(budget {self.budget_per_10k_token_days:g} alerts per 10k active tokens per day)")


HEADROOM = 0.6  # calibrate to 60 % of the budget: a week's extreme quantile is a noisy estimate


def calibrate(scores: np.ndarray, token_days: int, budget_per_10k: float) -> float:
    """The lowest threshold at which the baseline itself would have raised no more alerts
    than ``HEADROOM`` of the budget allows (each window above it counted as one alert)."""
    allowed = int(math.floor(HEADROOM * budget_per_10k * token_days / 10_000))
    ordered = np.sort(scores)[::-1]
    if allowed >= len(ordered):
        return float(ordered[-1]) if len(ordered) else 1.0
    return float(ordered[allowed])


_GRID = 512
_TYPICAL = 0.3  # -log10(0.5): surprise of a median value, not counted


def tail_table(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    grid = np.quantile(rows, np.linspace(0.0, 1.0, _GRID), axis=0).T.astype(np.float64)
    spread = np.maximum(grid[:, int(_GRID * 0.99)] - grid[:, _GRID // 2], 0.05)
    return grid, spread


def tail_scores(grid: np.ndarray, spread: np.ndarray, n: int, rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    floor = 1.0 / (n + 1)
    total = np.zeros(len(rows))
    for f in range(grid.shape[0]):
        x = rows[:, f]
        below = np.searchsorted(grid[f], x, side="left") / _GRID  # baseline share under x
        p = np.maximum(1.0 - below, floor)
        beyond = x > grid[f, -1]
        p[beyond] = floor * np.exp(-(x[beyond] - grid[f, -1]) / spread[f])
        total += np.maximum(-np.log10(np.maximum(p, 1e-300)) - _TYPICAL, 0.0)
    return total


def train(
    rows: np.ndarray,
    times: np.ndarray,
    token_days: int,
    budget_per_10k: float,
    seed: int = 0,
    n_estimators: int = 200,
    max_samples: int = 512,
    kind: str = "tail",
) -> AnomalyModel:
    """Fit the model on baseline windows and calibrate its threshold to the budget."""
    import sklearn
    from sklearn.ensemble import IsolationForest

    if kind not in KINDS:
        raise ModelError(f"unknown model kind {kind!r}; one of {', '.join(KINDS)}")
    if rows.ndim != 2 or rows.shape[1] != len(FEATURES):
        raise ModelError(f"training rows must have {len(FEATURES)} features, got shape {rows.shape}")
    if len(rows) < 10:
        raise ModelError(f"need at least 10 baseline windows to train, got {len(rows)}")
    estimator = grid = spread = None
    if kind == "isolation_forest":
        estimator = IsolationForest(
            n_estimators=n_estimators, max_samples=min(max_samples, len(rows)), random_state=seed
        )
        estimator.fit(rows)
        scores = -estimator.score_samples(rows)
    else:
        grid, spread = tail_table(rows)
        scores = tail_scores(grid, spread, len(rows), rows)
    digest = hashlib.sha256(rows.tobytes() + f"{kind}/{seed}/{n_estimators}/{max_samples}".encode()).hexdigest()
    end = datetime.fromtimestamp(float(times.max()), tz=timezone.utc)
    return AnomalyModel(
        kind=kind,
        estimator=estimator,
        grid=grid,
        spread=spread,
        features=FEATURES,
        version=f"{end:%Y%m%dT%H%M}-{digest[:10]}",
        trained_from=float(times.min()),
        trained_to=float(times.max()),
        threshold=calibrate(scores, token_days, budget_per_10k),
        windows=len(rows),
        token_days=token_days,
        budget_per_10k_token_days=budget_per_10k,
        medians=tuple(float(v) for v in np.median(rows, axis=0)),
        sklearn_version=sklearn.__version__,
    )


def save(model: AnomalyModel, path: Path) -> None:
    """Write atomically (temp file + rename): a reader sees the old file or the new one."""
    import skops.io as sio
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": model.kind,
        "grid": model.grid,
        "spread": model.spread,
        "version": model.version,
        "features": list(model.features),
        "trained_from": model.trained_from,
        "trained_to": model.trained_to,
        "threshold": model.threshold,
        "windows": model.windows,
        "token_days": model.token_days,
        "budget_per_10k_token_days": model.budget_per_10k_token_days,
        "medians": list(model.medians),
        "sklearn_version": model.sklearn_version,
        "estimator": model.estimator,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        sio.dump(document, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path | str, limits: ArchiveLimits = DEFAULT_LIMITS) -> AnomalyModel:
    """Read a model file; every problem is a ``ModelError`` that names the file and why.
    The archive is checked against ``limits`` (size, members, inflated size) first."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"anomaly model {path}: file not found")
    try:
        check_archive(path, limits)  # before skops inflates a single member
    except ArchiveError as exc:
        raise ModelError(f"anomaly model {path}: refused before loading: {exc}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"anomaly model {path}: not a readable skops model file ({exc})") from None
    import skops.io as sio
    from sklearn.ensemble import IsolationForest
    try:
        untrusted = set(sio.get_untrusted_types(file=path))
    except Exception as exc:  # noqa: BLE001 -- a damaged schema raises anything from KeyError to RecursionError
        raise ModelError(f"anomaly model {path}: not a readable skops model file ({type(exc).__name__}: {exc})") from None
    refused = sorted(untrusted - _TRUSTED_EXTRA)
    if refused:
        raise ModelError(f"anomaly model {path}: refuses to load untrusted types {', '.join(refused)}")
    try:
        document = sio.load(path, trusted=sorted(untrusted))
    except Exception as exc:  # noqa: BLE001 -- skops raises many kinds on a damaged archive
        raise ModelError(f"anomaly model {path}: corrupt model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ModelError(f"anomaly model {path}: not a tokenwatch anomaly model")
    if document.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"anomaly model {path}: format version {document.get('format_version')} is not "
            f"{FORMAT_VERSION}; retrain with `tokenwatch model train`"
        )
    features = tuple(document.get("features") or ())
    if features != FEATURES:
        raise ModelError(f"anomaly model {path}: {_feature_change(features)}; retrain with `tokenwatch model train`")
    kind = document.get("kind")
    estimator, grid, spread = document.get("estimator"), document.get("grid"), document.get("spread")
    if kind == "isolation_forest":
        if not isinstance(estimator, IsolationForest) or not hasattr(estimator, "estimators_"):
            raise ModelError(f"anomaly model {path}: holds no fitted IsolationForest")
    elif kind == "tail":
        shape = (len(FEATURES), _GRID)
        if not (isinstance(grid, np.ndarray) and grid.shape == shape and isinstance(spread, np.ndarray)
                and spread.shape == (len(FEATURES),)):
            raise ModelError(f"anomaly model {path}: tail model without a {shape} quantile grid")
    else:
        raise ModelError(f"anomaly model {path}: unknown model kind {kind!r}")
    try:
        return AnomalyModel(
            kind=kind,
            estimator=estimator if kind == "isolation_forest" else None,
            grid=grid if kind == "tail" else None,
            spread=spread if kind == "tail" else None,
            features=features,
            version=str(document["version"]),
            trained_from=float(document["trained_from"]),
            trained_to=float(document["trained_to"]),
            threshold=float(document["threshold"]),
            windows=int(document["windows"]),
            token_days=int(document["token_days"]),
            budget_per_10k_token_days=float(document["budget_per_10k_token_days"]),
            medians=tuple(float(v) for v in document["medians"]),
            sklearn_version=str(document["sklearn_version"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"anomaly model {path}: missing or bad field {exc}") from None


def _feature_change(features: tuple[str, ...]) -> str:
    """Why a model's feature list does not fit this version, in the fewest names: what this
    version added, what it no longer computes, or (same names) that the order differs."""
    added = [f for f in FEATURES if f not in features]
    gone = [f for f in features if f not in FEATURES]
    parts = []
    if added:
        parts.append(f"this version adds features {', '.join(added)}")
    if gone:
        parts.append(f"no longer computes {', '.join(gone)}")
    if not parts:
        parts.append(f"its features are in another order ({', '.join(features)})")
    return f"trained on {len(features)} features, this version computes {len(FEATURES)}: " + "; ".join(parts)
