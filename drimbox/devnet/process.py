"""Run one server binary as a child process that can always be cleaned up.

Both dev PACSes (Orthanc, dcmqrscp) share the same life cycle: spawn in a new session so the whole
process group can be signalled (dcmqrscp forks one child per association; nothing may outlive the
tests), collect output in a log file, stop with SIGTERM and fall back to SIGKILL after a bound.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from drimbox.devnet.dcmtk import dcmtk_env
from drimbox.devnet.errors import DevnetError  # re-exported: callers catch it with ChildProcess

__all__ = ["ChildProcess", "DevnetError", "ManagedServer", "stop_all", "tail"]

_PR_SET_PDEATHSIG = 1
# Resolved in the parent: the pre-exec hook runs between fork and exec, where loading libraries
# (dlopen) is unsafe in a multi-threaded parent.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    # If the test runner is SIGKILLed (CI timeout, OOM) no fixture teardown runs; without this the
    # servers, each in its own session, would outlive it and keep their ports.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ("" if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ChildProcess:
    """A server subprocess in its own process group, with its output in ``log_path``.

    With ``die_with_parent`` (Linux), the server gets SIGTERM when the parent dies, even by SIGKILL.
    The kernel ties this to the *thread* that spawned it: create servers from a thread that lives as
    long as they should (the main thread, normally), or pass ``die_with_parent=False``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
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
                preexec_fn=_die_with_parent if die_with_parent else None,
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


class ManagedServer:
    """The life cycle both dev PACSes share around one :class:`ChildProcess`.

    Subclasses implement :meth:`start` (which sets ``_proc``) and may release their own resources
    in :meth:`_released` (called before waiting for the process).
    """

    _stop_timeout_s = 10.0

    def __init__(self) -> None:
        self._proc: ChildProcess | None = None

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def _released(self) -> None:
        """Release what the subclass holds besides the process (e.g. an HTTP client)."""

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return self._proc.pid if self._proc is not None else None

    @property
    def process(self) -> ChildProcess | None:
        """The running child process, if any."""
        return self._proc

    def terminate(self) -> None:
        """Send SIGTERM without waiting (use :meth:`wait` or :func:`stop_all`)."""
        if self._proc is not None:
            self._proc.terminate()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for a terminated server to exit (SIGKILL after ``timeout``)."""
        self._released()
        if self._proc is not None:
            self._proc.wait(self._stop_timeout_s if timeout is None else timeout)
            self._proc = None

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL."""
        self.terminate()
        self.wait(timeout)

    def __enter__(self) -> Self:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
