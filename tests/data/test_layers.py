"""towerrec.data is layered: a module imports only modules below it (imports inside functions count),
so there are no import cycles and a reader can go bottom-up."""
from __future__ import annotations

import ast
from pathlib import Path

import towerrec.data

# bottom to top
LAYERS = ["validate", "idmap", "columns", "tables", "stream", "interactions", "delta", "stream_log", "sequences", "features", "load", "dataset",
          "synthetic", "converters", "registry"]


def imported_data_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[2] for n in names if n.startswith("towerrec.data.") and n.split(".")[2] in LAYERS}
    return found


def test_every_data_module_imports_only_lower_layers():
    folder = Path(towerrec.data.__file__).parent
    modules = sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")
    assert sorted(LAYERS) == modules, "a new module needs a place in LAYERS"
    for name in LAYERS:
        higher = {m for m in imported_data_modules(folder / f"{name}.py") if LAYERS.index(m) >= LAYERS.index(name)}
        assert not higher, f"towerrec.data.{name} imports {sorted(higher)}, which sit at or above it"
