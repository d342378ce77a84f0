"""The modules the mypyc build compiles, and a switch back to their pure-Python sources.

``make compile`` (``pipeline/build_compiled.py``) writes each module below as an extension
module beside its ``.py``, which Python then imports first. ``TOKENWATCH_BUILD=pure`` (read by
``tests/conftest.py``; ``benchmarks/bench_detect.py --pure``) imports the sources instead, so
one tree tests both builds. Nothing here imports a compiled module: it must run before them.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]

# What pays (README "Performance"): lineage state, the detector tables and the helpers the
# rules call per event, the rule detectors, and the engine with its alerter and event-time
# clocks. The rules' pydantic settings stay pure Python in ``detectors/<rule>_config.py``
# (compiled, a model loses its ``Field`` constraints and descriptions), and so does the
# anomaly detector (numpy, scikit-learn).
MODULES: tuple[str, ...] = (
    "detectors.binding",
    "detectors.concurrency",
    "detectors.concurrency_words",
    "detectors.describe",
    "detectors.device",
    "detectors.geo",
    "detectors.geo_divergence",
    "detectors.geo_divergence_state",
    "detectors.observation_codec",
    "detectors.post_revocation_use",
    "detectors.recorded",
    "detectors.replay",
    "detectors.revocation_policy",
    "detectors.scope_escalation",
    "detectors.state",
    "detectors.state_codec",
    "detectors.tables",
    "pipeline.runtime.alerting",
    "pipeline.runtime.engine",
    "pipeline.runtime.event_time",
    "pipeline.ingest.normalize",
    "pipeline.ingest.enrich",
    "pipeline.runtime.lines",
    "pipeline.runtime.line_tally",
    "schemas.sources.common",
    "schemas.fast.build",
    "schemas.fast.times",
    "schemas.fast.gateway",
)

EXTENSION_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
GROUP = "tokenwatch"
"""The build's name: its shared library is ``tokenwatch__mypyc<suffix>`` at the top of the tree."""
BUILD_ENV = "TOKENWATCH_BUILD"
"""``compiled`` or ``pure``: which build a test run must be on (``make test`` sets it)."""


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def extension_path(module: str) -> Path:
    return source_path(module).with_suffix(EXTENSION_SUFFIX)


def shared_library() -> Path:
    return ROOT / f"{GROUP}__mypyc{EXTENSION_SUFFIX}"


def built_paths() -> list[Path]:
    """Every file a build leaves in the tree: the modules' extensions and the shared library
    they load, so ``make clean`` and a failed build remove them all."""
    return [p for p in [*map(extension_path, MODULES), shared_library()] if p.exists()]


def stale() -> list[str]:
    """Modules whose extension is missing or older than its source, or every module when the
    shared library their extensions load is gone (they would fail to import): the build does
    not match."""
    if not shared_library().exists():
        return list(MODULES)
    out = []
    for module in MODULES:
        ext = extension_path(module)
        if not ext.exists() or ext.stat().st_mtime < source_path(module).stat().st_mtime:
            out.append(module)
    return out


def is_compiled(module: ModuleType) -> bool:
    return str(getattr(module, "__file__", "")).endswith(EXTENSION_SUFFIX)


class _SourcesFirst(MetaPathFinder):
    """Finds the compiled modules' ``.py`` files, ahead of the extension beside them."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in MODULES:
            return None
        source = source_path(fullname)
        return importlib.util.spec_from_file_location(fullname, source)


def use_pure_python() -> None:
    """Import the sources of ``MODULES`` from now on. Called before any of them is imported:
    one already loaded compiled would mix the builds, so that is an error."""
    loaded = [name for name in MODULES if name in sys.modules and is_compiled(sys.modules[name])]
    if loaded:
        raise RuntimeError(f"compiled modules already imported: {', '.join(loaded)}")
    if not any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())
