"""The screenshot generator: the real CLI in a terminal of the asked width, drawn to PNG."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.analyst import ansi_png, screenshots
from pipeline.analyst.terminal_capture import capture
from tests.notebooks.conftest import demo_env

METHODS = ["pty", *(["tmux"] if shutil.which("tmux") else [])]  # pty always; tmux where installed


@pytest.mark.parametrize("method", METHODS)
def test_capture_runs_the_command_in_a_terminal_of_that_size(method: str) -> None:
    script = ("import os, sys; size = os.get_terminal_size(); "
              "print(sys.stdout.isatty(), size.columns, os.environ['COLUMNS'], '\\x1b[31mred\\x1b[0m')")
    shown = capture([sys.executable, "-c", script], 93, rows=40, method=method)  # type: ignore[arg-type]  # the parametrised method is a str; capture wants its Literal
    (row,) = ansi_png.parse(shown, 93)  # tmux re-encodes the escapes: compare what a terminal shows
    assert "".join(c for c, _ in row).rstrip() == "True 93 93 red"
    assert [style.fg for _, style in row[11:14]] == [ansi_png.PALETTE[1]] * 3 and row[10][1].fg is None


def test_ansi_text_is_drawn_cell_by_cell_with_its_colours() -> None:
    text = "ab\x1b[1;31mcrit\x1b[0m \x1b[38;5;28mgreen\x1b[0m \x1b[38;2;1;2;3mrgb\x1b]0;title\x07\n" + "x" * 25
    rows = ansi_png.parse(text, 20)
    assert ["".join(c for c, _ in row) for row in rows] == ["abcrit green rgb", "x" * 20, "x" * 5]
    assert rows[0][2][1].fg == ansi_png.PALETTE[1] and rows[0][2][1].bold
    assert rows[0][7][1].fg == (0, 135, 0) and rows[0][13][1].fg == (1, 2, 3) and rows[0][0][1].fg is None
    image = ansi_png.render(text, 20)
    assert image.size == ansi_png.image_size(20, 3)
    assert (255 - 14, 76, 76) in {image.getpixel((x, y)) for x in range(image.width) for y in range(image.height)}


def test_generator_writes_terminal_pngs_of_the_expected_sizes(demo_dir: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in demo_env(demo_dir).items():
        monkeypatch.setenv(key, value)
    written = screenshots.terminal_screenshots(demo_dir, tmp_path)
    assert [p.name for p in written] == ["alerts-list-80.png", "alerts-list-160.png", "alerts-show-tor-exit.png"]
    cell_w, cell_h = ansi_png.cell_size()
    alerts = len(screenshots.explore.alerts_frame(screenshots.explore.settings_from_env(demo_dir / "tokenwatch.toml")))
    for path, columns in zip(written, (80, 160, screenshots.SHOW_WIDTH), strict=True):
        image = Image.open(path)
        assert image.format == "PNG"
        assert image.width == 2 * ansi_png.PAD + columns * cell_w
        rows, rest = divmod(image.height - 2 * ansi_png.PAD, cell_h)
        assert rest == 0 and rows >= (alerts + 2 if "list" in path.name else 12), (path.name, rows)
        if "list" in path.name:  # severities in colour: the CLI saw a terminal
            colours = {image.getpixel((x, y)) for x in range(0, image.width, 2) for y in range(0, image.height, 2)}
            assert any(r > 150 and g < 100 and b < 100 for r, g, b in colours), f"{path.name}: no severity colour"


def test_the_tor_exit_alert_is_found_from_the_demos_labels(demo_dir: Path) -> None:
    alert = screenshots.tor_exit_alert(demo_dir)
    doc = screenshots.explore.alert_doc(alert, screenshots.explore.settings_from_env(demo_dir / "tokenwatch.toml"))
    assert doc["source"]["ip"].startswith("185.220.")  # the synthetic world's Tor exit range
