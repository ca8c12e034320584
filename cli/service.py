"""`r1 service`: install, remove and inspect r1's daemon as a systemd or launchd service.

The unit files in systemd/ and the property lists in launchd/ are the templates; this
module only fills in their placeholders (@R1@: the r1 executable, @HOME@: the home folder)
and plans what to write and run. What it asks of the machine goes through `Host`, so tests
can record the commands instead of running systemctl or launchctl.
"""

from __future__ import annotations

import os
import plistlib
import pwd
import re
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from ..daemon.config import ConfigError, Settings, is_loopback
from .client import ApiError, Client, DaemonUnavailable
from .errors import CliError

UNIT = "r1.service"
LABEL = "com.r1.daemon"
# What ProtectHome=yes hides from the system unit's daemon.
PROTECTED_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))
# A path that needs no quoting or escaping in a unit file (no spaces, %, $, quotes, \).
PLAIN_PATH = re.compile(r"[\w/.+,:@-]+")
NOT_RUNNING = 3  # `systemctl status`'s exit status for a service that is not running


class ServiceError(CliError):
    """The service cannot be installed, removed or inspected here; the message says why."""


class Host:
    """The machine, as far as a service install touches it; tests pass a fake that records."""

    platform = sys.platform

    def systemd_running(self) -> bool:
        return Path("/run/systemd/system").is_dir()  # sd_booted()'s test

    def is_root(self) -> bool:
        return os.geteuid() == 0

    def uid(self) -> int:
        return os.getuid()

    def has_user(self, name: str) -> bool:
        try:
            pwd.getpwnam(name)
        except KeyError:
            return False
        return True

    def r1_executable(self) -> str | None:
        """This Python's `r1` script (the service must run the r1 giving this command), else PATH's."""
        script = Path(sysconfig.get_path("scripts")) / "r1"
        found = str(script) if script.is_file() else shutil.which("r1")
        return os.path.abspath(found) if found else None

    def installation(self) -> list[Path]:
        """Where this r1 runs from besides its script: the environment, the interpreter, the package."""
        return [Path(sys.prefix), Path(sys.base_prefix), Path(__file__).resolve().parent]

    def run(self, argv: list[str], quiet: bool = False) -> int:
        """Run a command; `quiet` keeps its output off the terminal. Its exit status."""
        try:
            return subprocess.run(argv, capture_output=quiet).returncode
        except FileNotFoundError:
            raise ServiceError(f"{argv[0]} is not installed here") from None


@dataclass(frozen=True)
class Write:
    path: Path
    text: str


@dataclass(frozen=True)
class Remove:
    path: Path


@dataclass(frozen=True)
class Run:
    argv: list[str]
    why: str = ""
    may_fail: bool = False  # a clean-up with nothing to clean fails; its output is hidden too


@dataclass
class Plan:
    steps: list[Write | Remove | Run]
    blockers: list[str] = field(default_factory=list)  # why it cannot be done: an error, or a dry run's warning
    done: list[str] = field(default_factory=list)  # what to tell once it is done


@dataclass(frozen=True)
class Target:
    """The service for one manager and scope: where its file goes and what the file says."""

    manager: str  # "systemd" or "launchd"
    system: bool
    r1: str  # the executable filled in
    path: Path
    text: str
    template: Path

    def setting(self, name: str) -> str:
        """A value the template sets: a [Service] key (User) or an environment variable (R1_SOCKET)."""
        if self.manager == "launchd":
            config = plistlib.loads(self.text.encode())
            return str(config[name] if name in config else config["EnvironmentVariables"][name])
        match = re.search(rf"^(?:Environment=)?{re.escape(name)}=(.*)$", self.text, re.MULTILINE)
        if match is None:
            raise ServiceError(f"{self.template} sets no {name}")
        return match.group(1).strip()

    def account(self) -> tuple[str, str]:
        """The user and group a system service runs as."""
        if self.manager == "launchd":
            return self.setting("UserName"), self.setting("GroupName")
        return self.setting("User"), self.setting("Group")

    @property
    def systemctl(self) -> list[str]:
        return ["systemctl"] if self.system else ["systemctl", "--user"]

    def launchd_domain(self, host: Host) -> str:
        return "system" if self.system else f"gui/{host.uid()}"


