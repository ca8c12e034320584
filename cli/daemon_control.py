"""`r1 daemon status|stop|restart`, and the warning a command gives when its own environment sets what
the running daemon was started without.

The daemon keeps the environment it started with: `HF_HUB_OFFLINE=1 r1 pull ...` against a daemon
started without it pulls from the Hub all the same. GET /api/daemon says what the daemon has; the
commands whose outcome depends on it compare that with their own environment and say so.
A daemon run by `r1 service` is left to its service manager (systemd or launchd): stopping it from
here would leave the manager's view wrong, and a daemon restarted from a shell would run with the
shell's environment instead of the unit's, and keep the service from starting over the locked store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping

from ..daemon.config import EXTERNAL_SETTINGS, SECRET_SETTINGS, SERVICE_LABEL, Settings
from .api import Api, ApiFailure, load_settings, read_alone, start_daemon
from .client import ApiError, Client, DaemonUnavailable
from .errors import CliError
from .render import human_age, say

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import DaemonFacts

# What a pull does depends on these of the daemon's settings (where it asks, whether it may, which
# quantization fits, where the model lands); an import, on where the store is.
PULL_VARIABLES = ("R1_HOME", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN", "R1_OLLAMA_REGISTRY",
                  "R1_NO_OLLAMA_REGISTRY", "R1_MEMORY_BUDGET", "R1_PULL_CONNECTIONS")
IMPORT_VARIABLES = ("R1_HOME",)
HIDDEN = (*EXTERNAL_SETTINGS, *SECRET_SETTINGS)  # the daemon says only whether it has these
CLIENT_ONLY = ("R1_NO_AUTOSTART",)  # read by the CLI alone: the daemon's copy means nothing
STOP_MARGIN = 20.0  # seconds beyond R1_SHUTDOWN_GRACE for the runners to stop and the process to exit
NOT_RUNNING = 3  # the exit status of `r1 daemon status` with no daemon, as `systemctl status` has it


def differences(daemon_env: Mapping[str, str], settings: Settings, variables: Iterable[str],
                env: Mapping[str, str] = os.environ) -> list[str]:
    """Where this command's environment sets one of `variables` to other than the daemon has it, a phrase
    for each: 'without HF_HUB_OFFLINE=1', 'with R1_HOME=/a, not /b'."""
    mine = settings.as_env()
    found = []
    for variable in variables:
        text = env.get(variable, "")
        if not text or variable not in daemon_env or variable in CLIENT_ONLY:
            continue  # not set here (the daemon's own value stands), or a daemon that does not report it
        wanted = "set" if variable in HIDDEN else mine[variable]
        theirs = daemon_env[variable]
        if wanted == theirs:
            continue
        shown = variable if variable in HIDDEN else f"{variable}={text}"
        found.append(f"without {shown}" if theirs in ("", "0") else f"with {variable}={theirs}, not {text}")
    return found


def _remedy(info: DaemonFacts) -> str:
    if info.get("service"):
        return f"it runs as a {info['service']} service, with the service's own environment (see `r1 service`)"
    return "`r1 daemon restart` to use it"


def warn_if_environment_differs(api: Api, variables: Iterable[str]) -> None:
    """Say (on stderr) where this command's environment sets one of `variables` otherwise than the daemon."""
    try:
        info: DaemonFacts = api.read("GET", "/api/daemon")
    except ApiFailure:
        return  # a daemon older than this route: nothing to compare
    if api.started:
        return  # started by this command, with this environment
    for phrase in differences(info["environment"], api.settings, variables):
        say(f"Warning: the daemon was started {phrase}; it does not see this command's environment: {_remedy(info)}")


def _facts(client: Client) -> DaemonFacts | None:
    """GET /api/daemon without starting a daemon; None when none answers."""
    try:
        facts: DaemonFacts = read_alone(client, "GET", "/api/daemon")
        return facts
    except DaemonUnavailable:
        return None
    except ApiError as exc:
        raise CliError(f"the daemon on {client.socket_path} cannot say ({exc}); is it an older r1? "
                       "Stop it with SIGTERM (kill PID), then run r1 again") from exc


def _refuse_service(info: DaemonFacts, action: str) -> None:
    """A service's daemon is its manager's to stop: say how."""
    if not info["service"]:
        return
    system = info["uid"] != os.getuid()
    sudo = "sudo " if system else ""
    if info["service"] == "systemd":
        how = f"{sudo}systemctl {'' if system else '--user '}{action} r1"
    else:
        job = f"{'system' if system else f'gui/{os.getuid()}'}/{SERVICE_LABEL}"
        how = f"{sudo}launchctl {'kickstart -k' if action == 'restart' else 'kill TERM'} {job}"
    raise CliError(f"the r1 daemon (pid {info['pid']}) runs as a {info['service']} service, which would start it "
                   f"again or lose track of it: {action} it with `{how}`")


def _wait_gone(pid: int, timeout: float) -> None:
    import psutil  # this command's alone

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return  # exited, its parent has yet to reap it
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise CliError(f"the r1 daemon (pid {pid}) did not stop within {timeout:.0f} s; see its log")


def stop(settings: Settings, action: str = "stop") -> bool:
    """Stop the daemon on the socket (for `action`: stop or restart) and wait until its process is gone;
    whether one was running."""
    client = Client(settings.socket, timeout=10)
    info = _facts(client)
    if info is None:
        return False
    _refuse_service(info, action)
    try:
        client.request("POST", "/api/shutdown")
    except ApiError as exc:
        raise CliError(str(exc)) from exc
    _wait_gone(info["pid"], settings.shutdown_grace + STOP_MARGIN)
    print(f"stopped the r1 daemon (pid {info['pid']})")
    return True


def status(settings: Settings) -> int:
    info = _facts(Client(settings.socket, timeout=10))
    if info is None:
        print(f"no r1 daemon is running on {settings.socket}")
        return NOT_RUNNING
    environment = info["environment"]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info["started_at"]))
    print(f"r1 daemon {info['r1_version']}, pid {info['pid']}, started {human_age(started)}")
    print(f"socket  {settings.socket}")
    print(f"store   {environment['R1_HOME']}")
    print(f"run by  {info['service'] + ' (r1 service)' if info['service'] else 'r1 (r1 daemon stop|restart)'}")
    for phrase in differences(environment, settings, environment):
        say(f"Warning: the daemon was started {phrase}; it does not see this command's environment: {_remedy(info)}")
    return 0


def refuse_second_daemon(settings: Settings) -> None:
    """`r1 serve` where a daemon already answers on the socket: say which, and what differs from here."""
    try:
        info = _facts(Client(settings.socket, timeout=10))
    except OSError:  # a socket this user may not reach: the daemon's start says what is wrong
        return
    if info is None:
        return
    phrases = differences(info["environment"], settings, info["environment"])
    raise CliError(f"another r1 daemon (pid {info['pid']}) already listens on {settings.socket}"
                   + "".join(f"; it was started {phrase}" for phrase in phrases)
                   + ". `r1 daemon restart` starts it again with this environment; `r1 daemon stop` stops it")


def command(action: str) -> int:
    """`r1 daemon ACTION`; the exit status."""
    settings = load_settings()
    if action == "status":
        return status(settings)
    if not stop(settings, action) and action == "stop":
        print(f"no r1 daemon is running on {settings.socket}")
    if action == "restart":
        start_daemon(settings)
    return 0
