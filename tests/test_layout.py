"""The package's layout rules (docs/ARCHITECTURE.md): imports go one way along the flow, no
module imports another's private names, library code leaves process-wide settings alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hypernas"
# The flow, left to right: a package may import only from packages earlier in this list.
ORDER = ["errors", "cluster", "graphs", "spaces", "data", "hypernet", "runs", "ranking",
         "refine", "export", "search", "report", "testing", "cli", "__main__"]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["hypernas", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, str]]:
    """(module imported, name imported) for every relative import, lazy ones included."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            out += [(target, alias.name) for alias in node.names]
    return out


def _stage(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "hypernas"


MODULES = _modules()


def test_the_flow_order_names_every_package_and_module() -> None:
    assert {_stage(m) for m in MODULES} - {"hypernas"} == set(ORDER)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "hypernas"))
def test_a_module_imports_only_earlier_stages(module: str) -> None:
    mine = ORDER.index(_stage(module))
    for target, _ in _imports(module, MODULES[module]):
        if _stage(target) != _stage(module):
            assert ORDER.index(_stage(target)) < mine, f"{module} imports {target}"


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    edges = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, name in _imports(module, path):
            dep = f"{target}.{name}" if f"{target}.{name}" in MODULES else target
            if dep in MODULES and dep != module and not module.startswith(dep + "."):
                edges[module].add(dep)
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for n in edges[m]:
            assert state.get(n) != 1, "import cycle: " + " -> ".join(trail + [m, n])
            if n not in state:
                visit(n, trail + [m])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [])


def test_no_module_imports_another_modules_private_names() -> None:
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for target, name in _imports(module, path):
            # a package-private module (``cli/_common.py``) may share names with its siblings
            private_sibling = target.rsplit(".", 1)[-1].startswith("_") and \
                target.rsplit(".", 1)[0] == package
            if name.startswith("_") and not name.startswith("__") and not private_sibling:
                pytest.fail(f"{module} imports the private name {target}.{name}")


# (call, where it may be made): process-wide settings belong to the application, or to a Ray
# worker's own process
SETTINGS = {"set_num_threads": ("hypernas.cli", "_train_on_worker", "_ActorWorker"),
            "set_verbosity": ("hypernas.cli",), "setdefault": ("hypernas.cluster",)}


def test_library_code_leaves_process_wide_settings_to_the_application() -> None:
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        scopes: dict[int, set[str]] = {}  # node -> the functions and classes around it
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                for child in ast.walk(node):
                    scopes.setdefault(id(child), set()).add(node.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                allowed = SETTINGS.get(node.func.attr)
                if node.func.attr == "setdefault" and "environ" not in ast.unparse(node.func):
                    continue
                if allowed is not None:
                    assert module.startswith(allowed[0]) or scopes.get(id(node), set()) & set(allowed), \
                        f"{module}:{node.lineno} calls {ast.unparse(node.func)}"


def test_import_hypernas_imports_no_heavy_dependency() -> None:
    code = ("import sys, hypernas; "
            "print(sorted(m for m in ('optuna', 'ray', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_every_package_says_what_it_takes_and_gives() -> None:
    for module, path in MODULES.items():
        if path.name == "__init__.py" and module != "hypernas":
            doc = ast.get_docstring(ast.parse(path.read_text()))
            assert doc and len(doc.splitlines()) >= 3, f"{module} has no docstring to speak of"


def test_a_clone_folder_named_hypernas_does_not_hide_the_package(tmp_path: Path) -> None:
    """Run from the parent of a clone named ``hypernas``, ``import hypernas`` is still the package
    (scripts/setup.sh puts the checkout on sys.path, so Python's path search finds the real
    package before the clone folder can become an empty namespace package)."""
    clone = tmp_path / "hypernas"
    clone.mkdir()
    (clone / "README.md").write_text("a clone's root holds no __init__.py\n")
    out = subprocess.run(
        [sys.executable, "-c", "import hypernas; print(hypernas.__file__); hypernas.load"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import hypernas

    assert Path(out.stdout.strip()) == Path(hypernas.__file__).resolve()
