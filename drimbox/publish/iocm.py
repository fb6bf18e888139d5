"""IOCM rejection notes received by the node's SCP → rejection jobs in the outbox (DESIGN F4).

A PACS that rejects instances (IHE IOCM: "Rejected for Quality Reasons", "Incorrect Modality
Worklist Entry"…) C-STOREs a rejection note — a KOS — to the node. The SCP files every unsolicited
C-STORE durably in quarantine (``<quarantine>/<study>/<series>/<sop>.dcm``) before answering
Success; this watcher reads the KOS files there, queues one ``reject`` job per published exam of
each study the note names (idempotent by note and exam), then moves the note to ``<data_dir>/iocm``.
A crash between the two steps only makes the next scan queue the same jobs again (same keys).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import structlog
from pydicom import dcmread

from dicomweb_gateway.part10 import READ_ERRORS
from drimbox.manifest import KOS_SOP_CLASS, NotARejectionNote, read_rejection_note
from drimbox.publish.jobs import JobKind
from drimbox.publish.outbox import Outbox

__all__ = ["RejectionWatcher"]

log = structlog.get_logger(__name__)


class RejectionWatcher:
    """Polls the quarantine for IOCM rejection notes.

    Parameters
    ----------
    quarantine_dir:
        Where the SCP files C-STOREs no retrieval waits for.
    processed_dir:
        Where handled notes are moved (kept for audit).
    outbox:
        Where rejection jobs go.
    poll_s:
        Seconds between scans.
    """

    def __init__(self, quarantine_dir: Path, processed_dir: Path, outbox: Outbox, *, poll_s: float = 2.0) -> None:
        self.quarantine_dir = quarantine_dir
        self.processed_dir = processed_dir
        self.outbox = outbox
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scan(self) -> int:
        """Handle every rejection note in quarantine now; return how many jobs were queued."""
        queued = 0
        for path in sorted(self.quarantine_dir.glob("*/*/*.dcm")):
            try:
                ds = dcmread(path, stop_before_pixels=True)
            # Any unreadable file is skipped, not raised: one hostile file must not stop every later note.
            except READ_ERRORS as exc:
                log.warning("quarantine: unreadable file left for an operator", path=str(path), error=str(exc))
                continue
            if str(ds.get("SOPClassUID", "")) != KOS_SOP_CLASS:
                continue  # not a KOS: a stray image, for an operator
            try:
                note = read_rejection_note(ds)
            except NotARejectionNote:
                continue
            except READ_ERRORS as exc:
                log.warning("quarantine: undecodable KOS left for an operator", path=str(path), error=str(exc))
                continue
            for study in sorted(note.studies()):
                rejected = sorted(note.rejected_uids(study))
                for exam in self.outbox.exams_for_study(study):
                    self.outbox.enqueue_exam(
                        JobKind.REJECT, exam.study_instance_uid, exam.accession_number,
                        detail={"rejected": rejected, "note": note.sop_instance_uid, "reason": str(note.reason)},
                        key=f"reject|{note.sop_instance_uid}|{exam.exam_key}")
                    queued += 1
            target = self.processed_dir / path.relative_to(self.quarantine_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
            log.info("IOCM rejection note handled", note=note.sop_instance_uid, studies=len(note.studies()),
                     instances=len(note.rejected))
        return queued

    def start(self) -> None:
        """Scan every ``poll_s`` seconds in a thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="iocm-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scanning."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.scan()
            except Exception:  # a bad file or a locked outbox must not end the watcher
                log.exception("IOCM watcher: scan failed")
