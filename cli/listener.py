"""The daemon's TCP listener, opened through the API when it is off: for `r1 launch` and `r1 ui`."""

from __future__ import annotations

from .api import Api


def tcp_address(api: Api) -> str:
    """HOST:PORT of the daemon's TCP listener; POST /api/tcp opens one on loopback if there is none
    (and answers with the one already open otherwise)."""
    return str(api("POST", "/api/tcp", {})["address"])
