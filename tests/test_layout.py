"""The house rules that keep r1 easy to change: packaging, a thin CLI, imports pointing one way."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.support.import_graph import find_cycle, import_graph, package_graph

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"daemon": "r1.daemon", "cli": "r1.cli"}  # folder -> the name it is installed under
HEAVY = {"aiohttp", "huggingface_hub", "llama_cpp", "mlx", "mlx_lm", "transformers", "numpy", "gguf", "sqlite_utils", "psutil"}
# Costly standard modules that the CLI's start (r1 list: under 150 ms) does without. click
# itself imports some (typing, inspect); r1's own start-up modules import none of them.
SLOW_STDLIB = {"typing", "dataclasses", "inspect", "http", "ssl", "email", "asyncio", "subprocess"}
# What the CLI may use of the daemon's code: its version, settings, the option table; and the
# daemon itself, for `r1 serve`.
CLI_USES_OF_DAEMON = {"r1.daemon", "r1.daemon.config", "r1.daemon.options", "r1.daemon.server"}


def test_every_package_folder_is_packaged() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        "r1." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("daemon", "cli")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed


def _imported_at_start(code: str) -> set[str]:
    """The modules `python -c code` imports, as full dotted names."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True).stderr
    return {line.rsplit("|", 1)[-1].strip() for line in out.splitlines() if line.startswith("import time:") and "|" in line}


def _top_level_imports(path: Path) -> set[str]:
    """What a module imports when it is imported: everything outside function bodies."""
    names: set[str] = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        pending.extend(ast.iter_child_nodes(node))
    return names


def test_cli_imports_nothing_heavy() -> None:
    modules = _imported_at_start("import r1.cli.main")
    imported = {name.split(".")[0] for name in modules}
    assert not imported & HEAVY, f"the CLI imports {sorted(imported & HEAVY)} at start-up"
    clicks = {name.split(".")[0] for name in _imported_at_start("import click")}
    assert not (imported - clicks) & SLOW_STDLIB, f"the CLI imports {sorted((imported - clicks) & SLOW_STDLIB)} at start-up"
    assert "r1.daemon.store" not in modules and "r1.daemon.app" not in modules
    ours = {name for name in modules if name.startswith("r1.")}
    assert {"r1.cli.main", "r1.cli.completion"} <= ours
    for name in sorted(ours):
        slow = _top_level_imports(_module_path(name)) & SLOW_STDLIB
        assert not slow, f"{name} imports {sorted(slow)} at start-up: import it where it is needed"


def _module_path(name: str) -> Path:
    """The source file of an r1 module: r1.cli.main -> cli/main.py, r1.daemon -> daemon/__init__.py."""
    _, folder, *rest = name.split(".")
    base = ROOT / folder / Path(*rest)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_no_import_cycles() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert "r1.cli.api" in graph["r1.cli.run"] and "r1.daemon.options" in graph["r1.daemon.options.check"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_sees_relative_and_function_level_imports(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "a.py", "b.py"):
        (tmp_path / "pkg" / name).write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from .sub import c\n")
    (tmp_path / "pkg" / "sub" / "c.py").write_text("def late():\n    from .. import b\n")
    assert find_cycle(import_graph(tmp_path, {"pkg": "x"})) is None
    (tmp_path / "pkg" / "b.py").write_text("import x.a\n")
    assert find_cycle(import_graph(tmp_path, {"pkg": "x"})) == ["x.a", "x.sub.c", "x.b", "x.a"]


def test_no_package_cycles() -> None:
    graph = package_graph(ROOT, PACKAGES)
    assert "r1.daemon.intake" in graph["r1.daemon.intake.pull"] and "r1.daemon.config" in graph["r1.daemon.intake.tools"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle or [])


def test_package_graph_sees_cycles_between_packages(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / "pkg" / folder).mkdir(parents=True)
        (tmp_path / "pkg" / folder / "__init__.py").write_text("")
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "top.py").write_text("from .one import a\n")
    (tmp_path / "pkg" / "one" / "a.py").write_text("from ..two import b\n")
    (tmp_path / "pkg" / "two" / "c.py").write_text("from ..top import x\n")
    assert package_graph(tmp_path, {"pkg": "p"}) == {"p": set(), "p.top": {"p.one"}, "p.one": {"p.two"},
                                                      "p.two": {"p.top"}}
    (tmp_path / "pkg" / "two" / "c.py").write_text("from ..one import a\n")  # no module cycle: a -> b, c -> a
    assert find_cycle(import_graph(tmp_path, {"pkg": "p"})) is None
    assert find_cycle(package_graph(tmp_path, {"pkg": "p"})) == ["p.one", "p.two", "p.one"]


