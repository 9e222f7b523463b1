"""The spool coordinator: jobs are files in a shared directory (docs/SPOOL.md).

Imports nothing heavy: a small host runs the operator script and a worker
for `gbt`/smoke jobs with only filelock, watchdog, rich and zstandard.

Public API::

    spool = Spool.init(path, heartbeat_s=30, stale_after_s=600)   # or Spool.open(path)
    spool.reload("etc/training_manifest.toml.example")
    claim = claim_next(spool, worker)      # Claim | None
    claim.heartbeat(); claim.complete(artifact_dir)   # or claim.fail(reason)
    spool.sweep(now=...); spool.counts()
"""

from cis490.fleet.claim import Claim, WorkerInfo, claim_next
from cis490.fleet.layout import JobState, Settings, SpoolError
from cis490.fleet.manifest import ManifestError
from cis490.fleet.spec import JobSpec, SpecError
from cis490.fleet.spool import LeaseLost, Spool

__all__ = ["Claim", "JobSpec", "claim_next", "JobState", "LeaseLost", "ManifestError", "Settings", "SpecError",
           "Spool", "SpoolError", "WorkerInfo"]
