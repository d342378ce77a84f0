"""The static checks are part of the test run (issue 15): `make test` runs ruff and mypy
before pytest and stops on a finding, and every suppression that remains says why."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# mypy's `files` leave out tests/ and benchmarks/, yet a suppression there must say why all the same.
CHECKED = ("schemas", "detectors", "pipeline", "tests", "benchmarks")

# A noqa names its rule codes, then "--" and why; a type-ignore names its error codes, then a comment saying why.
NOQA = re.compile(r"#\s*noqa\b(?P<rest>.*)$")
NOQA_WITH_REASON = re.compile(r":\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*\s+--\s+\S")
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<rest>.*)$")
TYPE_IGNORE_WITH_REASON = re.compile(r"^\[[a-z-]+(,\s*[a-z-]+)*\]\s+#\s*\S")
# A reason that only points at another line says nothing when read alone.
POINTER_ONLY = re.compile(r"(--|#)\s*(same|ditto|as above|see above)\s*$", re.IGNORECASE)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_make_test_runs_ruff_and_mypy_before_pytest() -> None:
    steps = _run("make", "--dry-run", "--always-make", "test").stdout.splitlines()
    ruff = next(i for i, s in enumerate(steps) if s.endswith("/ruff check ."))
    mypy = next(i for i, s in enumerate(steps) if s.endswith("/mypy"))
    pytest_ = next(i for i, s in enumerate(steps) if s.endswith("-m pytest"))
    assert ruff < pytest_ and mypy < pytest_


def test_ruff_fails_on_a_private_member_and_an_unused_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\n\ndef peek(store: object) -> object:\n    return store._wheel\n")
    result = _run(str(BIN / "ruff"), "check", "--config", str(ROOT / "pyproject.toml"), "--no-cache", str(bad))
    assert result.returncode == 1
    assert "F401" in result.stdout and "SLF001" in result.stdout


def test_mypy_fails_on_an_untyped_def_and_a_wrong_type(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def untyped(x):\n    return x\n\n\ndef count() -> int:\n    return 'many'\n")
    result = _run(str(BIN / "mypy"), "--config-file", str(ROOT / "pyproject.toml"),
                  "--cache-dir", str(tmp_path / "cache"), str(bad))
    assert result.returncode == 1
    assert "[no-untyped-def]" in result.stdout and "[return-value]" in result.stdout


def _comments(root: Path, top: str) -> list[tuple[str, int, str]]:
    """(file, line, comment) of every comment (strings that mention noqa are not comments)."""
    found = []
    for path in sorted((root / top).rglob("*.py")):
        source = io.StringIO(path.read_text(encoding="utf-8"))
        for token in tokenize.generate_tokens(source.readline):
            if token.type == tokenize.COMMENT:
                found.append((str(path.relative_to(root)), token.start[0], token.string))
    return found


def _bare_noqa(root: Path, top: str) -> list[str]:
    return [f"{where}:{n}: {line.strip()}" for where, n, line in _comments(root, top)
            if (m := NOQA.search(line)) and (not NOQA_WITH_REASON.match(m["rest"]) or POINTER_ONLY.search(line))]


def _bare_type_ignores(root: Path, top: str) -> list[str]:
    return [f"{where}:{n}: {line.strip()}" for where, n, line in _comments(root, top)
            if (m := TYPE_IGNORE.search(line))
            and (not TYPE_IGNORE_WITH_REASON.match(m["rest"]) or POINTER_ONLY.search(line))]


@pytest.mark.parametrize("top", CHECKED)
def test_every_noqa_names_its_rules_and_says_why(top: str) -> None:
    bare = _bare_noqa(ROOT, top)
    assert not bare, "write `# noqa: CODE -- why`:\n" + "\n".join(bare)


@pytest.mark.parametrize("top", CHECKED)
def test_every_type_ignore_names_its_error_and_says_why(top: str) -> None:
    bare = _bare_type_ignores(ROOT, top)
    assert not bare, "write `# type: ignore[code]  # why`:\n" + "\n".join(bare)


@pytest.mark.parametrize("top", ["tests", "benchmarks"])
def test_the_checks_find_a_suppression_without_a_reason_outside_the_packages(tmp_path: Path, top: str) -> None:
    (tmp_path / top).mkdir()
    (tmp_path / top / "bad.py").write_text(
        "x: int = 'a'  # type: ignore[assignment]\n"
        "y: int = 'b'  # type: ignore[assignment]  # as above\n"
        "z: int = 'c'  # type: ignore[assignment]  # the test feeds a wrong type on purpose\n"
        "import os  # noqa: F401\n"
        "import re  # noqa: F401 -- same\n"
        "import io  # noqa: F401 -- re-exported for the fixtures\n")
    assert [b.split(": ", 1)[0] for b in _bare_type_ignores(tmp_path, top)] == [f"{top}/bad.py:1", f"{top}/bad.py:2"]
    assert [b.split(": ", 1)[0] for b in _bare_noqa(tmp_path, top)] == [f"{top}/bad.py:4", f"{top}/bad.py:5"]


def test_the_suppression_patterns_tell_a_reason_from_none() -> None:
    assert NOQA_WITH_REASON.match(NOQA.search("x  # noqa: BLE001 -- a hostile __str__")["rest"])
    assert NOQA_WITH_REASON.match(NOQA.search("x  # noqa: F401, F811 -- fixture")["rest"])
    assert not NOQA_WITH_REASON.match(NOQA.search("x  # noqa: E402")["rest"])
    assert not NOQA_WITH_REASON.match(NOQA.search("x  # noqa")["rest"])
    assert TYPE_IGNORE_WITH_REASON.match(TYPE_IGNORE.search("x  # type: ignore[arg-type]  # why")["rest"])
    assert not TYPE_IGNORE_WITH_REASON.match(TYPE_IGNORE.search("x  # type: ignore[arg-type]")["rest"])
    assert not TYPE_IGNORE_WITH_REASON.match(TYPE_IGNORE.search("x  # type: ignore  # why")["rest"])
    assert POINTER_ONLY.search("x  # noqa: SLF001 -- as above") and POINTER_ONLY.search("x  # type: ignore[misc]  # Same")
    assert not POINTER_ONLY.search("x  # noqa: SLF001 -- the same store the codec restores")
