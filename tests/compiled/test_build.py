"""The compiled build (``make compile``, mypyc) and its pure-Python fallback: a run is on the
build ``make test`` names, and both builds raise the same alerts, byte for byte."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import compiled

ROOT = Path(__file__).resolve().parents[2]
BUILD = os.environ.get(compiled.BUILD_ENV)

# The demo world of tests/pipeline/test_runtime.py (16 alerts, one per staged attack), detected in a
# child process on the build it is asked for; prints the compiled modules and the alerts.
CHILD = """
import json, sys
from pathlib import Path
import pytest

from pipeline import compiled
if sys.argv[1] == "pure":
    compiled.use_pure_python()
import importlib
from pipeline.cli.demo import demo_settings, detect
from pipeline.synthetic.world import WorldSpec, generate
out = Path(sys.argv[2])
alerts, _ = detect(demo_settings(out), out, generate(WorldSpec(users=40, seed=11, hours=8)), False)
built = [name for name in compiled.MODULES if compiled.is_compiled(importlib.import_module(name))]
print(json.dumps({"compiled": built, "alerts": (out / "alerts.jsonl").read_text(encoding="utf-8")}))
"""


def _detect_demo(build: str, output: Path) -> dict[str, object]:
    output.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, build, str(output)], cwd=ROOT, capture_output=True, text=True, check=True,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_run_is_on_the_build_make_test_names() -> None:
    assert BUILD in (None, "compiled", "pure"), f"{compiled.BUILD_ENV}={BUILD!r}"
    on = {name: compiled.is_compiled(importlib.import_module(name)) for name in compiled.MODULES}
    if BUILD == "compiled":
        assert all(on.values()), f"not compiled: {[name for name, yes in on.items() if not yes]}"
        assert all(str(importlib.import_module(name).__file__).endswith(".so") for name in on)
    elif BUILD == "pure":
        assert not any(on.values()), f"compiled: {[name for name, yes in on.items() if yes]}"
        assert all(str(importlib.import_module(name).__file__).endswith(".py") for name in on)
    else:  # a plain pytest run: whichever build the tree holds, never a mix of the two
        assert len(set(on.values())) == 1, on


def test_both_builds_raise_the_same_alerts(tmp_path: Path) -> None:
    pure = _detect_demo("pure", tmp_path / "pure")
    default = _detect_demo("default", tmp_path / "default")
    assert pure["compiled"] == []
    if BUILD == "compiled":
        assert default["compiled"] == list(compiled.MODULES)
    assert isinstance(pure["alerts"], str) and pure["alerts"].count("\n") == 16
    assert default["alerts"] == pure["alerts"]


def test_a_process_outside_the_tree_loads_the_build(tmp_path: Path) -> None:
    """A notebook kernel starts in notebooks/ and finds the packages through the editable
    install, not through the top of the tree: the compiled modules' shared library must load
    there too (it did not: ModuleNotFoundError tokenwatch__mypyc in every notebook)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", "import detectors.state, pipeline.compiled as c; print(c.is_compiled(detectors.state))"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if BUILD == "compiled":  # (a pure run switches only its own process to the sources)
        assert done.stdout.strip() == "True"


def test_make_clean_removes_the_extension_of_every_compiled_module() -> None:
    """`make clean` deletes the shared library: an extension it leaves beside its `.py` would be
    imported first and fail without it (the ingest modules, compiled later, were left out)."""
    clean = next(line for line in (ROOT / "Makefile").read_text().splitlines() if "tokenwatch__mypyc" in line)
    removed = {word.removesuffix("/*.so") for word in clean.split() if word.endswith("/*.so")}
    packages = {module.rsplit(".", 1)[0].replace(".", "/") for module in compiled.MODULES}
    assert packages <= removed, sorted(packages - removed)


def test_extensions_without_their_shared_library_are_a_stale_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each extension loads the build's shared library: with it gone (deleted by hand, a partial
    clean) the extensions fail to import, so the build must count as stale and be rebuilt, where
    it used to be reported current because every extension was newer than its source."""
    monkeypatch.setattr(compiled, "ROOT", tmp_path)
    monkeypatch.setattr(compiled, "MODULES", ("pkg.mod",))
    (tmp_path / "pkg").mkdir()
    compiled.source_path("pkg.mod").write_text("x = 1\n")
    compiled.extension_path("pkg.mod").write_bytes(b"")
    assert compiled.stale() == ["pkg.mod"]  # no shared library
    compiled.shared_library().write_bytes(b"")
    assert compiled.stale() == []