def template_dir(kind: str) -> Path:
    """systemd/ or launchd/: beside the source (a checkout, an editable install), else where a wheel put them."""
    bases = [Path(__file__).resolve().parents[1], Path(sys.prefix) / "share" / "r1", Path(site.getuserbase()) / "share" / "r1"]
    for base in bases:
        if (base / kind).is_dir():
            return base / kind
    raise ServiceError(f"the {kind} templates are missing (looked in {', '.join(str(b) for b in bases)}); reinstall r1")


def fill(template: str, r1: str, home: Path, xml: bool) -> str:
    values = {"@R1@": r1, "@HOME@": str(home)}
    for placeholder, value in values.items():
        template = template.replace(placeholder, escape(value) if xml else value)
    return template


OLLAMA_ADDRESS = "127.0.0.1:11434"  # `--tcp` alone: where apps written for Ollama look
AGENT_ENVIRONMENT = "\t<key>RunAtLoad</key>\n"  # a user agent's plist has no EnvironmentVariables: one goes here


def with_tcp(text: str, manager: str, address: str) -> str:
    """The unit or property list `text` with R1_HOST=address: the daemon listens on TCP there too, for apps
    that speak HTTP. Loopback only; any other address needs R1_API_KEY, set by hand with the service."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not is_loopback(host):
        raise ServiceError(f"--tcp {address}: give a loopback HOST:PORT such as {OLLAMA_ADDRESS}; to listen "
                           "beyond this machine, set R1_HOST and R1_API_KEY in the service's environment")
    if manager == "systemd":
        return text.replace("\n[Service]\n", f"\n[Service]\n# r1 service install --tcp\nEnvironment=R1_HOST={address}\n", 1)
    entry = f"\t\t<key>R1_HOST</key>\n\t\t<string>{escape(address)}</string>\n"
    if "<key>EnvironmentVariables</key>" in text:
        return text.replace("<key>EnvironmentVariables</key>\n\t<dict>\n", "<key>EnvironmentVariables</key>\n\t<dict>\n"
                            + entry, 1)
    return text.replace(AGENT_ENVIRONMENT, f"\t<key>EnvironmentVariables</key>\n\t<dict>\n{entry}\t</dict>\n"
                        + AGENT_ENVIRONMENT, 1)


def _manager(host: Host, platform: str | None) -> str:
    """The service manager to use; a --platform preview assumes that platform's manager runs."""
    name = platform or host.platform
    if name == "darwin":
        return "launchd"
    if name.startswith("linux"):
        if platform or host.systemd_running():
            return "systemd"
        raise ServiceError("systemd is not running here (no /run/systemd/system); run `r1 serve` under "
                           "your init system, or let the r1 command start the daemon when needed")
    raise ServiceError(f"r1 service knows systemd (Linux) and launchd (macOS); this is {name}")


def target(host: Host, system: bool, platform: str | None = None, tcp: str | None = None) -> Target:
    manager = _manager(host, platform)
    r1 = host.r1_executable()
    if r1 is None:
        raise ServiceError("cannot find the r1 executable (neither beside this Python nor on PATH)")
    if not PLAIN_PATH.fullmatch(r1):
        raise ServiceError(f"the r1 executable {r1} has characters a service file would need escaped; "
                           "install r1 at a plainer path")
    home = Path.home()
    if manager == "systemd":
        name = "r1.service" if system else "r1-user.service"
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        path = Path("/etc/systemd/system") / UNIT if system else config / "systemd" / "user" / UNIT
    else:
        name = f"{LABEL}.system.plist" if system else f"{LABEL}.plist"
        path = (Path("/Library/LaunchDaemons") if system else home / "Library" / "LaunchAgents") / f"{LABEL}.plist"
    template = template_dir(manager) / name
    text = fill(template.read_text(), r1, home, xml=manager == "launchd")
    if tcp is not None:
        text = with_tcp(text, manager, tcp)
    return Target(manager, system, r1, path, text, template)


