"""`r1 ui`: the web console in the browser, over the daemon's TCP listener (opened if it is off)."""

from __future__ import annotations

from .api import Api
from .errors import CliError
from .listener import tcp_address

ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # a browser cannot open these


def console_url(address: str) -> str:
    """http://HOST:PORT/ui for the listener's HOST:PORT; an any-address bind is reached on loopback."""
    host, _, port = address.rpartition(":")
    host = ANY_ADDRESS.get(host.strip("[]"), host.strip("[]"))
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/ui"


def open_console(print_only: bool) -> None:
    url = console_url(tcp_address(Api.from_env()))
    if print_only:
        print(url)
        return
    import webbrowser  # costly to import: only here

    if not webbrowser.open(url):
        raise CliError(f"no browser could be started here; open {url} yourself (or run `r1 ui --print`)")
    print(f"opened {url}")