def test_cli_uses_only_the_daemons_public_modules() -> None:
    graph = import_graph(ROOT, PACKAGES)
    for name, targets in graph.items():
        if name.startswith("r1.cli."):
            internals = {t for t in targets if t.startswith("r1.daemon")} - CLI_USES_OF_DAEMON
            assert not internals, f"{name} imports {sorted(internals)}"
    for shared in ("config", "options"):
        third_party = _imports(_module_path(f"r1.daemon.{shared}")) - set(sys.stdlib_module_names) - {"__future__"}
        assert not third_party, f"daemon/{shared}.py, which the CLI imports, imports {third_party}"
        assert not {t for t in graph[f"r1.daemon.{shared}"]}, f"daemon/{shared}.py imports more of the daemon"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_store_depends_on_sqlite_utils_and_stdlib_only() -> None:
    for path in (ROOT / "daemon" / "store").glob("*.py"):
        third_party = _imports(path) - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= {"sqlite_utils"}, f"{path.name} imports {third_party}"


# Each table of r1.db and where it lives: its migration and every query on it, in that module (or folder) only.
TABLE_OWNERS = {
    **dict.fromkeys(("blobs", "manifests", "manifest_files", "models", "blob_sources"), "daemon/store/"),
    "remotes": "daemon/remote/records.py", "remote_prices": "daemon/remote/records.py",
    "responses": "daemon/stored_responses.py",
    "requests": "daemon/request_log/records.py",
    "kernel_crashes": "daemon/kernel_crashes.py",
}
SQL_TABLE = re.compile(r"\b(TABLE|FROM|INTO|UPDATE|JOIN|ON)\s+(\w+)")  # r1's SQL keywords are upper case


def _tables_named(path: Path) -> set[tuple[str, str]]:
    """(keyword, table) for each table a module's SQL names, and ("table", name) for sqlite-utils' db.table(name)."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= set(SQL_TABLE.findall(node.value))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "table"
              and node.args and isinstance(node.args[0], ast.Constant)):
            found.add(("table", node.args[0].value))
    return found


def test_each_table_is_touched_only_by_its_feature() -> None:
    created: dict[str, str] = {}
    for top in PACKAGES:
        for path in (ROOT / top).rglob("*.py"):
            where = str(path.relative_to(ROOT))
            for keyword, table in _tables_named(path):
                if keyword == "TABLE":
                    created[table] = where
                owner = TABLE_OWNERS.get(table)
                if owner is not None:
                    assert where.startswith(owner), f"{where} uses the table {table}, which {owner} owns"
    assert set(created) == set(TABLE_OWNERS), "a new table: name its owner in TABLE_OWNERS"
    assert all(where.startswith(TABLE_OWNERS[table]) for table, where in created.items())


def test_the_store_and_the_database_import_no_feature() -> None:
    graph = import_graph(ROOT, PACKAGES)
    assert not graph["r1.daemon.database"], f"daemon/database.py imports {sorted(graph['r1.daemon.database'])}"
    shared = ("r1.daemon.store", "r1.daemon.database", "r1.daemon.errors", "r1.daemon.metadata")
    for name, targets in graph.items():
        if name.startswith("r1.daemon.store"):
            features = {t for t in targets if not t.startswith(shared)}
            assert not features, f"{name} imports {sorted(features)}: the store keeps models only"


def _uses_aiohttp_web(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aiohttp") and (
                node.module == "aiohttp.web" or any(alias.name == "web" for alias in node.names)):
            return True
        if isinstance(node, ast.Import) and any(alias.name.startswith("aiohttp.web") for alias in node.names):
            return True
    return False


def test_only_the_api_serves_http() -> None:
    for path in (ROOT / "daemon").rglob("*.py"):
        if path.parent.name == "api" or path.name in ("app.py", "server.py"):
            continue
        assert not _uses_aiohttp_web(path), f"{path.relative_to(ROOT)} uses aiohttp.web"
        folder = path.parent.relative_to(ROOT / "daemon").as_posix()
        if folder not in ("intake/pull", "remote"):  # pulls and remote engines are the HTTP clients
            assert "aiohttp" not in _imports(path), f"{path.relative_to(ROOT)} imports aiohttp"


def test_only_the_wire_protocol_of_the_runner_is_shared() -> None:
    """runner/ is the child process; the daemon launches it (`python -m r1.daemon.runner`) and speaks its
    protocol, and imports nothing else of it. Backends are the runner's alone, so they may."""
    shared = {"r1.daemon.runner.protocol"}
    child_side = ("r1.daemon.runner", "r1.daemon.backends")
    for name, targets in import_graph(ROOT, PACKAGES).items():
        if name in child_side or name.startswith(tuple(f"{side}." for side in child_side)):
            continue
        reached = {t for t in targets if t == "r1.daemon.runner" or t.startswith("r1.daemon.runner.")} - shared
        assert not reached, f"{name} imports {sorted(reached)}: the runner's own modules, not its protocol"


def test_no_test_module_imports_another() -> None:
    """Helpers live in tests/support and shared fixtures in conftest.py: a test module imported by another
    has its tests run twice and hides what the helper is."""
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):  # `from tests import test_x` and `from .test_x import y` too
                module = f"tests.{node.module or ''}".rstrip(".") if node.level else node.module or ""
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            else:
                continue
            imported = [name for name in names if name.startswith(("test_", "tests.test_"))]
            assert not imported, f"{path.relative_to(ROOT)} imports {imported}: move what it needs to tests/support"
