"""Regenerate the README's screenshots from a demo store: ``python -m pipeline.analyst.screenshots OUTDIR``.

Writes PNGs of ``tokenwatch alerts list`` in an 80- and a 160-column terminal, ``tokenwatch
alerts show`` of the demo's Tor-exit alert, and the main plot of each notebook (the output of
its cell tagged ``main-plot``, the notebook executed against the same demo). The terminal ones
run the real CLI in a terminal (``pipeline.analyst.terminal_capture``) and draw what it showed
(``pipeline.analyst.ansi_png``), so they change when the CLI's output does. Notebook plots need
nbclient and ipykernel (the ``analyst`` or ``test`` extra).
"""

from __future__ import annotations

import argparse
import base64
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.analyst import ansi_png, explore
from pipeline.analyst.terminal_capture import Method, capture

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
MAIN_PLOT_TAG = "main-plot"
LIST_WIDTHS = (80, 160)
SHOW_WIDTH = 120
PROMPT = "\x1b[1;32m$\x1b[0m "


def tor_exit_alert(demo: Path) -> str:
    """The id of the alert that caught the demo's attack from a Tor exit (from its labels)."""
    settings = explore.settings_from_env(demo / "tokenwatch.toml")
    labels = explore.labels_frame(demo / "labels.json")
    tor = labels[labels["description"].fillna("").str.contains("Tor exit", case=False, regex=False)]
    ids = sorted({aid for found in explore.score(explore.alerts_frame(settings), tor)["alert_ids"] for aid in found})
    if not ids:
        raise LookupError(f"no alert in {demo} caught an attack from a Tor exit")
    return str(ids[0])


def impossible_travel_alert(demo: Path) -> str | None:
    """An impossible-travel alert of the demo, the map notebook 02 is best shown with."""
    alerts = explore.alerts_frame(explore.settings_from_env(demo / "tokenwatch.toml"),
                                  rule="geo_divergence.impossible_travel")
    return str(alerts["alert_id"].iloc[0]) if len(alerts) else None


def cli_screenshot(args: Sequence[str], columns: int, out: Path, env: Mapping[str, str] | None = None,
                   method: Method | None = None, shown_as: str | None = None) -> Path:
    """Run ``tokenwatch ARGS`` in a terminal ``columns`` wide and save what it showed, under a
    prompt line naming the command, as a PNG."""
    shown = capture([sys.executable, "-m", "pipeline.cli.main", *args], columns, env=env, method=method)
    prompt = f"{PROMPT}{shown_as or shlex.join(['tokenwatch', *args])}\n"
    ansi_png.render(prompt + shown, columns).save(out)
    return out


def main_plot_png(book: Any) -> bytes:
    """The PNG the executed notebook ``book`` drew in its cell tagged ``main-plot``."""
    for cell in book.cells:
        if MAIN_PLOT_TAG in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if "image/png" in data:
                    return base64.b64decode(data["image/png"])
            raise LookupError(f"the cell tagged {MAIN_PLOT_TAG!r} drew no PNG")
    raise LookupError(f"no cell is tagged {MAIN_PLOT_TAG!r}")


def notebook_env(demo: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPLBACKEND")}
    env.update(TOKENWATCH_CONFIG=str(demo / "tokenwatch.toml"), TOKENWATCH_EVENTS=str(demo / "events"),
               TOKENWATCH_LABELS=str(demo / "labels.json"), **(extra or {}))
    return env


def notebook_screenshot(path: Path, demo: Path, out: Path, extra_env: Mapping[str, str] | None = None,
                        timeout_s: int = 900) -> Path:
    """Execute the notebook at ``path`` against ``demo`` and save its main plot."""
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]  # nbformat's read has no annotations
    client = NotebookClient(book, kernel_name="python3", timeout=timeout_s,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=notebook_env(demo, extra_env))
    out.write_bytes(main_plot_png(book))
    return out


def terminal_screenshots(demo: Path, out_dir: Path, method: Method | None = None) -> list[Path]:
    """The ``alerts list`` (80 and 160 columns) and ``alerts show`` (Tor exit) screenshots."""
    config = demo / "tokenwatch.toml"
    shown_config = os.path.relpath(config) if not str(os.path.relpath(config)).startswith("..") else str(config)
    written = [cli_screenshot(["alerts", "list", "--config", str(config)], width, out_dir / f"alerts-list-{width}.png",
                              method=method, shown_as=f"tokenwatch alerts list --config {shown_config}")
               for width in LIST_WIDTHS]
    alert = tor_exit_alert(demo)
    written.append(cli_screenshot(["alerts", "show", alert, "--config", str(config)], SHOW_WIDTH,
                                  out_dir / "alerts-show-tor-exit.png", method=method,
                                  shown_as=f"tokenwatch alerts show {alert} --config {shown_config}"))
    return written


def notebook_screenshots(demo: Path, out_dir: Path, notebooks: Sequence[Path] | None = None) -> list[Path]:
    """Each notebook's main plot; notebook 02 investigates an impossible-travel alert when there is one."""
    travel = impossible_travel_alert(demo)
    written = []
    for path in notebooks or sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        extra = {"TOKENWATCH_ALERT": travel} if travel and path.name.startswith("02_") else {}
        written.append(notebook_screenshot(path, demo, out_dir / f"notebook-{path.stem.replace('_', '-')}.png", extra))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.analyst.screenshots", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path, help="where the PNGs go (the README's: notebooks/screenshots)")
    parser.add_argument("--demo", type=Path, default=Path("demo-output"),
                        help="a `tokenwatch demo --output-dir` directory (default: demo-output, from `make demo`)")
    parser.add_argument("--no-notebooks", action="store_true", help="only the terminal screenshots (seconds)")
    parser.add_argument("--method", choices=("tmux", "pty"), help="terminal to run the CLI in (default: tmux if installed)")
    args = parser.parse_args(argv)
    if not (args.demo / "tokenwatch.toml").is_file():
        parser.error(f"{args.demo} holds no demo: run `tokenwatch demo --output-dir {args.demo}` first")
    demo = args.demo.resolve()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    written = terminal_screenshots(demo, args.out_dir, args.method)
    if not args.no_notebooks:
        written += notebook_screenshots(demo, args.out_dir)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
