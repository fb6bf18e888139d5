"""Retrieve studies in a fresh process and report its peak memory (run by test_memory.py).

Usage: ``python memory_probe.py CONFIG.json``; prints one JSON object on stdout with the process's
VmHWM (peak resident set) after set-up and after the retrievals, and what was retrieved.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _vm_hwm() -> int:
    """Peak resident set size of this process so far, in bytes (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(config_path: str) -> None:
    from drimbox.config import DimseSettings, LocalAE, RemoteAE, StorageSettings
    from drimbox.pacs import MoveMediator, NodeScp, PacsClient

    config = json.loads(Path(config_path).read_text())
    local = LocalAE(**config["local"])
    remote = RemoteAE(**config["remote"])
    dimse = DimseSettings(max_pdu=config.get("max_pdu", 262_144))
    dest = Path(config["dest"])
    storage = StorageSettings(data_dir=dest / "node")
    mediator = MoveMediator(quarantine_dir=storage.quarantine_dir)
    scp = NodeScp(local, dimse, storage, mediator)
    scp.start()
    try:
        with PacsClient(local, remote, dimse, mediator=mediator) as client:
            walks = [client.walk_study(uid) for uid in config["studies"]]
            idle = _vm_hwm()
            started = time.monotonic()
            total = largest = count = 0
            for walk in walks:
                method = client.get if config["method"] == "get" else client.move
                for instance in method(walk.study_instance_uid, dest=dest / "out", walk=walk):
                    total += instance.size
                    largest = max(largest, instance.size)
                    count += 1
                    instance.path.unlink()  # keep the disk footprint down; memory is what is measured
            seconds = time.monotonic() - started
            peak = _vm_hwm()
    finally:
        scp.stop()
    json.dump(
        {"idle": idle, "peak": peak, "bytes": total, "largest": largest, "instances": count, "seconds": seconds},
        sys.stdout,
    )


if __name__ == "__main__":
    main(sys.argv[1])
