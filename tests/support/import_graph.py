"""Who imports whom among r1's modules, read from their source (function-level imports too): the graphs
the layout test checks for cycles and the architecture page's import map is checked against."""

import ast
from pathlib import Path


def import_graph(root: Path, packages: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports, anywhere in it (function bodies too),
    with relative imports resolved. `packages` maps folders under `root` to dotted names."""
    modules: dict[str, Path] = {}
    for folder, dotted in packages.items():
        for path in (root / folder).rglob("*.py"):
            parts = path.relative_to(root / folder).with_suffix("").parts
            name = ".".join([dotted, *parts[:-1]] if parts[-1] == "__init__" else [dotted, *parts])
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # `from . import render` imports a module; `from .client import Client`, a name in one.
                targets |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names}
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a -> b -> ... -> a), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        path.append(name)
        for target in sorted(graph[name]):
            if cycle := visit(target):
                return cycle
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        if cycle := visit(name):
            return cycle
    return None


def package_graph(root: Path, packages: dict[str, str]) -> dict[str, set[str]]:
    """Package -> the packages it imports: import_graph with each module collapsed to the package (folder)
    it is in, so a.x -> b.y and b.z -> a.w is a cycle though no module cycle exists. Modules directly
    in a top package (r1.daemon.config, r1.cli.main) stand for themselves: the top is no one concern."""
    inits = {".".join([dotted, *init.parent.relative_to(root / folder).parts])
             for folder, dotted in packages.items() for init in (root / folder).rglob("__init__.py")}

    def home(module: str) -> str:
        package = module if module in inits else module.rpartition(".")[0]
        return module if package in packages.values() else package

    graph: dict[str, set[str]] = {}
    for module, targets in import_graph(root, packages).items():
        graph.setdefault(home(module), set()).update(home(target) for target in targets)
    return {package: targets - {package} for package, targets in graph.items()}
