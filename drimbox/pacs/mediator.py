"""Route C-MOVE sub-operations arriving at the node's SCP to the C-MOVE request that caused them.

A C-MOVE's sub-operations reach the node on other associations, opened by the PACS to the node's
SCP. Each C-STORE-RQ may carry the *Move Originator AE Title* and *Move Originator Message ID*
(PS3.7 9.1.1.1, 9.3.1.1) of the C-MOVE that caused it: the mediator keys waiting requests by that
pair. Message IDs are therefore allocated here, node-wide (1..65535, wrapping, never 0, skipping
IDs still in use), and not left at pynetdicom's default of 1 for every request.

When a PACS leaves the originator fields out (they are optional) or fills them wrongly, the store
is matched by its SOP Instance UID against the instances each open request expects (known from
the prior C-FIND walk). A store that matches no request is *quarantined*: filed under
``quarantine_dir`` and logged, so that an operator can look at it; it is still acknowledged with
Success, since the node did store it.

After a request's final C-MOVE response, its late sub-operations (stragglers) are still routed for
``straggler_timeout_s`` seconds; then the request is closed and anything else is quarantined.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from drimbox.pacs.channel import InstanceChannel

__all__ = ["MessageIds", "MoveMediator", "MoveSubscription", "Route"]

log = logging.getLogger(__name__)

_MAX_MESSAGE_ID = 0xFFFF


class MessageIds:
    """Node-wide DIMSE Message IDs: 1..65535, wrapping, never 0, never one still in use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._in_use: set[int] = set()

    def next(self) -> int:
        """A fresh Message ID for a request whose responses nobody needs to route."""
        with self._lock:
            return self._advance()

    def reserve(self) -> int:
        """A Message ID kept out of circulation until :meth:`release`."""
        with self._lock:
            msg_id = self._advance()
            self._in_use.add(msg_id)
            return msg_id

    def release(self, msg_id: int) -> None:
        """Return a reserved Message ID."""
        with self._lock:
            self._in_use.discard(msg_id)

    def _advance(self) -> int:
        if len(self._in_use) >= _MAX_MESSAGE_ID:
            raise RuntimeError("all 65535 DIMSE Message IDs are in use")
        while True:
            self._last = self._last % _MAX_MESSAGE_ID + 1
            if self._last not in self._in_use:
                return self._last


@dataclass(eq=False)
class MoveSubscription:
    """One waiting C-MOVE request: where its instances go and who is waiting for them."""

    originator_aet: str
    dest: Path
    channel: InstanceChannel
    expected: frozenset[str]
    message_ids: set[int] = field(default_factory=set)
    delivered: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Route:
    """Where one incoming C-STORE goes: a waiting request, or quarantine."""

    root: Path
    subscription: MoveSubscription | None
    matched_by: str
    """``originator``, ``sop-instance`` or ``quarantine``."""

    @property
    def quarantined(self) -> bool:
        """Whether the store matched no request."""
        return self.subscription is None


class MoveMediator:
    """Node-wide registry of C-MOVE requests waiting for their sub-operations (thread-safe).

    Parameters
    ----------
    quarantine_dir:
        Where stores that match no request are filed (``<study>/<series>/<sop>.dcm`` below it).
    straggler_timeout_s:
        How long a request keeps receiving after its final C-MOVE response
        (``DimseSettings.move_quarantine_s``).
    queue_size:
        Instances buffered per request before the SCP handler blocks (back-pressure).
    """

    def __init__(self, *, quarantine_dir: Path, straggler_timeout_s: float = 60.0, queue_size: int = 32) -> None:
        self.quarantine_dir = Path(quarantine_dir)
        self.straggler_timeout_s = straggler_timeout_s
        self.queue_size = queue_size
        self.message_ids = MessageIds()
        self._lock = threading.Lock()
        self._by_key: dict[tuple[str, int], MoveSubscription] = {}
        self._open: list[MoveSubscription] = []

    def next_message_id(self) -> int:
        """A node-wide unique Message ID for any request (C-ECHO, C-FIND, C-GET, C-STORE)."""
        return self.message_ids.next()

    @contextmanager
    def subscribe(
        self, *, originator_aet: str, expected: Iterable[str], dest: Path, queue_size: int | None = None
    ) -> Iterator[MoveSubscription]:
        """Register a C-MOVE request for the duration of the ``with`` block.

        ``expected`` are the SOP Instance UIDs the request should bring (fallback routing);
        ``queue_size`` overrides the mediator's buffer size for this request.
        Allocate its Message ID(s) with :meth:`allocate` inside the block.
        """
        sub = MoveSubscription(
            originator_aet=originator_aet.strip(),
            dest=Path(dest),
            channel=InstanceChannel(queue_size or self.queue_size),
            expected=frozenset(expected),
        )
        with self._lock:
            self._open.append(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._open.remove(sub)
                for msg_id in sub.message_ids:
                    self._by_key.pop((sub.originator_aet, msg_id), None)
            for msg_id in sub.message_ids:
                self.message_ids.release(msg_id)
            sub.channel.close()

    def allocate(self, sub: MoveSubscription) -> int:
        """A Message ID for one C-MOVE-RQ of ``sub``; stores naming it are routed to ``sub``."""
        msg_id = self.message_ids.reserve()
        with self._lock:
            sub.message_ids.add(msg_id)
            self._by_key[(sub.originator_aet, msg_id)] = sub
        return msg_id

    def route(self, *, originator_aet: str | None, originator_message_id: int | None, sop_instance_uid: str) -> Route:
        """Find the request an incoming C-STORE belongs to."""
        with self._lock:
            if originator_aet and originator_message_id is not None:
                sub = self._by_key.get((originator_aet.strip(), int(originator_message_id)))
                if sub is not None and not sub.channel.closed:
                    sub.delivered.add(sop_instance_uid)
                    return Route(sub.dest, sub, "originator")
            for sub in self._open:
                if (
                    sop_instance_uid in sub.expected
                    and sop_instance_uid not in sub.delivered
                    and not sub.channel.closed
                ):
                    sub.delivered.add(sop_instance_uid)
                    return Route(sub.dest, sub, "sop-instance")
        return Route(self.quarantine_dir, None, "quarantine")

    @property
    def pending(self) -> int:
        """C-MOVE requests currently waiting."""
        with self._lock:
            return len(self._open)
