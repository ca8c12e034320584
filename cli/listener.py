"""The daemon's TCP listener, opened through the API when it is off: for `r1 launch` and `r1 ui`."""

from __future__ import annotations

from .api import Api

TYPE_CHECKING = False  # typing costs the CLI's start (see cli/shapes.py); mypy takes it as true
if TYPE_CHECKING:
    from .shapes import Listener


def tcp_address(api: Api) -> str:
    """HOST:PORT of the daemon's TCP listener; POST /api/tcp opens one on loopback if there is none
    (and answers with the one already open otherwise)."""
    listener: Listener = api.read("POST", "/api/tcp", {})
    return listener["address"]
