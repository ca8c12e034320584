"""docs/configuration.md's table says what daemon/config.py declares, row for row (as sqlite-utils'
test_docs.py keeps its documentation honest). On a mismatch the message holds the table to paste."""

from pathlib import Path

from r1.daemon.config import EXTERNAL_SETTINGS, SETTINGS, Setting

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _default_cell(setting: Setting) -> str:
    if setting.derive is not None:
        return setting.default  # a description of how it is computed
    return f"`{setting.default}`" if setting.default else "unset"


def declared_rows() -> list[str]:
    rows = [f"| `{s.env}` | {_default_cell(s)} | {s.help} |" for s in SETTINGS.values()]
    rows += [f"| `{env}` | unset | {meaning} |" for env, meaning in EXTERNAL_SETTINGS.items()]
    return rows


def documented_rows() -> list[str]:
    return [line for line in CONFIGURATION.read_text().splitlines() if line.startswith("| `")]


def test_configuration_table_matches_the_declarations() -> None:
    expected = declared_rows()
    assert all(cell.count("|") == 4 for cell in expected), "a declaration holds a '|', which would split its cell"
    assert documented_rows() == expected, "docs/configuration.md's table should read:\n" + "\n".join(expected)

