"""docs/configuration.md is what daemon/config.py declares, generated from it (as sqlite-utils'
test_docs.py keeps its documentation honest). On a mismatch the message says how to regenerate it."""

from pathlib import Path

from r1.daemon.config import EXTERNAL_SETTINGS, SETTINGS, configuration_page

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_configuration_page_is_generated_from_the_declarations() -> None:
    cells = [s.help for s in SETTINGS.values()] + list(EXTERNAL_SETTINGS.values())
    assert not any("|" in cell for cell in cells), "a declaration holds a '|', which would split its cell"
    assert CONFIGURATION.read_text() == configuration_page(), (
        "docs/configuration.md is out of date: python -m r1.daemon.config > docs/configuration.md")

