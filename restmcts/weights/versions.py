"""Which weights each role's servers serve: a version number and the checkpoint that holds it.

    record = VersionRecord(f"{out}/weights.json")
    record.set("policy", Version(1, f"{out}/iter_1/policy"))   # before the weights are pushed
    record.get("policy")                                      # what a (re)starting replica loads

Ray restarts a dead server actor with its constructor's arguments, which name the checkpoint
the run started from. A replica therefore asks the record first: the driver writes the new
version there before it pushes the weights, so a replica that dies during or after a sync comes
back serving the version every other replica serves. The record is one small JSON file, written
atomically (restmcts.storage), next to the checkpoints it points at.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from restmcts import storage


@dataclass(frozen=True)
class Version:
    version: int  # 0 = the weights the run started from; i = after iteration i's training
    path: str  # the checkpoint folder holding those weights


class VersionRecord:
    def __init__(self, path: str) -> None:
        self.path = path

    def get(self, role: str) -> Version | None:
        entry = self._read().get(role)
        return Version(**entry) if entry else None

    def set(self, role: str, version: Version) -> None:
        entries = self._read()
        entries[role] = asdict(version)
        storage.write_text(self.path, json.dumps(entries, indent=2))

    def _read(self) -> dict[str, dict]:
        return json.loads(storage.read_text(self.path)) if storage.exists(self.path) else {}
