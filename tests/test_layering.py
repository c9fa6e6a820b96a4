"""House rule: the core imports no orchestration, tracking or storage packages (only the thin
adapters in sweeper/adapters/ may), and matplotlib only in figures.py. Checked on the source
(an installed pandas may load pyarrow by itself)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"ray", "mlflow", "yaml", "pyarrow", "duckdb"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_modules_import_no_service_packages():
    files = sorted((ROOT / "sweeper").rglob("*.py")) + sorted((ROOT / "tasks").rglob("*.py"))
    files = [f for f in files if "adapters" not in f.relative_to(ROOT).parts]
    assert len(files) > 20
    for path in files:
        found = _imports(path)
        assert not found & SERVICES, (path, found & SERVICES)
        if path.name != "figures.py":
            assert "matplotlib" not in found, path
