"""Run one server binary as a child process that can always be cleaned up.

Both dev PACSes (Orthanc, dcmqrscp) share the same life cycle: spawn in a new session so the whole
process group can be signalled (dcmqrscp forks one child per association; nothing may outlive the
tests), collect output in a log file, stop with SIGTERM and fall back to SIGKILL after a bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from drimbox.devnet.dcmtk import dcmtk_env
from drimbox.devnet.errors import DevnetError  # re-exported: callers catch it with ChildProcess

__all__ = ["ChildProcess", "DevnetError", "stop_all", "tail"]


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ("" if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ChildProcess:
    """A server subprocess in its own process group, with its output in ``log_path``."""

    def __init__(self, argv: Sequence[str], *, log_path: Path, cwd: Path, env: Mapping[str, str] | None = None):
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("ab")
        try:
            self._popen: subprocess.Popen[bytes] = subprocess.Popen(
                self.argv,
                cwd=cwd,
                # TCP_NODELAY=1 for DCMTK inside Orthanc and dcmqrscp (see dcmtk_env).
                env={**dcmtk_env(), **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        """Process id of the server (also its process group id)."""
        return self._popen.pid

    def poll(self) -> int | None:
        """Exit status if the server has exited, else None."""
        return self._popen.poll()

    def terminate(self) -> None:
        """Send SIGTERM to the whole process group without waiting (for parallel shutdowns)."""
        self._signal(signal.SIGTERM)

    def wait(self, timeout: float = 10.0) -> None:
        """Wait for the server to exit; SIGKILL the process group once ``timeout`` has elapsed."""
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self._popen.wait(timeout=5.0)
        # Children forked per association (dcmqrscp) may still be finishing: make sure none stays.
        self._signal(signal.SIGKILL)
        self._log.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate, wait, kill if needed."""
        self.terminate()
        self.wait(timeout)

    def _signal(self, signum: signal.Signals) -> None:
        try:
            os.killpg(self._popen.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # already gone (the group id is ours: start_new_session made it so)


def stop_all(processes: Iterable[ChildProcess], timeout: float = 10.0) -> None:
    """Stop several servers in parallel: SIGTERM to all first, then wait for each.

    Orthanc takes 2.5-5 s to stop; sequential stops would add that delay once per server.
    """
    procs = list(processes)
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(max(0.0, deadline - time.monotonic()))
