"""`r1 service`: the unit files and property lists themselves, then what install, uninstall
and status write and run, recorded through a fake Host instead of systemctl and launchctl."""

from __future__ import annotations

import os
import plistlib
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemons import R1, Daemon
from r1.cli import service
from r1.cli.main import main
from r1.daemon import __version__

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_UNIT = ROOT / "systemd" / "r1.service"
USER_UNIT = ROOT / "systemd" / "r1-user.service"
AGENT = ROOT / "launchd" / "com.r1.daemon.plist"
SYSTEM_DAEMON = ROOT / "launchd" / "com.r1.daemon.system.plist"
UID = 501


class FakeHost(service.Host):
    """A machine where commands are recorded, and their exit statuses chosen by the test."""

    def __init__(self, platform: str = "linux", root: bool = False, users: tuple[str, ...] = (),
                 systemd: bool = True, installed_at: Path = Path("/opt/r1"), r1: str = R1) -> None:
        self.platform = platform
        self.root = root
        self.users = set(users)
        self.systemd = systemd
        self.installed_at = installed_at
        self.r1 = r1
        self.commands: list[list[str]] = []
        self.quiet: list[list[str]] = []
        self.statuses: dict[tuple[str, ...], int] = {}

    def systemd_running(self) -> bool:
        return self.systemd

    def is_root(self) -> bool:
        return self.root

    def uid(self) -> int:
        return UID

    def has_user(self, name: str) -> bool:
        return name in self.users

    def r1_executable(self) -> str | None:
        return self.r1

    def installation(self) -> list[Path]:
        return [self.installed_at]

    def run(self, argv: list[str], quiet: bool = False) -> int:
        self.commands.append(argv)
        if quiet:
            self.quiet.append(argv)
        return self.statuses.get(tuple(argv), 0)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "user-home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return folder


