"""The run's durable state: which (iteration, phase) pairs are done, and their metrics.

`DIR/metrics.jsonl` holds one JSON object per finished phase; a phase's line is appended only
after its outputs were renamed into place, so the file is also the resume log: a rerun skips
every phase it lists and starts at the first one it does not.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from restmcts import storage


@dataclass
class RunState:
    out: str
    records: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, out: str) -> RunState:
        path = f"{out}/metrics.jsonl"
        records = []
        if storage.exists(path):
            for line in storage.read_text(path).splitlines():
                line = line.strip()
                if line:
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        break  # a torn last line from a crash: that phase reruns
        return cls(out, records)

    def done(self, iteration: int, phase: str) -> bool:
        return any(r["iteration"] == iteration and r["phase"] == phase for r in self.records)

    def get(self, iteration: int, phase: str) -> dict[str, Any]:
        for r in self.records:
            if r["iteration"] == iteration and r["phase"] == phase:
                return r
        raise KeyError((iteration, phase))

    def record(self, iteration: int, phase: str, seconds: float, **metrics: Any) -> dict[str, Any]:
        entry = json.loads(json.dumps({"iteration": iteration, "phase": phase, "seconds": round(seconds, 3),
                                       "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **metrics}))
        self.records.append(entry)
        text = "".join(json.dumps(r) + "\n" for r in self.records)
        storage.write_text(f"{self.out}/metrics.jsonl", text)
        return entry
