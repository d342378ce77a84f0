"""The house the imports draw (issue 15): ``pipeline → detectors → schemas`` one way, and
inside ``pipeline`` packages by concern that import each other without a cycle, on top of
one configuration layer that imports none of them.

Every import that runs counts, also one inside a function: a deferred import still ties
the two packages together, it only hides the cycle from the interpreter; so does the
package ``__init__`` that importing a module runs first. Imports under
``if TYPE_CHECKING:`` do not run (annotations are strings here): they name a type for the
checker and are left out."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("schemas", "detectors", "pipeline")


def _modules() -> Iterator[tuple[str, Path]]:
    for top in TOP:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child)
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(name: str, path: Path) -> Iterator[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


CONFIG = "pipeline.config"


def unit(module: str) -> str:
    """The unit of layering: a top package, or a package (or root module) of ``pipeline``; the
    settings modules (``pipeline.config`` and every ``pipeline.*.config`` or ``*_config``
    module) are one unit, the configuration layer, wherever their package is."""
    parts = module.split(".")
    if parts[0] == "pipeline" and (parts[-1] == "config" or parts[-1].endswith("_config")):
        return CONFIG
    return ".".join(parts[:2]) if parts[0] == "pipeline" and len(parts) > 1 else parts[0]


def _parents(module: str) -> Iterator[str]:
    """The packages whose ``__init__`` importing ``module`` runs first."""
    parts = module.split(".")
    yield from (".".join(parts[:n]) for n in range(1, len(parts)))


def _graph() -> dict[str, set[str]]:
    modules = dict(_modules())
    imports = {name: list(_imports(name, path)) for name, path in modules.items()}
    graph: dict[str, set[str]] = {}
    for name in modules:
        source = unit(name)
        graph.setdefault(source, set())
        # what the module imports, and what the ``__init__`` of each of its packages does
        for target in [*imports[name], *(t for parent in _parents(name) if parent in modules for t in imports[parent])]:
            if target.split(".")[0] in TOP and target in modules:
                if unit(target) != source:
                    graph[source].add(unit(target))
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every unit ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


GRAPH = _graph()


@pytest.mark.parametrize(("layer", "forbidden"), [("schemas", ("detectors", "pipeline")), ("detectors", ("pipeline",))])
def test_lower_layers_never_import_higher_ones(layer: str, forbidden: tuple[str, ...]) -> None:
    upward = sorted(target for target in GRAPH[layer] if target.split(".")[0] in forbidden)
    assert upward == [], f"{layer} imports {upward}"


PACKAGES = frozenset(
    f"pipeline.{path.parent.name}" for path in (ROOT / "pipeline").glob("*/__init__.py")
)
"""The packages of ``pipeline`` (by concern); the rest of it is root modules and the config layer."""


def test_the_config_layer_imports_no_pipeline_package() -> None:
    """Settings are loaded by every package, so they may rest only on schemas, detectors and
    root leaf modules (``url_credentials``…), directly or through anything they import."""
    assert CONFIG in GRAPH and "pipeline.kafka" in PACKAGES
    reached = sorted(_reach(GRAPH, CONFIG) & PACKAGES)
    assert reached == [], f"{CONFIG} imports {reached}"


def test_units_put_every_settings_module_in_the_config_layer() -> None:
    assert unit("pipeline.config") == unit("pipeline.kafka.config") == unit("pipeline.ingest.enrich_config") == CONFIG
    assert unit("pipeline.response.config") == CONFIG and unit("pipeline.response.notify") == "pipeline.response"
    assert unit("pipeline.url_credentials") == "pipeline.url_credentials" and unit("detectors.base") == "detectors"
    assert list(_parents("pipeline.store.config")) == ["pipeline", "pipeline.store"]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the units, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_pipeline_packages_import_each_other_without_a_cycle() -> None:
    cycle = _cycle({node: edges for node, edges in GRAPH.items() if node.startswith("pipeline")})
    assert cycle is None, " -> ".join(cycle or ())


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