def _needs_root(host: Host, service: Target, plan: Plan, action: str) -> None:
    if not host.is_root():
        plan.blockers.append(f"the system service needs root: sudo {service.r1} service {action} --system")


def install_plan(host: Host, service: Target) -> Plan:
    plan = Plan([])
    if service.system:
        _needs_root(host, service, plan, "install")
    if service.manager == "systemd":
        if service.system:
            for path in [Path(service.r1).resolve(), *host.installation()]:
                hidden = next((top for top in PROTECTED_HOMES if path.is_relative_to(top)), None)
                if hidden:
                    plan.blockers.append(
                        f"{path} is under {hidden}, which the system service cannot see (ProtectHome=yes); install r1 "
                        "elsewhere for it, e.g. python3 -m venv /opt/r1 && /opt/r1/bin/pip install r1")
                    break
            user, group = service.account()
            if not host.has_user(user):
                plan.steps.append(Run(["useradd", "--system", "--user-group", "--home-dir", service.setting("R1_HOME"),
                                       "--shell", "/usr/sbin/nologin", user], why=f"the user {user} does not exist yet"))
        plan.steps += [
            Write(service.path, service.text),
            Run(service.systemctl + ["daemon-reload"]),
            Run(service.systemctl + ["enable", UNIT]),
            Run(service.systemctl + ["restart", UNIT], why="starts it, or restarts one running an older unit"),
        ]
        if service.system:
            plan.done = [f"{UNIT} runs as the user {user} and starts at boot; log: journalctl -u r1",
                         f"to use it: usermod -aG {group} NAME (then log in again) and "
                         f"export R1_SOCKET={service.setting('R1_SOCKET')}"]
        else:
            plan.done = [f"{UNIT} runs and starts when you log in; log: journalctl --user -u r1",
                         "to start it at boot without a login: loginctl enable-linger $USER"]
        return plan

    domain = service.launchd_domain(host)
    log = Path(service.setting("StandardOutPath"))
    if service.system:
        user, group = service.account()
        if not host.has_user(user):
            plan.blockers.append(f"the account {user} does not exist; create it first (the commands are at the top of "
                                 f"{service.template})")
        owned = ["install", "-d", "-o", user, "-g", group, "-m"]
        plan.steps.append(Run([*owned, "0700", service.setting("R1_HOME")]))  # the group gets the socket, not the store
        plan.steps.append(Run([*owned, "0750", str(Path(service.setting("R1_SOCKET")).parent), str(log.parent)]))
    else:
        plan.steps.append(Run(["mkdir", "-p", str(log.parent)]))
    plan.steps += [
        Write(service.path, service.text),
        Run(["launchctl", "bootout", f"{domain}/{LABEL}"], why="stops one already loaded", may_fail=True),
        Run(["launchctl", "enable", f"{domain}/{LABEL}"]),
        Run(["launchctl", "bootstrap", domain, str(service.path)]),
    ]
    when = "at boot" if service.system else "when you log in"
    plan.done = [f"{LABEL} runs and starts {when}; log: {log}"]
    if service.system:
        plan.done.append(f"to use it: dseditgroup -o edit -a NAME -t user {group} "
                         f"and export R1_SOCKET={service.setting('R1_SOCKET')}")
    return plan