def use(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    """Make `r1 service` (through the real parser and main()) act on `host`."""
    monkeypatch.setattr(service, "Host", lambda: host)
    return host


def filled(template: Path, home: Path | None = None) -> str:
    text = template.read_text().replace("@R1@", R1)
    return text.replace("@HOME@", str(home)) if home else text


# --- the files themselves --------------------------------------------------------------------


def verify_problems(unit_text: str, tmp_path: Path, user: bool) -> list[str]:
    """What `systemd-analyze verify` says about the unit: a failing exit status, or any line naming it
    (verify exits 0 on an unknown key or a bad value; it only warns, naming the file)."""
    folder = tmp_path / ("user" if user else "system")
    runtime = folder / "runtime"
    runtime.mkdir(parents=True, mode=0o700)
    unit = folder / "r1.service"
    unit.write_text(unit_text)
    # A user manager needs a runtime directory even to verify; none exists in a test.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    argv = ["systemd-analyze", *(["--user"] if user else []), "verify", "--man=no", str(unit)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if "r1.service" in line]
    if result.returncode:
        problems.append(f"exit status {result.returncode}")
    return problems


@pytest.mark.parametrize("template,user", [(SYSTEM_UNIT, False), (USER_UNIT, True)], ids=["system", "user"])
def test_units_pass_systemd_analyze_verify(template: Path, user: bool, tmp_path: Path) -> None:
    text = filled(template)
    assert "@" not in text.split("ExecStart=")[1].split()[0]
    assert verify_problems(text, tmp_path, user) == []
    assert verify_problems(service.with_tcp(text, "systemd", "127.0.0.1:11434"), tmp_path / "tcp", user) == []
    # The check itself catches a mistake in the unit (verify only warns, with exit status 0).
    broken = text.replace("[Service]\n", "[Service]\nRestartSecs=2\n")
    assert any("RestartSecs" in line for line in verify_problems(broken, tmp_path / "broken", user))


def test_system_unit_runs_as_r1_with_a_group_socket_and_hardening() -> None:
    lines = set(SYSTEM_UNIT.read_text().splitlines())
    for line in ("User=r1", "Group=r1", "StateDirectory=r1", "RuntimeDirectory=r1", "RuntimeDirectoryMode=0750",
                 "Environment=R1_HOME=/var/lib/r1", "Environment=R1_SOCKET=/run/r1/r1.sock",
                 "Environment=R1_SOCKET_MODE=0660", "ExecStart=@R1@ serve", "Restart=on-failure", "RestartSec=2",
                 "KillMode=mixed", "TimeoutStopSec=30", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
                 "WantedBy=multi-user.target"):
        assert line in lines, line
    assert not any(line.startswith("MemoryDenyWriteExecute=") for line in lines)
    user_lines = set(USER_UNIT.read_text().splitlines())
    assert {"ExecStart=@R1@ serve", "Restart=on-failure", "NoNewPrivileges=yes", "WantedBy=default.target"} <= user_lines
    # The user service uses the same defaults as the r1 command, and no namespaces.
    assert not any(line.startswith(("Environment=", "PrivateTmp=", "ProtectSystem=")) for line in user_lines)


def test_property_lists_parse_and_run_r1_serve() -> None:
    home = Path("/Users/a&b")  # filled into XML, so escaped
    agent = plistlib.loads(service.fill(AGENT.read_text(), R1, home, xml=True).encode())
    system = plistlib.loads(service.fill(SYSTEM_DAEMON.read_text(), R1, home, xml=True).encode())
    for config in (agent, system):
        assert config["Label"] == "com.r1.daemon"
        assert config["ProgramArguments"] == [R1, "serve"]
        assert config["RunAtLoad"] is True
        assert config["KeepAlive"] == {"SuccessfulExit": False}
        assert config["ExitTimeOut"] == 30
        assert config["StandardOutPath"] == config["StandardErrorPath"]
    assert agent["StandardOutPath"] == "/Users/a&b/Library/Logs/r1/daemon.log"
    assert "UserName" not in agent and "EnvironmentVariables" not in agent
    assert system["StandardOutPath"] == "/Library/Logs/r1/daemon.log"
    assert (system["UserName"], system["GroupName"]) == ("_r1", "_r1")
    env = system["EnvironmentVariables"]
    assert env["R1_SOCKET_MODE"] == "0660" and env["R1_HOME"] == "/usr/local/var/r1"
    assert len(env["R1_SOCKET"].encode()) <= 103  # sockaddr_un on macOS


def test_tcp_puts_a_loopback_r1_host_in_each_service_file(capsys: pytest.CaptureFixture[str]) -> None:
    home = Path("/Users/me")
    for template, xml in ((AGENT, True), (SYSTEM_DAEMON, True)):
        text = service.with_tcp(service.fill(template.read_text(), R1, home, xml=xml), "launchd", "127.0.0.1:11434")
        env = plistlib.loads(text.encode())["EnvironmentVariables"]
        assert env["R1_HOST"] == "127.0.0.1:11434"
        assert template == AGENT or env["R1_SOCKET_MODE"] == "0660", "the system daemon keeps its own variables"
    for template in (USER_UNIT, SYSTEM_UNIT):
        unit = service.with_tcp(service.fill(template.read_text(), R1, home, xml=False), "systemd", "[::1]:8080")
        service_section = unit.split("\n[Service]\n", 1)[1].split("\n[", 1)[0]
        assert "\nEnvironment=R1_HOST=[::1]:8080\n" in f"\n{service_section}"
    for address in ("0.0.0.0:11434", "192.168.1.2:11434", "127.0.0.1", "127.0.0.1:99999"):
        with pytest.raises(service.ServiceError, match="give a loopback HOST:PORT"):
            service.with_tcp("", "systemd", address)
    assert main(["service", "status", "--tcp"]) == 1 and "--tcp is for install" in capsys.readouterr().err


# --- dry runs ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_linux_user_dry_run_prints_the_unit_and_commands(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(), monkeypatch)
    assert main(["service", "install", "--dry-run"]) == 0
    out = capsys.readouterr().out
    path = home / ".config" / "systemd" / "user" / "r1.service"
    assert out == (f"would write {path}:\n{filled(USER_UNIT)}"
                   "would run: systemctl --user daemon-reload\n"
                   "would run: systemctl --user enable r1.service\n"
                   "would run: systemctl --user restart r1.service    # starts it, or restarts one running an older unit\n")
    assert host.commands == [] and not path.exists()

    assert main(["service", "install", "--dry-run", "--tcp"]) == 0  # alone: Ollama's address
    assert "[Service]\n# r1 service install --tcp\nEnvironment=R1_HOST=127.0.0.1:11434\n" in capsys.readouterr().out


@pytest.mark.unit
def test_linux_system_dry_run_creates_the_user_only_when_missing(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(root=True), monkeypatch)
    assert main(["service", "install", "--system", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would run: useradd --system --user-group --home-dir /var/lib/r1 "
                          "--shell /usr/sbin/nologin r1    # the user r1 does not exist yet\n")
    assert f"would write /etc/systemd/system/r1.service:\n{filled(SYSTEM_UNIT)}would run: systemctl daemon-reload\n" in out
    assert out.endswith("would run: systemctl enable r1.service\nwould run: systemctl restart r1.service"
                        "    # starts it, or restarts one running an older unit\n")
    assert "would fail" not in out
    host.users.add("r1")
    assert main(["service", "install", "--system", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would write /etc/systemd/system/r1.service:\n")
    assert host.commands == []


def test_system_dry_run_as_a_user_says_what_would_fail(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    use(FakeHost(installed_at=Path("/home/alice/venv"), users=("r1",)), monkeypatch)
    assert main(["service", "install", "--system", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"would fail: the system service needs root: sudo {R1} service install --system"
    assert out[1].startswith("would fail: /home/alice/venv is under /home, which the system service cannot see")


@pytest.mark.unit
def test_macos_dry_runs(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(platform="linux", systemd=False), monkeypatch)  # --platform previews another system
    assert main(["service", "install", "--dry-run", "--platform", "darwin"]) == 0
    plist = home / "Library" / "LaunchAgents" / "com.r1.daemon.plist"
    assert capsys.readouterr().out == (
        f"would run: mkdir -p {home}/Library/Logs/r1\n"
        f"would write {plist}:\n{filled(AGENT, home)}"
        f"would run: launchctl bootout gui/{UID}/com.r1.daemon    # stops one already loaded\n"
        f"would run: launchctl enable gui/{UID}/com.r1.daemon\n"
        f"would run: launchctl bootstrap gui/{UID} {plist}\n")

    assert main(["service", "install", "--system", "--dry-run", "--platform", "darwin"]) == 0
    out = capsys.readouterr().out
    assert "would fail: the account _r1 does not exist" in out and str(SYSTEM_DAEMON) in out
    assert ("would run: install -d -o _r1 -g _r1 -m 0700 /usr/local/var/r1\n"
            "would run: install -d -o _r1 -g _r1 -m 0750 /usr/local/var/run/r1 /Library/Logs/r1\n"
            f"would write /Library/LaunchDaemons/com.r1.daemon.plist:\n{filled(SYSTEM_DAEMON)}") in out
    assert out.endswith("would run: launchctl enable system/com.r1.daemon\n"
                        "would run: launchctl bootstrap system /Library/LaunchDaemons/com.r1.daemon.plist\n")

    assert main(["service", "uninstall", "--dry-run", "--platform", "darwin"]) == 0
    assert capsys.readouterr().out == (
        f"would fail: no r1 service is installed at {plist}\n"
        f"would run: launchctl bootout gui/{UID}/com.r1.daemon    # stops it if it is loaded\n"
        f"would remove {plist}\n")
    assert host.commands == []


def test_dry_run_of_the_real_command(home: Path) -> None:
    """The installed `r1`, its own Host: it finds itself and fills its path in."""
    env = {**os.environ, "HOME": str(home)}
    out = subprocess.run([R1, "service", "install", "--dry-run", "--platform", "linux"], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert f"would write {home}/.config/systemd/user/r1.service:\n{filled(USER_UNIT)}" in out
    assert not (home / ".config").exists()


# --- installing and removing through the Host --------------------------------------------------


@pytest.mark.unit
def test_linux_user_install_then_uninstall(home: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(), monkeypatch)
    assert main(["service", "install"]) == 0
    unit = home / ".config" / "systemd" / "user" / "r1.service"
    assert unit.read_text() == filled(USER_UNIT)
    assert unit.stat().st_mode & 0o777 == 0o644
    assert host.commands == [["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "enable", "r1.service"],
                             ["systemctl", "--user", "restart", "r1.service"]]
    out = capsys.readouterr().out
    assert f"writing {unit}\nrunning: systemctl --user daemon-reload\n" in out and "loginctl enable-linger" in out

    host.commands.clear()
    assert main(["service", "uninstall", "--dry-run"]) == 0
    assert unit.exists() and host.commands == []
    assert main(["service", "uninstall"]) == 0
    assert not unit.exists()
    assert capsys.readouterr().out.endswith("kept: the store\n")
    assert host.commands == [["systemctl", "--user", "disable", "--now", "r1.service"],
                             ["systemctl", "--user", "daemon-reload"]]
    assert main(["service", "uninstall"]) == 1
    assert f"Error: no r1 service is installed at {unit}" in capsys.readouterr().err


@pytest.mark.unit
def test_user_units_follow_xdg_config_home(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    use(FakeHost(), monkeypatch)
    assert main(["service", "install"]) == 0
    assert (tmp_path / "config" / "systemd" / "user" / "r1.service").read_text() == filled(USER_UNIT)
    assert not (home / ".config").exists()


@pytest.mark.unit
def test_macos_agent_install(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(platform="darwin"), monkeypatch)
    bootout = ("launchctl", "bootout", f"gui/{UID}/com.r1.daemon")
    host.statuses[bootout] = 3  # nothing loaded yet: expected, and not an error
    assert main(["service", "install"]) == 0
    plist = home / "Library" / "LaunchAgents" / "com.r1.daemon.plist"
    assert plist.read_text() == filled(AGENT, home)
    assert host.commands == [["mkdir", "-p", f"{home}/Library/Logs/r1"], list(bootout),
                             ["launchctl", "enable", f"gui/{UID}/com.r1.daemon"],
                             ["launchctl", "bootstrap", f"gui/{UID}", str(plist)]]
    assert host.quiet == [list(bootout)]
    assert "com.r1.daemon runs and starts when you log in" in capsys.readouterr().out


@pytest.mark.unit
def test_a_failing_command_stops_the_install(home: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(), monkeypatch)
    host.statuses[("systemctl", "--user", "daemon-reload")] = 1
    assert main(["service", "install"]) == 1
    assert capsys.readouterr().err == "Error: `systemctl --user daemon-reload` failed with exit status 1\n"
    assert host.commands == [["systemctl", "--user", "daemon-reload"]]


def test_system_install_needs_root_and_changes_nothing(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(), monkeypatch)
    assert main(["service", "install", "--system"]) == 1
    assert capsys.readouterr().err == f"Error: the system service needs root: sudo {R1} service install --system\n"
    assert host.commands == []


@pytest.mark.unit
def test_where_r1_cannot_run_a_service(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (FakeHost(systemd=False), ["install"], "Error: systemd is not running here"),
        (FakeHost(platform="win32"), ["install"], "Error: r1 service knows systemd (Linux) and launchd (macOS); this is win32"),
        (FakeHost(r1="/opt/my r1/bin/r1"), ["install"], "Error: the r1 executable /opt/my r1/bin/r1 has characters"),
        (FakeHost(r1=None), ["install"], "Error: cannot find the r1 executable"),
        (FakeHost(), ["install", "--platform", "darwin"], "Error: --platform previews another system's service"),
        (FakeHost(), ["status", "--dry-run", "--platform", "darwin"], "Error: --platform previews"),
    ]
    for host, args, error in cases:
        use(host, monkeypatch)
        assert main(["service", *args]) == 1, args
        assert capsys.readouterr().err.startswith(error), args
        assert host.commands == []
    assert main(["service", "install", "--user", "--system"]) == 2  # a usage error


# --- status ------------------------------------------------------------------------------------


@pytest.mark.unit
def test_status_without_a_daemon(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                 r1_env: dict[str, str]) -> None:
    host = use(FakeHost(), monkeypatch)
    assert main(["service", "status"]) == 3
    assert capsys.readouterr().out == f"no daemon answers on {r1_env['R1_SOCKET']}\n"
    assert main(["service", "status", "--system"]) == 3
    assert capsys.readouterr().out == "no daemon answers on /run/r1/r1.sock\n"
    host.platform = "darwin"
    assert main(["service", "status", "--system"]) == 3
    assert capsys.readouterr().out == "no daemon answers on /usr/local/var/run/r1/r1.sock\n"
    assert host.commands == [["systemctl", "--user", "status", "r1.service", "--no-pager"],
                             ["systemctl", "status", "r1.service", "--no-pager"],
                             ["launchctl", "print", "system/com.r1.daemon"]]


@pytest.mark.unit
def test_status_when_the_socket_is_not_ours(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    class Forbidden(service.Client):
        def request(self, method: str, path: str, body: dict[str, object] | None = None) -> object:
            raise PermissionError(13, "Permission denied")

    use(FakeHost(), monkeypatch)
    monkeypatch.setattr(service, "Client", Forbidden)
    assert main(["service", "status", "--system"]) == 3
    assert capsys.readouterr().out == ("the daemon's socket /run/r1/r1.sock is there, but you may not use it "
                                       "(members of the group r1 may)\n")


def test_status_with_a_daemon(daemon: Daemon, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    host = use(FakeHost(platform="darwin"), monkeypatch)
    assert main(["service", "status"]) == 0
    assert capsys.readouterr().out == f"r1 {__version__} answers on {daemon.socket}\n"
    assert host.commands == [["launchctl", "print", f"gui/{UID}/com.r1.daemon"]]


# --- where the templates come from --------------------------------------------------------------


@pytest.mark.unit
def test_templates_come_from_the_checkout_else_the_installed_share(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.template_dir("systemd") == ROOT / "systemd"
    assert service.template_dir("launchd") == ROOT / "launchd"
    # Installed from a wheel: the module sits in site-packages, the templates in <prefix>/share/r1.
    monkeypatch.setattr(service, "__file__", str(tmp_path / "site-packages" / "r1" / "cli" / "service.py"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.setattr(site, "getuserbase", lambda: str(tmp_path / "userbase"))
    with pytest.raises(service.ServiceError, match="the systemd templates are missing"):
        service.template_dir("systemd")
    (tmp_path / "userbase" / "share" / "r1" / "systemd").mkdir(parents=True)
    assert service.template_dir("systemd") == tmp_path / "userbase" / "share" / "r1" / "systemd"
    (tmp_path / "prefix" / "share" / "r1" / "systemd").mkdir(parents=True)
    assert service.template_dir("systemd") == tmp_path / "prefix" / "share" / "r1" / "systemd"


def test_the_real_host_finds_this_r1_and_users() -> None:
    host = service.Host()
    assert host.r1_executable() == R1
    assert host.has_user("root") and not host.has_user("no-such-user-r1")
    assert Path(sys.prefix) in host.installation()
