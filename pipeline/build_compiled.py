"""``make compile``: build ``pipeline.compiled.MODULES`` with mypyc, in place.

Each module's extension lands beside its ``.py`` and the modules share one library
(``tokenwatch__mypyc...`` at the top of the tree), so calls between them stay native. The
build runs in a child process with its output in ``build/mypyc/compile.log``: without mypyc
or a C compiler, or when it fails, one line says so, the partial build is removed and
tokenwatch runs as pure Python (the same code, slower). Nothing is rebuilt while every
extension is newer than its source.

    python -m pipeline.build_compiled            # build what is stale
    python -m pipeline.build_compiled --which    # print "compiled" or "pure"
    python -m pipeline.build_compiled --clean    # remove the build
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from importlib.util import find_spec
from pathlib import Path

from pipeline.compiled import (
    EXTENSION_SUFFIX,
    GROUP,
    MODULES,
    ROOT,
    built_paths,
    extension_path,
    shared_library,
    source_path,
    stale,
)

BUILD_DIR = ROOT / "build" / "mypyc"
LOG = BUILD_DIR / "compile.log"
# mypyc's own default. The C compiler is the small part of a build (about 45 s on 2 cores, mostly
# mypy's type check): -O0 saves little of it (README "Performance").
DEFAULT_OPT_LEVEL = "3"


def _compile(opt_level: str) -> None:
    """The build itself (the child process): mypyc to C, then the C compiler, in place."""
    import setuptools  # noqa: F401 -- imported before mypyc.build, which then builds with setuptools
    from mypyc.build import mypycify
    from setuptools import Distribution

    os.chdir(ROOT)
    paths = [str(source_path(module).relative_to(ROOT)) for module in MODULES]
    extensions = mypycify(
        paths, opt_level=opt_level, separate=False, target_dir=str(BUILD_DIR.relative_to(ROOT)), group_name=GROUP
    )
    dist = Distribution({"name": "tokenwatch-compiled", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.inplace = True  # build_ext's --inplace
    command.build_temp = str(BUILD_DIR / "temp")
    dist.run_command("build_ext")
    for module in MODULES:  # an unchanged extension keeps its old time; it matches its source now
        extension_path(module).touch()


def _no_toolchain() -> str | None:
    """Why no build can run here, or ``None``."""
    if find_spec("mypyc") is None:
        return "mypyc is not installed (pip install -e '.[test]')"
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C compiler ({compiler.split()[0]})"
    return None


def _shared_link() -> Path:
    """Where this interpreter's site-packages finds the shared library: a process whose path
    lacks the top of the tree (a notebook kernel started in notebooks/, which finds
    ``detectors`` through the editable install) must still import it."""
    return Path(sysconfig.get_paths()["purelib"]) / f"{GROUP}__mypyc{EXTENSION_SUFFIX}"


def _link_shared() -> None:
    link, shared = _shared_link(), shared_library()
    if link == shared or not shared.exists():
        return
    if link.is_symlink() or link.exists():
        if link.resolve() == shared.resolve():
            return
        link.unlink()
    link.symlink_to(shared)


def clean() -> None:
    for path in built_paths():
        path.unlink()
    link = _shared_link()
    if link.is_symlink() and link.resolve().parent == ROOT.resolve():
        link.unlink()
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def build(opt_level: str) -> bool:
    """Build if stale; ``False`` (after one line on stdout) when tokenwatch stays pure Python."""
    if not stale():
        _link_shared()
        print("compiled build is current")
        return True
    missing = _no_toolchain()
    if missing:
        clean()
        print(f"compiled build skipped: {missing}; running pure Python")
        return False
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with LOG.open("w", encoding="utf-8") as log:
        child = subprocess.run(
            [sys.executable, "-m", "pipeline.build_compiled", "--child", "--opt-level", opt_level],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False,
        )
    seconds = time.monotonic() - started
    if child.returncode != 0 or stale():
        lines = LOG.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        last = lines[-1] if lines else f"exit code {child.returncode}"
        for path in built_paths():
            path.unlink()
        print(f"compiled build failed after {seconds:.0f}s ({last}; log: {LOG}); running pure Python")
        return False
    _link_shared()
    print(f"compiled {len(MODULES)} modules with mypyc -O{opt_level} in {seconds:.0f}s")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", action="store_true", help='print "compiled" when the build is current, else "pure"')
    parser.add_argument("--clean", action="store_true", help="remove the extensions and build/mypyc")
    parser.add_argument("--opt-level", default=os.environ.get("MYPYC_OPT_LEVEL", DEFAULT_OPT_LEVEL))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.which:
        print("pure" if stale() else "compiled")
    elif args.clean:
        clean()
    elif args.child:
        _compile(args.opt_level)
    else:
        build(args.opt_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