def uninstall_plan(host: Host, service: Target) -> Plan:
    plan = Plan([])
    if service.system:
        _needs_root(host, service, plan, "uninstall")
    if not service.path.exists():
        plan.blockers.append(f"no r1 service is installed at {service.path}")
    if service.manager == "systemd":
        plan.steps = [Run(service.systemctl + ["disable", "--now", UNIT]), Remove(service.path),
                      Run(service.systemctl + ["daemon-reload"])]
    else:
        domain = service.launchd_domain(host)
        plan.steps = [Run(["launchctl", "bootout", f"{domain}/{LABEL}"], why="stops it if it is loaded", may_fail=True),
                      Remove(service.path)]
    kept = [f"the store {service.setting('R1_HOME')}" if service.system else "the store"]
    if service.manager == "launchd":
        kept.append("the logs")
    if service.system:
        kept.append(f"the user {service.account()[0]}")
    plan.done = ["kept: " + ", ".join(kept)]
    return plan


def _command(run: Run) -> str:
    return shlex.join(run.argv) + (f"    # {run.why}" if run.why else "")


def show(plan: Plan) -> None:
    """A dry run: what would be written, removed and run, in order; nothing changes."""
    for blocker in plan.blockers:
        print(f"would fail: {blocker}")
    for step in plan.steps:
        if isinstance(step, Write):
            print(f"would write {step.path}:")
            print(step.text, end="" if step.text.endswith("\n") else "\n")
        elif isinstance(step, Remove):
            print(f"would remove {step.path}")
        else:
            print(f"would run: {_command(step)}")


def apply(host: Host, plan: Plan) -> None:
    if plan.blockers:
        raise ServiceError("; ".join(plan.blockers))
    for step in plan.steps:
        if isinstance(step, Write):
            print(f"writing {step.path}")
            step.path.parent.mkdir(parents=True, exist_ok=True)
            step.path.write_text(step.text)
            step.path.chmod(0o644)  # launchd refuses a property list others may write
        elif isinstance(step, Remove):
            print(f"removing {step.path}")
            step.path.unlink(missing_ok=True)
        else:
            print(f"running: {_command(step)}")
            status = host.run(step.argv, quiet=step.may_fail)
            if status and not step.may_fail:
                raise ServiceError(f"`{shlex.join(step.argv)}` failed with exit status {status}")
    for line in plan.done:
        print(line)


def status(host: Host, service: Target) -> int:
    """The service manager's view, then whether a daemon answers: 0 if one does, else 3."""
    if service.manager == "systemd":
        host.run(service.systemctl + ["status", UNIT, "--no-pager"])
    else:
        host.run(["launchctl", "print", f"{service.launchd_domain(host)}/{LABEL}"])
    if service.system:
        socket = Path(service.setting("R1_SOCKET"))
    else:
        try:
            socket = Settings.from_env().socket
        except ConfigError as exc:
            raise ServiceError(str(exc)) from exc
    try:
        version = Client(socket, timeout=5).version()
    except PermissionError:
        join = f" (members of the group {service.account()[1]} may)" if service.system else ""
        print(f"the daemon's socket {socket} is there, but you may not use it{join}")
        return NOT_RUNNING
    except (DaemonUnavailable, ApiError, OSError):
        print(f"no daemon answers on {socket}")
        return NOT_RUNNING
    print(f"r1 {version} answers on {socket}")
    return 0


def command(action: str, *, system: bool, dry_run: bool, platform: str | None, tcp: str | None = None) -> int:
    """`r1 service ACTION [--user|--system] [--dry-run] [--platform NAME] [--tcp [HOST:PORT]]`; the exit status."""
    host = Host()
    if platform and (action == "status" or not dry_run):
        raise ServiceError("--platform previews another system's service: use it with install or uninstall --dry-run")
    if tcp is not None and action != "install":
        raise ServiceError("--tcp is for install: it writes R1_HOST into the service")
    service = target(host, system, platform, tcp)
    if action == "status":
        return status(host, service)
    plan = install_plan(host, service) if action == "install" else uninstall_plan(host, service)
    if dry_run:
        show(plan)
    else:
        apply(host, plan)
    return 0
