"""The run's durable state: which (iteration, phase) pairs are done, and their typed records.

`DIR/metrics.jsonl` holds one JSON object per finished phase; a phase's line is appended only
after its outputs were renamed into place, so the file is also the resume log: a rerun skips
every phase it lists and starts at the first one it does not.

Each line is a `PhaseRecord` flattened: `iteration`, `phase`, `seconds`, `time`, then the fields
of the phase's statistics (`PHASE_STATS[phase]`). Readers get the typed records back. Fields
added after the first runs (`bad_scores`, `wasted_tokens`, `finished`, `step_losses`,
`restarts`) have defaults, so older logs still read; keys a reader does not know are ignored
and kept on disk as they were.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

from restmcts import storage


@dataclass(frozen=True, kw_only=True)
class PassStats:
    """A search pass over a set of questions: the search phase (training questions, every
    simulation) and, with `EvaluationStats`, the evaluate phase (held-out questions)."""

    accuracy: float  # share of the questions whose chosen answer is correct
    solved_fraction: float  # share with at least one verified-correct solution
    questions: int
    samples: int  # trace rows written
    value_samples: int  # (Q, p, v) rows written
    tokens: int  # policy tokens generated
    avg_tokens: float  # tokens per question
    prm_calls: int
    retries: int  # chunks resubmitted after a worker died
    resumed: int  # questions found done from an interrupted run
    failures: int  # questions that ended without any terminal solution
    bad_scores: int = 0  # PRM outputs that were NaN/inf or outside [0, 1], repaired
    wasted_tokens: int = 0  # tokens of samples dropped as empty or duplicate (inside `tokens`)
    finished: int = 0  # nodes whose answer a greedy completion read
    wall_seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # where tree time went (policy_wait, prm_wait, ...)


@dataclass(frozen=True, kw_only=True)
class EvaluationStats(PassStats):
    heldout_accuracy: float | None = None  # the task's independent check; None without an oracle


@dataclass(frozen=True, kw_only=True)
class ExtractStats:
    samples: int  # policy data rows (D_G^i)
    traces: int  # trace rows the search wrote
    prm_samples: int  # value rows the PRM trains on (D_V^1..i); 0 when no PRM is trained
    questions_with_data: int


@dataclass(frozen=True, kw_only=True)
class LearnerStats:
    """One learner phase (train_prm or train_policy): restmcts.learners.TrainResult without the
    per-step history, which the log keeps as `step_losses`."""

    role: str  # "policy" | "prm"
    init_path: str
    out_path: str
    samples: int
    world_size: int
    epochs: int
    steps: int
    epoch_losses: tuple[float, ...]
    final_loss: float | None
    train_seconds: float
    samples_per_s: float
    tokens_per_s: float
    truncated: int
    weights_digests: tuple[str, ...]
    restarts: int = 0
    step_losses: tuple[float, ...] = ()  # loss per optimizer step (rounded); older logs have epoch_losses only
    learner_seconds: float  # the learner's wall time for the whole call (load, train, save)

    @classmethod
    def of(cls, result: Any) -> LearnerStats:
        """A learners TrainResult's record: its fields of the same names, the history as step
        losses and its `seconds` as `learner_seconds`."""
        same = {f.name: getattr(result, f.name) for f in dataclasses.fields(cls) if hasattr(result, f.name)}
        return cls(**same, step_losses=tuple(round(m.loss, 5) for m in result.history),
                   learner_seconds=result.seconds)


@dataclass(frozen=True, kw_only=True)
class SyncStats:
    policy: str  # the checkpoints now in the live servers
    prm: str
    method: str = ""  # how the weights travelled: collective | object_store | checkpoint (a resumed run)
    bytes: int = 0  # weights sent, both models
    policy_seconds: float = 0.0
    prm_seconds: float = 0.0
    reloaded: int = 0  # replicas that missed the push and read the checkpoint instead


PhaseStats = PassStats | ExtractStats | LearnerStats | SyncStats

# The phases of one iteration, in the order Algorithm 1 runs them, and the statistics each logs.
PHASE_STATS: dict[str, type] = {
    "search": PassStats, "extract": ExtractStats, "train_prm": LearnerStats, "train_policy": LearnerStats,
    "sync": SyncStats, "evaluate": EvaluationStats,
}
PHASES = tuple(PHASE_STATS)


@dataclass(frozen=True)
class PhaseRecord:
    iteration: int  # 0 = the starting models (evaluate only)
    phase: str  # one of PHASES
    seconds: float  # the phase's wall time
    time: str  # when it finished (local time, ISO 8601)
    stats: PhaseStats  # of the type PHASE_STATS[phase]

    def to_dict(self) -> dict[str, Any]:
        """The line's JSON object."""
        return {"iteration": self.iteration, "phase": self.phase, "seconds": self.seconds, "time": self.time,
                **dataclasses.asdict(self.stats)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "metrics.jsonl") -> PhaseRecord:
        """A line read back; fails naming `where` and the missing key or unknown phase."""
        for key in ("iteration", "phase", "seconds"):
            if key not in values:
                raise ValueError(f"{where}: a record without {key!r}; is this a self-training metrics.jsonl?")
        kind = PHASE_STATS.get(values["phase"])
        if kind is None:
            raise ValueError(f"{where}: unknown phase {values['phase']!r}; known: {', '.join(PHASES)}")
        known = {f.name: f for f in dataclasses.fields(kind)}
        missing = [name for name, f in known.items() if name not in values and _required(f)]
        if missing:
            raise ValueError(f"{where}: the {values['phase']} record lacks {', '.join(map(repr, missing))}")
        stats = kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known})
        return cls(values["iteration"], values["phase"], values["seconds"], values.get("time", ""), stats)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@dataclass
class RunState:
    out: str
    records: list[PhaseRecord] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # each record's line as it is on disk

    @classmethod
    def open(cls, out: str) -> RunState:
        path = f"{out}/metrics.jsonl"
        state = cls(out)
        if storage.exists(path):
            for n, line in enumerate(storage.read_text(path).splitlines(), 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    values = json.loads(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a crash: that phase reruns
                state.records.append(PhaseRecord.from_dict(values, f"{path} line {n}"))
                state.lines.append(line)
        return state

    def done(self, iteration: int, phase: str) -> bool:
        return any(r.iteration == iteration and r.phase == phase for r in self.records)

    def get(self, iteration: int, phase: str) -> PhaseRecord:
        for r in self.records:
            if r.iteration == iteration and r.phase == phase:
                return r
        raise KeyError((iteration, phase))

    def of_phase(self, phase: str) -> list[PhaseRecord]:
        """The finished records of one phase, by iteration."""
        return sorted((r for r in self.records if r.phase == phase), key=lambda r: r.iteration)

    def record(self, iteration: int, phase: str, seconds: float, stats: PhaseStats) -> PhaseRecord:
        """Log a finished phase: its line goes to disk (the whole file rewritten atomically, so a
        torn line from a crash is dropped), and its record, as read back, is returned."""
        kind = PHASE_STATS.get(phase)
        if kind is None or type(stats) is not kind:
            raise TypeError(f"phase {phase!r} logs {kind.__name__ if kind else 'nothing'}, not {type(stats).__name__}"
                            f" (phases: {', '.join(PHASES)})")
        line = json.dumps(PhaseRecord(iteration, phase, round(seconds, 3), time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      stats).to_dict())
        entry = PhaseRecord.from_dict(json.loads(line))
        storage.write_text(f"{self.out}/metrics.jsonl", "".join(x + "\n" for x in [*self.lines, line]))
        self.records.append(entry)
        self.lines.append(line)
        return entry
