"""A plain-socket MLLP client for the listener tests (independent of the node's own framing code)."""

from __future__ import annotations

import socket
from types import TracebackType

VT, FS, CR = b"\x0b", b"\x1c", b"\r"


class MllpClient:
    """One TCP connection to an MLLP server; ``exchange`` sends a message and returns the answer."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(address, timeout=timeout)
        self._buffer = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: bytes) -> None:
        self.sock.sendall(VT + message + FS + CR)

    def receive(self, timeout: float | None = None) -> bytes | None:
        """The next answer's payload, or ``None`` when the server closed the connection."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while FS + CR not in self._buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return None  # closed with our bytes unread: a reset rather than a FIN
            if not chunk:
                return None
            self._buffer += chunk
        block, self._buffer = self._buffer.split(FS + CR, 1)
        assert block.startswith(VT), block[:20]
        return block[1:]

    def exchange(self, message: bytes) -> bytes:
        self.send(message)
        answer = self.receive()
        assert answer is not None, "connection closed without an answer"
        return answer

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def ack_fields(answer: bytes) -> dict[str, list[str]]:
    """Segments of an ACK by id, as lists of fields (field 0 is the segment id)."""
    segments = {}
    for line in answer.decode().rstrip("\r").split("\r"):
        fields = line.split("|")
        segments[fields[0]] = fields
    return segments
