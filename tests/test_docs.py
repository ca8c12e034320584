"""The docs cannot fall behind the code: docs/api.md's route table lists exactly the routes the app
registers, docs/architecture.md's import map is what the daemon's modules import, and every relative
link in README.md and docs/*.md leads to a file (and heading) that exists."""

import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.import_graph import package_graph

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
ROW = re.compile(r"^\| (GET|HEAD|POST|DELETE) \| (\S+) \|")
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)")


def documented_routes() -> set[tuple[str, str]]:
    """(method, path) of each row of the "Every route" table."""
    section = API.read_text().split("## Every route", 1)[1].split("\n## ", 1)[0]
    return {(m.group(1), m.group(2)) for line in section.splitlines() if (m := ROW.match(line))}


def registered_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of each route; the HEAD aiohttp adds beside every GET is left out, as the page says."""
    routes = {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}
    return {(method, path) for method, path in routes if not (method == "HEAD" and ("GET", path) in routes)}


async def test_api_page_lists_every_route(api: Any) -> None:
    registered, documented = registered_routes(api.client.app), documented_routes()
    assert registered - documented == set(), "docs/api.md's 'Every route' table lacks these routes"
    assert documented - registered == set(), "docs/api.md's 'Every route' table lists routes the app does not have"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as dashes."""
    headings = (line.lstrip("#").strip() for line in page.read_text().splitlines() if line.startswith("#"))
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_relative_links_resolve() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target, anchor in LINK.findall(page.read_text()):
            if "://" in target or (not target and not anchor):
                continue
            path = page.parent / target if target else page
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert broken == [], "links to files or headings that do not exist"


def command_after(marker: str, text: str) -> str:
    """The first line of the ```sh block after `<!-- marker -->`, as .ci/run reads the test command."""
    found = re.search(rf"<!-- {marker} -->\n```sh\n(.+)\n```", text)
    assert found, f"README.md has no ```sh block right after <!-- {marker} -->"
    return found.group(1)


def test_readme_is_a_short_page_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250, "README.md is the newcomer's page: move reference material to docs/"
    assert command_after("run-command", text).endswith('r1 run smollm2:135m "Why is the sky blue?"')
    assert command_after("test-command", text).endswith("pytest")


ARCHITECTURE = ROOT / "docs" / "architecture.md"
DAEMON_PATH = re.compile(r"`daemon/([\w/]+?)(?:\.py|/)?`")
NAME = re.compile(r"`([\w/]+)`")


def import_map() -> list[tuple[set[str], set[str] | None]]:
    """The architecture page's "Where each concern lives" rows: (the daemon packages and modules a row is
    about, what they may import of r1, or None for "all of the above"), as dotted names under r1.daemon."""
    section = ARCHITECTURE.read_text().split("## Where each concern lives", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != 3 or not (homes := DAEMON_PATH.findall(cells[1])):
            continue
        dotted = {"r1.daemon." + home.replace("/", ".") for home in homes}
        allowed = None if "all of the above" in cells[2] else {
            "r1.daemon." + name.replace("/", ".") for name in NAME.findall(cells[2])}
        rows.append((dotted, allowed))
    return rows


def test_architecture_page_is_the_daemons_import_map() -> None:
    graph = package_graph(ROOT, {"daemon": "r1.daemon"})
    rows = import_map()
    documented = set().union(*(homes for homes, _ in rows))
    assert set(graph) - documented - {"r1.daemon", "r1.daemon.__main__"} == set(), (
        "docs/architecture.md has no row for these; add one with what they may import")
    wrong = {}
    for homes, allowed in rows:
        for home in homes & set(graph):
            if allowed is not None and (extra := graph[home] - allowed - homes - {"r1.daemon"}):
                wrong[home] = sorted(extra)
    assert wrong == {}, "these import what their row in docs/architecture.md does not allow"
