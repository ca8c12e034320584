import ast
import sys
import types
import typing
from pathlib import Path

import pytest

from r1.cli.main import cli, main
from r1.daemon import __version__
from r1.daemon.config import MAX_SOCKET_PATH, SETTINGS, ConfigError, Settings
from r1.daemon.server import tcp_address

pytestmark = pytest.mark.unit  # the fast lane (docs/development.md)


def test_defaults_follow_xdg_on_linux(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    env = {"HOME": "/home/ana", "XDG_DATA_HOME": "/data", "XDG_RUNTIME_DIR": str(tmp_path)}
    settings = Settings.from_env(env)
    assert settings.home == Path("/data/r1")
    assert settings.socket == tmp_path / "r1.sock"
    assert settings.log_level == "INFO" and settings.no_autostart is False
    plain = Settings.from_env({"HOME": "/home/ana"})
    assert plain.home == Path("/home/ana/.local/share/r1")
    assert plain.socket == Path("/home/ana/.local/share/r1/r1.sock")


def test_macos_default_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert Settings.from_env({"HOME": "/Users/ana"}).home == Path("/Users/ana/Library/Application Support/r1")


def test_environment_and_overrides(tmp_path: Path) -> None:
    env = {"HOME": "/h", "R1_HOME": str(tmp_path), "R1_SOCKET": "/tmp/x.sock", "R1_LOG_LEVEL": "debug", "R1_NO_AUTOSTART": "1"}
    settings = Settings.from_env(env)
    assert (settings.home, settings.socket, settings.log_level, settings.no_autostart) == (tmp_path, Path("/tmp/x.sock"), "DEBUG", True)
    flagged = Settings.from_env(env, socket="/tmp/y.sock", log_level="error")
    assert flagged.socket == Path("/tmp/y.sock") and flagged.log_level == "ERROR"
    assert Settings.from_env(settings.as_env()) == settings, "as_env round-trips (how autostart passes settings on)"


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="R1_LOG_LEVEL='LOUD'"):
        Settings.from_env({"HOME": "/h", "R1_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="R1_LLAMA_EXTRA_BUFFERS='sometimes' must be one of auto, on, off"):
        Settings.from_env({"HOME": "/h", "R1_LLAMA_EXTRA_BUFFERS": "sometimes"})
    assert Settings.from_env({"HOME": "/h", "R1_LLAMA_EXTRA_BUFFERS": "Off"}).llama_extra_buffers == "off"
    # str.isdigit() takes '²', which int() then refuses: a count is ASCII digits, or a ConfigError.
    with pytest.raises(ConfigError, match="R1_MAX_LOADED='²' must be a whole number"):
        Settings.from_env({"HOME": "/h", "R1_MAX_LOADED": "²"})
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        tcp_address(Settings.from_env({"HOME": "/h", "R1_HOST": "127.0.0.1:²"}))
    long_socket = "/tmp/" + "s" * MAX_SOCKET_PATH
    with pytest.raises(ConfigError, match="set R1_SOCKET to a shorter path"):
        Settings.from_env({"HOME": "/h", "R1_SOCKET": long_socket})


def test_every_setting_is_parsed_from_its_declaration() -> None:
    defaults = Settings.from_env({"HOME": "/h"})
    assert list(defaults.as_dict()) == list(SETTINGS), "one field per declaration"
    assert (defaults.keep_alive, defaults.shutdown_grace, defaults.socket_mode) == (300.0, 10.0, 0o600)
    assert (defaults.host, defaults.origins, defaults.log_file, defaults.hf_offline) == ("", (), None, False)
    assert Settings.from_env({"HOME": "/h", "R1_KEEP_ALIVE": ""}).keep_alive == 300.0, "empty is unset"
    changed = Settings.from_env({"HOME": "/h", "R1_KEEP_ALIVE": "1h", "R1_ORIGINS": "app://*, https://x",
                                 "R1_SOCKET_MODE": "660", "R1_MEMORY_BUDGET": "2GiB", "HF_ENDPOINT": "http://m/"})
    assert (changed.keep_alive, changed.origins, changed.socket_mode) == (3600.0, ("app://*", "https://x"), 0o660)
    assert (changed.memory_budget, changed.hf_endpoint) == (2 * 1024**3, "http://m")
    for variable, text, message in (("R1_MAX_QUEUE", "0", "from 1 to 100000"), ("R1_MEMORY_BUDGET", "0", "more than 0"),
                                    ("R1_SOCKET_MODE", "0666", "owner and group only"), ("R1_KEEP_ALIVE", "soon", "duration")):
        with pytest.raises(ConfigError, match=f"{variable}.*{message}"):
            Settings.from_env({"HOME": "/h", variable: text})
    with pytest.raises(TypeError, match="no such setting: sockett"):
        Settings.from_env({"HOME": "/h"}, sockett="/tmp/x.sock")


def test_settings_fields_and_declarations_cannot_drift() -> None:
    """Settings' typed fields are SETTINGS' keys, in order, each typed as its parser returns; the values read
    are of that type, and the object cannot change once read."""
    fields = typing.get_type_hints(Settings)
    assert list(fields) == list(SETTINGS) == list(Settings.__slots__)
    for key, setting in SETTINGS.items():
        assert typing.get_type_hints(setting.parse)["return"] == fields[key], f"{key}: field and parser disagree"
    defaults = Settings.from_env({"HOME": "/h"})
    for key, kind in fields.items():
        runtime = kind if isinstance(kind, types.UnionType) else typing.get_origin(kind) or kind  # tuple[str, ...]: tuple
        assert isinstance(getattr(defaults, key), runtime), key
    with pytest.raises(AttributeError, match="read once"):
        defaults.log_level = "DEBUG"  # type: ignore[misc]  # what the test checks: a field cannot be set
    with pytest.raises(TypeError, match="exactly the fields"):
        Settings(home=Path("/h"))


def test_nothing_in_the_daemon_but_config_reads_the_environment() -> None:
    """Settings are read once and passed down (the runners get their log level as an argument)."""
    daemon = Path(__file__).resolve().parent.parent / "daemon"
    readers = []
    for path in daemon.rglob("*.py"):
        if path.name == "config.py" and path.parent == daemon:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                readers.append(f"{path.relative_to(daemon)}:{node.lineno}")
    assert readers == []


def test_serve_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    output = capsys.readouterr().out
    for setting in SETTINGS.values():
        assert setting.env in output
        assert setting.shown_default.split()[0] in output


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert {"serve", "list", "show", "rm", "cp", "import", "run", "version", "completion"} <= set(cli.commands)
    for name, command in [*cli.commands.items(), ("ls", cli.commands["list"])]:
        assert command.help and command.help.strip(), f"r1 {name} has no help"
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"Usage: r1 {name} "), name
        assert command.help.split()[0] in out, name  # the docstring is the help
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"\n  {name} " in listing for name in cli.commands), listing
    assert main(["-v"]) == 0 and capsys.readouterr().out == f"r1 version {__version__}\n"


def test_help_lists_whole_sentences_and_r1_help_is_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    commands = listing.split("Commands:")[1]
    assert "..." not in commands.replace("deepseek-r1:7b, ...", ""), commands  # click cut at 45 columns
    assert "a stored one is checked for a newer version." in " ".join(commands.split()), "the first sentence whole"
    assert main(["help"]) == 0 and capsys.readouterr().out == listing
    assert main(["help", "remote", "add"]) == 0
    assert capsys.readouterr().out.startswith("Usage: r1 remote add [OPTIONS] NAME URL")
    assert main(["remote", "--help"]) == 0 and "..." not in capsys.readouterr().out.split("Commands:")[1]
    assert main(["help", "nosuch"]) == 2 and "no such command: r1 nosuch" in capsys.readouterr().err


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 1  # R1_NO_AUTOSTART=1 and no daemon
    err = capsys.readouterr().err
    assert err.startswith("Error: no r1 daemon is listening on ") and "r1 serve" in err
    assert err.count("\n") == 1
    assert main(["frobnicate"]) == 2  # a usage error
    assert "Error: No such command 'frobnicate'" in capsys.readouterr().err
