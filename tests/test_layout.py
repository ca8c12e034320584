"""The house rules that keep r1 easy to change: packaging, a thin CLI, imports pointing one way."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"aiohttp", "huggingface_hub", "llama_cpp", "mlx", "mlx_lm", "transformers", "numpy", "gguf", "sqlite_utils", "psutil"}
# Costly standard modules that the CLI's start (r1 list: well under 100 ms) does without.
SLOW_STDLIB = {"typing", "dataclasses", "inspect", "http", "ssl", "email", "asyncio", "subprocess"}


def test_every_package_folder_is_packaged() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        "r1." + ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("daemon", "cli")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found == listed


def test_cli_imports_nothing_heavy() -> None:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import r1.cli.main"],
                         capture_output=True, text=True, check=True).stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert not imported & HEAVY, f"the CLI imports {sorted(imported & HEAVY)} at start-up"
    assert not imported & SLOW_STDLIB, f"the CLI imports {sorted(imported & SLOW_STDLIB)} at start-up"
    assert "r1.daemon.store" not in out and "r1.daemon.app" not in out


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


def _uses_aiohttp_web(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aiohttp"):
            if node.module == "aiohttp.web" or any(alias.name == "web" for alias in node.names):
                return True
        if isinstance(node, ast.Import) and any(alias.name.startswith("aiohttp.web") for alias in node.names):
            return True
    return False


def test_only_the_api_serves_http() -> None:
    for path in (ROOT / "daemon").rglob("*.py"):
        if path.parent.name == "api" or path.name in ("app.py", "server.py"):
            continue
        assert not _uses_aiohttp_web(path), f"{path.relative_to(ROOT)} uses aiohttp.web"
        if path.parent.name != "pull":  # pulls are the one place that is an HTTP client
            assert "aiohttp" not in _imports(path), f"{path.relative_to(ROOT)} imports aiohttp"
