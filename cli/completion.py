"""Shell completion: the scripts `r1 completion SHELL` prints, and model names from the daemon.

The shell runs `r1` with _R1_COMPLETE set and the words typed so far; click answers with
commands, options, and what an argument's `shell_complete` function here returns.
"""

from __future__ import annotations

import os

import click
from click.shell_completion import (BashComplete, CompletionItem, add_completion_class, get_completion_class,
                                    split_arg_string)

from ..daemon.config import ConfigError, Settings
from .client import ApiError, Client, DaemonUnavailable

COMPLETE_VAR = "_R1_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
NAMES_TIMEOUT = 2.0  # a daemon that does not answer at once must not hang the shell

# click's bash script sends bash's words, and bash splits words at ':' (COMP_WORDBREAKS), which
# model names are full of. This one sends the line up to the cursor and its last word, as click's
# fish script does, and hands bash back only what follows the last ':' of that word: all bash
# counts as the word being completed.
BASH_SOURCE = """\
%(complete_func)s() {
    local IFS=$'\\n'
    local line=${COMP_LINE:0:COMP_POINT}
    local current=${line##*[[:space:]]}
    local typed=""
    if [[ $COMP_WORDBREAKS == *:* && $current == *:* ]]; then
        typed=${current%%"${current##*:}"}
    fi
    local response completion type value
    response=$(env COMP_WORDS="$line" COMP_CWORD="$current" %(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read type value <<< "$completion"
        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("${value#"$typed"}")
        fi
    done
    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""


@add_completion_class
class Bash(BashComplete):
    """click's bash completion, with words taken from the line so that names with ':' complete."""

    source_template = BASH_SOURCE

    def get_completion_args(self) -> tuple[list[str], str]:
        args = split_arg_string(os.environ["COMP_WORDS"])[1:]
        incomplete = os.environ["COMP_CWORD"]
        if incomplete and args and args[-1] == incomplete:
            args.pop()  # the word being completed is on the line too
        return args, incomplete


def script(command: click.Command, shell: str) -> str:
    """The completion script for `shell`, to be evaluated by it."""
    complete = get_completion_class(shell)
    if complete is None:  # SHELLS are those click and Bash above register
        raise ValueError(f"no completion for the shell {shell!r}")
    return complete(command, {}, "r1", COMPLETE_VAR).source()


def _models(path: str) -> list[dict[str, object]]:
    """The models in the daemon's answer to GET `path`; none when no daemon answers (completing
    never starts one, nor prints an error into the shell's line)."""
    try:
        answer = Client(Settings.from_env().socket, timeout=NAMES_TIMEOUT).request("GET", path)
    except (ConfigError, DaemonUnavailable, ApiError, OSError):
        return []
    models = answer.get("models") if isinstance(answer, dict) else None
    return [model for model in models if isinstance(model, dict)] if isinstance(models, list) else []


def _names(path: str) -> list[str]:
    return [str(model["name"]) for model in _models(path)]


def _matching(names: list[str], ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    value = ctx.params.get(param.name)
    given = value if isinstance(value, tuple) else ()  # `r1 rm a b <TAB>`: not a or b again
    return [name for name in names if name.startswith(incomplete) and name not in given]


def store_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The models in the store (GET /api/tags)."""
    return _matching(_names("/api/tags"), ctx, param, incomplete)


def chat_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The models in the store that generate text: the ones `r1 run` chats with (no embedding-only model)."""
    names = [str(m["name"]) for m in _models("/api/tags") if _generates(m)]
    return _matching(names, ctx, param, incomplete)


def _generates(model: dict[str, object]) -> bool:
    """Whether a model of /api/tags generates text (one that does not say is taken to)."""
    capabilities = model.get("capabilities", ["completion"])
    return isinstance(capabilities, list) and "completion" in capabilities


def paths(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Files and folders: the shell completes them itself."""
    return [CompletionItem(incomplete, type="file")]


def loaded_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The models loaded now (GET /api/ps): the ones `r1 stop` can unload."""
    return _matching(_names("/api/ps"), ctx, param, incomplete)


def catalog_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """The short names `r1 pull` knows (GET /api/catalog)."""
    return _matching(_names("/api/catalog"), ctx, param, incomplete)
