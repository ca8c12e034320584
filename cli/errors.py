"""The CLI's one kind of failure: shown as `Error: MESSAGE` on stderr, exit status 1, by main()."""

from __future__ import annotations

import click


class CliError(click.ClickException):
    """A failure to report and stop; raised anywhere, rendered in main() only."""
