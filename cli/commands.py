"""How r1's command groups behave: commands in the order declared, their help whole, `ls` for `list`,
Ctrl-C as exit status 130; and what their commands share (--json)."""

from __future__ import annotations

import json

import click

JSON_HELP = "print the daemon's answer as JSON"

WHOLE = 1000  # characters: a command's first sentence is listed whole (wrapped), never cut with "..."


def print_json(value: object) -> None:
    """A --json command's output: the daemon's answer, indented."""
    print(json.dumps(value, indent=2))


class Commands(click.Group):
    """r1's commands, listed in the order declared; `ls` is `list`; Ctrl-C exits with status 130."""

    aliases = {"ls": "list"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(name, name))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, command.get_short_help_str(WHOLE)) for name, command in self.commands.items()
                if not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # 128 + SIGINT, as a shell reports it; click would print a blank line and raise Abort.
            ctx.exit(130)


def help_of(group: click.Group, words: tuple[str, ...]) -> str:
    """`r1 help WORDS`: the help of the command `r1 WORDS` names (the whole command's with no words)."""
    ctx = click.Context(group, info_name="r1")
    command: click.Command = group
    for word in words:
        found = command.get_command(ctx, word) if isinstance(command, click.Group) else None
        if found is None:
            raise click.UsageError(f"no such command: r1 {' '.join(words)} (`r1 help` lists them)")
        ctx, command = click.Context(found, info_name=word, parent=ctx), found
    return command.get_help(ctx)
