"""The real `r1` on a pseudo-terminal of its own, driven as a person types at it: what the interactive
chat, `r1 pull`'s progress and Ctrl-C look like where a terminal is attached."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time

from tests.support.daemons import R1


class Terminal:
    """`r1 ARGS` on a pseudo-terminal of its own, driven as a person types at it."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal, so \x03 sends SIGINT
            os.execve(R1, [R1, *args], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.output = ""
        self.seen = 0  # expect() looks only after what it matched before

    def read(self, timeout: float) -> bool:
        """Add what the terminal shows within `timeout`; False if nothing came."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        try:
            data = os.read(self.fd, 65536) if ready else b""
        except OSError:  # EIO: the child has closed the terminal
            data = b""
        self.output += data.decode(errors="replace")
        return bool(data)

    def expect(self, text: str, timeout: float = 60) -> str:
        """Wait for `text`; what came out before it (since the last match)."""
        deadline = time.monotonic() + timeout
        while (at := self.output.find(text, self.seen)) < 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s; the terminal shows:\n{self.output[self.seen:]}")
            self.read(0.1)
        before, self.seen = self.output[self.seen:at], at + len(text)
        return before

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self.read(0.1):  # what it wrote last
                    pass
                return os.waitstatus_to_exitcode(status)
            self.read(0.1)
        raise AssertionError(f"r1 did not exit within {timeout} s:\n{self.output[self.seen:]}")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def say(term: Terminal, line: str, timeout: float = 60) -> str:
    """Type a line at the prompt; what r1 answers before its next prompt (without \\r)."""
    term.type(line + "\r")
    return term.expect(">>> ", timeout).replace("\r", "")
