"""The MLLP listener: reports in from the RIS, one ACK per message (DESIGN F1).

For each complete frame, in order on its connection (MLLP is synchronous: HL7 v2.5 Appendix C):

1. the MSH is read — if it cannot be, the answer is AR with the default header (MSA-2 empty);
2. the message is parsed into an :class:`~drimbox.reports.ImagingReport` — a refusal gives AE or AR
   with an ERR segment (:mod:`drimbox.hl7.errors`);
3. ``accept(report)`` is called in a worker thread; it must return only once the publication job is
   **durably queued** — then, and only then, the answer is AA. If it raises, the answer is AE (207):
   the RIS keeps the message and sends it again.

Frames over ``max_message_bytes`` are discarded as they arrive and answered AR; a frame cut short
by a new start block, or not finished within ``frame_timeout_s``, is answered AR when its MSH can be
read (then the connection is closed in the second case); bytes outside frames are logged and, past
``max_message_bytes`` of them, the connection is closed. ACK messages are not acknowledged (§2.9.2).
Nothing a peer sends can stop the listener: every connection's failure stays in that connection.

Two ways to run it:

- ``await listener.serve()`` inside an existing event loop (until cancelled or :meth:`close`);
- ``listener.start()`` / ``listener.stop()`` from synchronous code: the listener then runs its own
  event loop in a daemon thread; ``start`` returns once the socket listens (or raises ``OSError``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from zoneinfo import ZoneInfo

import structlog

from drimbox.config import Hl7Settings
from drimbox.hl7.ack import build_ack, encode_ack
from drimbox.hl7.errors import AckCode, ApplicationInternalError, FramingError, HeaderError, Hl7Error
from drimbox.hl7.header import DEFAULT_HEADER, MessageHeader, read_header, salvage_header
from drimbox.hl7.mllp import AbandonedFrame, Frame, FrameDecoder, Garbage, OversizedFrame, frame
from drimbox.hl7.parse import parse_report
from drimbox.reports import ImagingReport

__all__ = ["Accept", "MllpListener"]

log = structlog.get_logger(__name__)

Accept = Callable[[ImagingReport], None]
"""Durably queue the publication of a report; return only when it is committed, raise otherwise."""

_READ_SIZE = 64 * 1024


class MllpListener:
    """An asyncio MLLP server answering each report message with an HL7 ACK.

    Parameters
    ----------
    settings
        Address, limits and timeouts (:class:`~drimbox.config.Hl7Settings`).
    accept
        Called (in a worker thread) with each valid report; see :data:`Accept`.
    """

    def __init__(self, settings: Hl7Settings, accept: Accept) -> None:
        self.settings = settings
        self._accept = accept
        self._zone = ZoneInfo(settings.timezone)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], bool] = {}  # task -> busy with a message
        self._address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closing: asyncio.Event | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the listener is bound to (the real port when settings say 0)."""
        if self._address is None:
            raise RuntimeError("the MLLP listener is not listening")
        return self._address

    @property
    def connection_count(self) -> int:
        """Connections open right now."""
        return len(self._connections)

    # -- running ---------------------------------------------------------------------------------

    async def serve(self, ready: Callable[[tuple[str, int]], None] | None = None) -> None:
        """Listen until cancelled or :meth:`close` is called, then close every connection.

        Parameters
        ----------
        ready
            Called with the bound address once the socket listens.
        """
        self._closing = asyncio.Event()
        server = await asyncio.start_server(self._connection, self.settings.host, self.settings.port, limit=_READ_SIZE)
        self._server = server
        host, port = server.sockets[0].getsockname()[:2]
        self._address = (str(host), int(port))
        log.info("MLLP listener started", host=self._address[0], port=self._address[1])
        if ready is not None:
            ready(self._address)
        try:
            async with server:
                await self._closing.wait()
        finally:
            server.close()
            await self._drain_connections()
            self._address = None
            log.info("MLLP listener stopped")

    def close(self) -> None:
        """Ask :meth:`serve` to stop (from the listener's own event loop)."""
        if self._closing is not None:
            self._closing.set()

    async def _drain_connections(self) -> None:
        """Idle connections end now; those answering a message get ``shutdown_grace_s`` to finish."""
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        pending = list(self._connections)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=self.settings.shutdown_grace_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1)

    def start(self, timeout: float = 10.0) -> None:
        """Run :meth:`serve` in a thread with its own event loop; return once listening.

        Raises
        ------
        OSError
            The address cannot be bound (in use, not local…).
        """
        if self._thread is not None:
            raise RuntimeError("the MLLP listener is already started")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.serve(ready=lambda _address: started.set()))
            except BaseException as exc:  # noqa: BLE001 - reported to start(), whatever it is
                failure.append(exc)
            finally:
                started.set()
                loop.close()

        self._thread = threading.Thread(target=run, name="mllp-listener", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError(f"the MLLP listener did not start within {timeout} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread started by :meth:`start` (no-op when not started)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed: serve() has ended by itself
            loop.call_soon_threadsafe(self.close)
        thread.join(timeout if timeout is not None else self.settings.shutdown_grace_s + 5)
        self._thread = None
        self._loop = None

    # -- one connection --------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername")
        if task is None or len(self._connections) >= self.settings.max_connections:
            log.warning("MLLP connection refused: too many connections", peer=peer, limit=self.settings.max_connections)
            writer.close()
            return
        self._connections[task] = False
        log.info("MLLP connection opened", peer=peer)
        try:
            await self._converse(task, reader, writer, peer)
        except asyncio.CancelledError:
            log.info("MLLP connection closed by shutdown", peer=peer)
        except (ConnectionError, OSError) as exc:
            log.info("MLLP connection lost", peer=peer, error=str(exc))
        except Exception:  # noqa: BLE001 - one connection's bug must not reach the server
            log.exception("MLLP connection failed", peer=peer)
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), timeout=2)

    async def _converse(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        settings = self.settings
        decoder = FrameDecoder(settings.max_message_bytes)
        garbage = 0
        while True:
            limit = settings.frame_timeout_s if decoder.in_frame else settings.idle_timeout_s
            try:
                async with asyncio.timeout(limit):
                    chunk = await reader.read(_READ_SIZE)
            except TimeoutError:
                if decoder.in_frame:
                    log.warning(
                        "MLLP frame not finished in time; connection closed",
                        peer=peer,
                        received=decoder.pending_size,
                        timeout_s=limit,
                    )
                    error = FramingError(
                        f"incomplete MLLP frame: no end block within {limit:g} s "
                        f"({decoder.pending_size} bytes received)"
                    )
                    await self._send(writer, self._refusal(decoder.pending_head(), error))
                else:
                    log.info("MLLP connection idle; closed", peer=peer, timeout_s=limit)
                return
            if not chunk:
                if decoder.in_frame:
                    log.warning(
                        "MLLP peer closed the connection in the middle of a frame",
                        peer=peer,
                        discarded=decoder.pending_size,
                    )
                else:
                    log.info("MLLP connection closed by peer", peer=peer)
                return
            for event in decoder.feed(chunk):
                if isinstance(event, Garbage):
                    garbage += event.size
                    log.warning("bytes outside any MLLP frame ignored", peer=peer, size=event.size)
                    if garbage > settings.max_message_bytes:
                        log.warning("too many bytes outside MLLP frames; connection closed", peer=peer)
                        return
                    continue
                self._connections[task] = True
                try:
                    answer = await self._answer_event(event, peer)
                finally:
                    self._connections[task] = False
                if answer is not None:
                    await self._send(writer, answer)

    async def _send(self, writer: asyncio.StreamWriter, answer: bytes | None) -> None:
        if answer is None:
            return
        writer.write(frame(answer))
        async with asyncio.timeout(self.settings.frame_timeout_s):
            await writer.drain()

    def _refusal(self, head: bytes, error: Hl7Error) -> bytes | None:
        """The AR for a frame known only by its first bytes; ``None`` when even its MSH is unreadable."""
        try:
            header = read_header(head)
        except HeaderError:
            header = salvage_header(head)
            if header is DEFAULT_HEADER:
                return None
        return self._ack(header, error.ack_code, error)

    def _ack(self, header: MessageHeader, code: AckCode, error: Hl7Error | None = None) -> bytes:
        text = build_ack(header, code, error, application=self.settings.application, facility=self.settings.facility)
        return encode_ack(text, header)

    async def _answer_event(self, event: Frame | OversizedFrame | AbandonedFrame, peer: object) -> bytes | None:
        if isinstance(event, OversizedFrame):
            log.warning(
                "MLLP frame over the size limit refused",
                peer=peer,
                size=event.size,
                limit=self.settings.max_message_bytes,
            )
            error = FramingError(
                f"message of {event.size} bytes exceeds the limit of {self.settings.max_message_bytes} bytes"
            )
            return self._refusal(event.head, error) or self._ack(DEFAULT_HEADER, AckCode.REJECT, error)
        if isinstance(event, AbandonedFrame):
            log.warning("MLLP frame cut short by a new start block", peer=peer, size=event.size)
            return self._refusal(
                event.head, FramingError("incomplete MLLP frame: a new start block came before its end block")
            )
        return await self._answer(event.payload, peer)

    async def _answer(self, payload: bytes, peer: object) -> bytes | None:
        try:
            header = read_header(payload)
        except HeaderError as exc:
            log.warning("HL7 message refused: unreadable MSH", peer=peer, error=str(exc))
            return self._ack(salvage_header(payload), exc.ack_code, exc)
        context = {"peer": peer, "control_id": header.control_id, "type": header.message_type}
        if header.message_code == "ACK":
            log.info("HL7 ACK received; not acknowledged", **context)
            return None
        try:
            report = await asyncio.to_thread(parse_report, payload, default_zone=self._zone)
        except Hl7Error as exc:
            log.warning(
                "HL7 message refused",
                **context,
                ack=exc.ack_code.value,
                code=int(exc.code),
                location=str(exc.location) if exc.location else None,
                error=exc.message,
            )
            return self._ack(header, exc.ack_code, exc)
        except Exception:  # noqa: BLE001 - a parser bug must give AE, not a dropped connection
            log.exception("HL7 message could not be parsed (internal error)", **context)
            return self._ack(
                header, AckCode.ERROR, ApplicationInternalError("internal error while reading the message")
            )
        try:
            await asyncio.to_thread(self._accept, report)
        except Exception as exc:  # noqa: BLE001 - whatever the queue raises, the RIS must retry
            log.error("HL7 report not queued", **context, error=repr(exc))
            return self._ack(
                header,
                AckCode.ERROR,
                ApplicationInternalError(f"the report could not be queued for publication: {exc}"),
            )
        log.info(
            "HL7 report queued",
            **context,
            action=report.action.value,
            study=report.study_instance_uid,
            version=report.version_number,
        )
        return self._ack(header, AckCode.ACCEPT)
