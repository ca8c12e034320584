"""The README's configuration table says what daemon/config.py declares, row for row (as sqlite-utils'
test_docs.py keeps its documentation honest). On a mismatch the message holds the table to paste."""

from pathlib import Path

from r1.daemon.config import EXTERNAL_SETTINGS, SETTINGS, Setting

README = Path(__file__).resolve().parent.parent / "README.md"


def _default_cell(setting: Setting) -> str:
    if setting.derive is not None:
        return setting.default  # a description of how it is computed
    return f"`{setting.default}`" if setting.default else "unset"


def declared_rows() -> list[str]:
    rows = [f"| `{s.env}` | {_default_cell(s)} | {s.help} |" for s in SETTINGS.values()]
    rows += [f"| `{env}` | unset | {meaning} |" for env, meaning in EXTERNAL_SETTINGS.items()]
    return rows


def readme_rows() -> list[str]:
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| `")]


def test_configuration_table_matches_the_declarations() -> None:
    expected = declared_rows()
    assert all(cell.count("|") == 4 for cell in expected), "a declaration holds a '|', which would split its cell"
    assert readme_rows() == expected, "README.md's configuration table should read:\n" + "\n".join(expected)

