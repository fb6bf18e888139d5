"""What a check works with: the target, the recorded clients, the run's shared data, its result.

Data several scenarios share (the kit's study, the KOS the node published for it) is produced once
per run by :class:`RunData`, on first use; when producing it fails, every scenario that needs it
fails with that cause (never passes, never is skipped).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from drimbox.certify.model import Evidence, Figure, Result, ScenarioFailed
from drimbox.certify.provision import KitStudy, Publication, produce_study, publish_report, store_study, wait_for_kos
from drimbox.certify.target import Target
from drimbox.certify.wire import Wire

__all__ = ["Probe", "RunData", "RunOptions"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Knobs of a run (sizes and thresholds: figures are always reported, thresholds judge them)."""

    ct_images: int = 1300
    """Images of the performance CT series (the national scenario: 1300 JPEG-LS images, ~200 MB)."""
    ct_rows: int = 512
    first_image_max_s: float = 2.0
    viewing_min_mb_s: float = 10.0
    export_min_mb_s: float = 5.0
    publish_timeout_s: float = 120.0
    workdir: Path | None = None
    data_dir: Path | None = None
    """Keep the kit's data here and reuse it on the next run (same patient, study and report: no new
    publication per run, e.g. to run the families one at a time against the same node)."""


class RunData:
    """Data shared by the scenarios of one run, produced on first use and kept (or its failure kept)."""

    def __init__(self, target: Target, wire: Wire, options: RunOptions) -> None:
        self.target = target
        self.wire = wire
        self.options = options
        self._tmp = tempfile.TemporaryDirectory(prefix="drimbox-certify-", dir=options.workdir)
        self.workdir = Path(self._tmp.name)
        self._cache: dict[str, object] = {}
        self.setup_evidence: list[Evidence] = []

    def close(self) -> None:
        self._tmp.cleanup()

    def _once(self, key: str, make: Callable[[], T]) -> T:
        if key not in self._cache:
            sink = self.wire.sink
            self.wire.sink = self.setup_evidence.append
            try:
                self._cache[key] = make()
            except Exception as exc:  # kept: every later use fails the same way
                self._cache[key] = exc
            finally:
                self.wire.sink = sink
        value = self._cache[key]
        if isinstance(value, Exception):
            raise ScenarioFailed(f"prerequisite failed ({key}): {value}") from value
        return value  # type: ignore[return-value]

    def study(self) -> KitStudy:
        """The kit's CT study, stored on the target (or the one a previous run kept in ``data_dir``)."""
        def make() -> KitStudy:
            kept = self._kept()
            seed = kept.get("seed") if kept.get("images") == self.options.ct_images else None
            kit = produce_study(self._data_root() / "study", self.options.ct_images, rows=self.options.ct_rows,
                                cols=self.options.ct_rows, seed=seed)  # type: ignore[arg-type]
            if seed is None:
                store_study(kit, self.target, self.wire, self.setup_evidence.append)
                self._keep(seed=kit.seed, images=self.options.ct_images, stored_via=kit.stored_via)
            else:
                kit.stored_via = f"{kept.get('stored_via', 'stored')} (by an earlier run, kept in {self._data_root()})"
                self.setup_evidence.append(Evidence("note", "data reused", kit.stored_via))
            return kit
        return self._once("the kit's study on the target", make)

    def _data_root(self) -> Path:
        return self.options.data_dir or self.workdir

    def _kept(self) -> dict[str, object]:
        state = self._data_root() / "kit.json"
        if self.options.data_dir is None or not state.exists():
            return {}
        return json.loads(state.read_text())  # type: ignore[no-any-return]

    def _keep(self, **values: object) -> None:
        if self.options.data_dir is not None:
            self.options.data_dir.mkdir(parents=True, exist_ok=True)
            (self.options.data_dir / "kit.json").write_text(json.dumps({**self._kept(), **values}))

    def consumer_token(self) -> str | None:
        """The token of a user of the consumer's portal (``Target.consumer_tokens``, else the run's)."""
        return self._once("the consumer's user token", lambda: self.target.consumer_tokens.fetch() or self.wire.token)

    def publication(self) -> Publication:
        """The KOS the node published for the kit's study after the kit sent its report over MLLP."""
        def make() -> Publication:
            kit = self.study()
            if self.target.hl7 is None or self.target.registry_fhir is None:
                raise ScenarioFailed("a drimm-source needs --hl7 host:port and --registry URL to publish")
            if not self._kept().get("reported"):
                ack = publish_report(kit, self.target.hl7, self.setup_evidence.append)
                if ack != "AA":
                    raise ScenarioFailed(f"the node answered {ack} to the kit's ORU^R01")
                self._keep(reported=True)
            return wait_for_kos(kit, self.target.registry_fhir, self.wire, timeout_s=self.options.publish_timeout_s)
        return self._once("the KOS published for the kit's study", make)


class Probe:
    """Handed to a scenario's check: record findings, evidence and figures into its result."""

    def __init__(self, result: Result, data: RunData) -> None:
        self.result = result
        self.data = data
        self.target = data.target
        self.wire = data.wire
        self.options = data.options

    def check(self, condition: bool, finding: str) -> bool:
        """Record ``finding`` when ``condition`` is false (the check goes on)."""
        if not condition:
            self.result.findings.append(finding)
        return condition

    def require(self, condition: bool, finding: str) -> None:
        """Like :meth:`check`, but stop the check when false."""
        if not condition:
            raise ScenarioFailed(finding)

    def evidence(self, kind: str, title: str, text: str) -> None:
        self.result.evidence.append(Evidence(kind, title, text))

    def note(self, text: str) -> None:
        self.evidence("note", "note", text)

    def figure(self, name: str, value: float, unit: str, *, threshold: float | None = None,
               higher_is_better: bool = True) -> None:
        """Report a figure; with a threshold, a figure on the wrong side of it is a finding."""
        self.result.figures.append(Figure(name, value, unit, threshold, higher_is_better))
        if threshold is not None:
            ok = value >= threshold if higher_is_better else value <= threshold
            self.check(ok, f"{name} = {value:.3g} {unit}, threshold {'≥' if higher_is_better else '≤'} "
                           f"{threshold:g} {unit}")

    def uses(self, source: str) -> None:
        """Say where the data this check looks at came from."""
        self.result.data_source = source
