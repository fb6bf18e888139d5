"""KOS publication to the national registry (DESIGN F3/F4): durable outbox, pipeline, XDS.b client.

- :class:`Outbox` — the durable queue the MLLP listener commits to before it ACKs (``accept``).
- :class:`OutboxWorker` — threads that claim jobs under a lease and run the pipeline.
- :mod:`drimbox.publish.xds` — ITI-41/18/43/57 over SOAP 1.2, MTOM/XOP, DSG, signing.
- :mod:`drimbox.publish.vihf` — the DMP's VIHF 3.0 SAML assertion.

Errors are those of :mod:`drimbox.publish.errors`.
"""

from drimbox.publish.crash import CrashPlan, CrashPoint
from drimbox.publish.errors import PermanentPublishError, PublishError, RegistryError, TransientPublishError
from drimbox.publish.jobs import Job, JobKind, JobState
from drimbox.publish.outbox import Backoff, ExamRecord, JobHandle, Outbox, PreparedSubmission
from drimbox.publish.worker import OutboxWorker

__all__ = [
    "Backoff",
    "CrashPlan",
    "CrashPoint",
    "ExamRecord",
    "Job",
    "JobHandle",
    "JobKind",
    "JobState",
    "Outbox",
    "OutboxWorker",
    "PermanentPublishError",
    "PreparedSubmission",
    "PublishError",
    "RegistryError",
    "TransientPublishError",
]
