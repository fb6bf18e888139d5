"""MLLP framing (HL7 v2.5 Appendix C.4, MLLP Release 2 §3): ``<VT> message <FS><CR>``, sans I/O.

:class:`FrameDecoder` is fed whatever the socket returns and yields events; it never holds more
than ``max_size`` bytes of a frame (an oversized frame is discarded as it arrives, only its first
bytes are kept so that the answer can still echo its MSH). Deviations met in the field are
tolerated: an end block ``<FS>`` not followed by ``<CR>``, and CR/LF between frames. Anything else
outside a frame is garbage and reported as such.

The framing bytes cannot occur inside a message: HL7 text never contains the control characters
VT (0x0B) or FS (0x1C), in any character set that MLLP can carry.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "END_BLOCK",
    "START_BLOCK",
    "AbandonedFrame",
    "Frame",
    "FrameDecoder",
    "FrameEvent",
    "Garbage",
    "OversizedFrame",
    "frame",
]

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
HEAD_SIZE = 4096
"""Bytes kept of an oversized or abandoned frame: enough for its MSH, hence for an answer."""


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete frame: the message bytes, without the framing."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class OversizedFrame:
    """A complete frame larger than the limit: its first bytes, and its size."""

    head: bytes
    size: int


@dataclass(frozen=True, slots=True)
class AbandonedFrame:
    """A frame cut short by a new start block (the sender gave up on it and started another)."""

    head: bytes
    size: int


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes outside any frame (not the tolerated CR/LF between frames)."""

    size: int


FrameEvent = Frame | OversizedFrame | AbandonedFrame | Garbage


def frame(message: bytes) -> bytes:
    """Wrap one message in an MLLP block."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class FrameDecoder:
    """Incremental MLLP block decoder.

    Parameters
    ----------
    max_size
        Largest message (payload) accepted, in bytes.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._in_frame = False
        self._buffer = bytearray()
        self._size = 0  # bytes of the current frame seen so far (kept or not)
        self._oversized = False

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and not ended (bytes were read that have no answer yet)."""
        return self._in_frame

    @property
    def pending_size(self) -> int:
        """Size of the frame being read (0 outside a frame)."""
        return self._size if self._in_frame else 0

    def pending_head(self) -> bytes:
        """The first bytes of the frame being read (for an answer when it never ends)."""
        return bytes(self._buffer[:HEAD_SIZE])

    def _start(self) -> None:
        self._in_frame = True
        self._buffer.clear()
        self._size = 0
        self._oversized = False

    def _append(self, data: bytes | memoryview) -> None:
        self._size += len(data)
        if self._oversized:
            return
        if self._size > self.max_size:
            self._oversized = True
            keep = HEAD_SIZE - len(self._buffer)
            if keep > 0:
                self._buffer += data[:keep]
            del self._buffer[HEAD_SIZE:]
            return
        self._buffer += data

    def _finish(self) -> FrameEvent:
        self._in_frame = False
        size = self._size
        if self._oversized:
            head = bytes(self._buffer[:HEAD_SIZE])
            self._buffer.clear()
            return OversizedFrame(head=head, size=size)
        payload = bytes(self._buffer)
        self._buffer.clear()
        return Frame(payload=payload)

    def feed(self, data: bytes) -> list[FrameEvent]:
        """Consume ``data`` and return the events it completes, in order."""
        events: list[FrameEvent] = []
        view = memoryview(data)
        garbage = 0
        position = 0
        while position < len(view):
            if not self._in_frame:
                start = data.find(START_BLOCK, position)
                stop = len(data) if start == -1 else start
                stray = bytes(view[position:stop]).strip(b"\r\n" + END_BLOCK)
                garbage += len(stray)
                if start == -1:
                    break
                self._start()
                position = start + 1
                continue
            end = data.find(END_BLOCK, position)
            restart = data.find(START_BLOCK, position)
            if restart != -1 and (end == -1 or restart < end):
                self._append(view[position:restart])
                events.append(AbandonedFrame(head=bytes(self._buffer[:HEAD_SIZE]), size=self._size))
                self._in_frame = False
                position = restart
                continue
            if end == -1:
                self._append(view[position:])
                break
            self._append(view[position:end])
            if garbage:
                events.append(Garbage(size=garbage))
                garbage = 0
            events.append(self._finish())
            position = end + 1  # the CR after FS, if any, is skipped as inter-frame whitespace
        if garbage:
            events.append(Garbage(size=garbage))
        return events
