"""Every notebook in notebooks/ runs top to bottom against a store made by a small demo run.

The demo (``demo_dir`` in conftest.py) writes the alert store, the generated events and
their labels into a temporary directory; each notebook is executed
with nbclient in the ``python3`` kernel of this interpreter (ipykernel is a test extra),
its inputs pointed there through ``TOKENWATCH_CONFIG`` / ``TOKENWATCH_EVENTS`` /
``TOKENWATCH_LABELS``. A cell that raises fails the test with the cell's traceback.
"""

from __future__ import annotations

import os
import sys
from io import BytesIO
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from PIL import Image

from pipeline.analyst.screenshots import MAIN_PLOT_TAG, main_plot_png
from tests.conftest import TEST_HASH_KEY

NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 120


def kernel_env(demo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENWATCH_", "MPLBACKEND"))}
    env.update(
        TOKENWATCH_CONFIG=str(demo / "tokenwatch.toml"),
        TOKENWATCH_EVENTS=str(demo / "events"),
        TOKENWATCH_LABELS=str(demo / "labels.json"),
        TOKENWATCH_TOKEN_HASH_KEY=TEST_HASH_KEY.decode(),  # the demo's: hashed token ids join
        TOKENWATCH_STATE_DIR=str(demo / "state"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    return env


def test_there_are_four_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_explore.ipynb", "02_investigate.ipynb", "03_tune_detector.ipynb", "04_evaluate_anomaly.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    assert book.metadata.get("kernelspec", {}).get("name") == "python3"
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: strip the outputs before committing"
            assert cell.execution_count is None, f"{path.name}: strip the execution counts before committing"


def test_python3_kernel_is_this_interpreter() -> None:
    spec = KernelSpecManager().get_kernel_spec("python3")
    manager = KernelManager(kernel_name="python3")
    manager.connection_file = "unused.json"
    command = manager.format_kernel_cmd()
    assert Path(command[0]).resolve() == Path(sys.executable).resolve(), (spec.resource_dir, command)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, demo_dir: Path) -> None:
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute(env=kernel_env(demo_dir))  # raises CellExecutionError naming the failing cell
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    plots = sum("image/png" in o.get("data", {}) for c in book.cells if c.cell_type == "code" for o in c.outputs)
    assert plots >= 1, f"{path.name} drew no plot"
    main = Image.open(BytesIO(main_plot_png(book)))  # what the screenshot generator exports
    assert main.format == "PNG" and main.width >= 600 and main.height >= 250, main.size


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_tags_one_main_plot(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    tagged = [c for c in book.cells if MAIN_PLOT_TAG in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: tag one plotting cell {MAIN_PLOT_TAG!r}"
