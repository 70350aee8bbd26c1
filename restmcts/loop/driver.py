"""The self-training driver: Algorithm 1 of ReST-MCTS*, as named, timed, resumable phases.

    for i in 1..N:
        search        MCTS* with (pi_{i-1}, V_{i-1}) over D_G            -> iter_i/traces, values
        extract       verified traces D_G^i (policy data)                -> iter_i/policy_data
        train_prm     V_i on D_V^1..i (accumulated values, MSE)           -> iter_i/prm/
        train_policy  pi_i on D_G^i (SFT, loss on solution tokens)        -> iter_i/policy/
        sync          the live servers serve pi_i and V_i
        evaluate      greedy CoT on the held-out split                    -> iter_i/eval_traces

The servers and a search worker pool (restmcts.actors.rollout) serve every pass of the run. A
train phase ends with its live learners sending the new weights straight to the servers
(`sync.method`: a broadcast, or the object store), then the learners stop, so the next role's
learners find the resources free; `sync` logs those pushes, and has the servers read the
checkpoints of a role whose learners are gone (a resumed run). `OUT/weights.json` names the
version every server serves, so a server that dies and restarts comes back with the latest
synced weights.
`iter_0/eval_traces.parquet` evaluates the bootstrap models. Each phase appends its typed record
(restmcts.loop.state) to `metrics.jsonl` after its outputs are in place; a rerun skips finished
phases. `loop.algorithm` picks the Algorithm (restmcts.loop.algorithms) that sets the search's
settings, the trace filter and whether train_prm runs: with `rest_em` the search samples
`loop.rest_em_samples` solutions per question and keeps every outcome-correct one; no PRM is trained.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from restmcts import replay, storage
from restmcts.actors.rollout import Rollout
from restmcts.actors.runtime import init_ray
from restmcts.actors.search_pass import PassSummary
from restmcts.actors.servers import ROLES, start_servers
from restmcts.config import Config, evaluation_search
from restmcts.loop.algorithms import algorithm_for
from restmcts.loop.heldout import independent_accuracy
from restmcts.loop.state import (
    EvaluationStats,
    ExtractStats,
    LearnerStats,
    PassStats,
    PhaseRecord,
    PhaseStats,
    RunState,
    SyncStats,
)
from restmcts.replay import Trace
from restmcts.tasks import Question, task_for
from restmcts.telemetry import metric
from restmcts.weights import Version

if TYPE_CHECKING:
    from restmcts.actors.servers import SyncReport
    from restmcts.learners.group import Role


class SelfTraining:
    def __init__(self, cfg: Config, out: str):
        self.cfg = cfg
        self.algorithm = algorithm_for(cfg)
        self.out = out
        self.state = RunState.open(out)
        self.task = task_for(cfg)
        self.train_questions = self.task.questions("train")
        self.test_questions = self.task.questions("test", cfg.data.num_test)
        self.record_path = f"{out}/weights.json"
        self.rollout: Rollout | None = None
        self.pushed: dict[str, SyncReport] = {}  # role -> how this iteration's weights reached the servers

    # ------------------------------------------------------------------ Algorithm 1

    def run(self) -> list[PhaseRecord]:
        storage.write_text(f"{self.out}/config.json", _json(self.cfg.to_dict()))
        if self._all_done():
            print(f"[self_train] {self.out}: every phase is done; nothing to do", file=sys.stderr)
            return self.state.records
        init_ray(self.cfg.ray)
        resume = self._resume_point()
        self.rollout = Rollout(self.cfg, start_servers(self.cfg, *self._checkpoints(resume), self.record_path, resume))
        try:
            self._phase(0, "evaluate", self.evaluate)
            for i in range(1, self.cfg.loop.iterations + 1):
                self._phase(i, "search", self.search)
                self._phase(i, "extract", self.extract)
                if self.algorithm.trains_prm:
                    self._phase(i, "train_prm", self.train_prm)
                self._phase(i, "train_policy", self.train_policy)
                self._phase(i, "sync", self.sync)
                self._phase(i, "evaluate", self.evaluate)
        finally:
            self.rollout.shutdown()
        # imported here, not at the top: `python -m restmcts.loop.report` imports this package first
        from restmcts.loop.report import write_report

        print(f"[self_train] run report: {write_report(self.out)}", file=sys.stderr)
        return self.state.records

    def search(self, i: int) -> PassStats:
        settings = self.algorithm.search_settings(self.cfg)  # MCTS* for ReST-MCTS*, sampling for ReST-EM
        summary = self._rollout().run_pass(self._questions(i), settings, i, self._dir(i), label=f"search {i}")
        return _pass_stats(summary)

    def extract(self, i: int) -> ExtractStats:
        traces = replay.read_traces(f"{self._dir(i)}/traces.parquet")
        policy_data = self.algorithm.policy_data(traces, self.cfg.loop)
        replay.write_records(policy_data, Trace, f"{self._dir(i)}/policy_data.parquet")
        values = sum(len(replay.read_values(p)) for p in self._value_paths(i)) if self.algorithm.trains_prm else 0
        return ExtractStats(samples=len(policy_data), traces=len(traces), prm_samples=values,
                            questions_with_data=len({t.question_id for t in policy_data}))

    def train_prm(self, i: int) -> LearnerStats:
        return self._train(i, "prm", self._checkpoints(i - 1)[1], self._value_paths(i))

    def train_policy(self, i: int) -> LearnerStats:
        base = self.cfg.model.policy if self.cfg.learners.policy_init == "base" else self._checkpoints(i - 1)[0]
        return self._train(i, "policy", base, [f"{self._dir(i)}/policy_data.parquet"])

    def sync(self, i: int) -> SyncStats:
        """The servers serve iteration i's models: pushed by the train phases' learners, or read
        from the checkpoints where those learners are gone (a resumed run)."""
        servers = self._rollout().servers
        new, old = (dict(zip(ROLES, self._checkpoints(k), strict=True)) for k in (i, i - 1))
        sent = {}
        for role in ROLES:
            if role in self.pushed:
                sent[role] = self.pushed.pop(role)
            elif new[role] != old[role]:  # trained, but its learners are gone (a resumed run)
                sent[role] = servers.load(role, Version(i, new[role]))
        reports = sent.values()
        return SyncStats(policy=new["policy"], prm=new["prm"], method="+".join(sorted({r.method for r in reports})),
                         bytes=sum(r.bytes for r in reports), reloaded=sum(r.reloaded for r in reports),
                         policy_seconds=sent["policy"].seconds if "policy" in sent else 0.0,
                         prm_seconds=sent["prm"].seconds if "prm" in sent else 0.0)

    def evaluate(self, i: int) -> PassStats:
        search_cfg = evaluation_search(self.cfg, strategy=self.cfg.loop.eval_strategy)
        summary = self._rollout().run_pass(self.test_questions, search_cfg, i, self._dir(i),
                                           traces_name="eval_traces.parquet", values_name=None,
                                           label=f"evaluate {i}")
        traces = replay.read_traces(f"{self._dir(i)}/eval_traces.parquet")
        heldout = independent_accuracy(traces, [q.id for q in self.test_questions],
                                       getattr(self.task, "independent_check", None))
        print(f"[self_train] iteration {i}: held-out accuracy {summary.accuracy:.3f}", file=sys.stderr)
        return _pass_stats(summary, EvaluationStats, heldout_accuracy=heldout)

    # ------------------------------------------------------------------ plumbing

    def _phase(self, i: int, name: str, fn: Callable[[int], PhaseStats]) -> None:
        if self.state.done(i, name):
            return
        print(f"[self_train] iteration {i}: {name}", file=sys.stderr)
        start = time.time()
        stats = fn(i)
        entry = self.state.record(i, name, time.time() - start, stats)
        print(f"[self_train] iteration {i}: {name} done in {entry.seconds:.1f}s", file=sys.stderr)

    def _train(self, i: int, role: Role, init: str, data: list[str]) -> LearnerStats:
        """Train `role` for iteration i into `iter_i/<role>`, then its live learners send the new
        weights to the servers and stop."""
        from restmcts.learners import train_live

        if self.cfg.search.release_during_training:
            self._rollout().release()

        def restart(attempt: int, err: Exception) -> None:
            print(f"[self_train] {role} learner died ({type(err).__name__}); starting the phase over "
                  f"(restart {attempt} of {self.cfg.learners.max_restarts})", file=sys.stderr)

        out_path = f"{self._dir(i)}/{role}"
        result, group = train_live(self.cfg, role, init, data, out_path, on_restart=restart)
        try:
            self.pushed[role] = self._rollout().servers.push(role, group, Version(i, out_path), self.cfg)
        finally:
            group.shutdown()
        if result.final_loss is not None:
            metric("restmcts_learner_loss").set(result.final_loss, tags={"role": role})
        metric("restmcts_learner_samples_per_s").set(result.samples_per_s, tags={"role": role})
        if result.steps:
            metric("restmcts_learner_step_seconds").set(result.train_seconds / result.steps, tags={"role": role})
        # per-step metrics stay with the learner; the log keeps the summary and the loss curve (run report)
        return LearnerStats.of(result)

    def _questions(self, i: int) -> list[Question]:
        n = self.cfg.data.num_questions or len(self.train_questions)
        if not self.cfg.loop.fresh_questions:
            return self.train_questions[:n]
        start = ((i - 1) * n) % len(self.train_questions)
        window = self.train_questions[start:start + n]
        return window + self.train_questions[: n - len(window)]

    def _value_paths(self, i: int) -> list[str]:
        """D_V accumulates across iterations, as in the paper."""
        return [f"{self._dir(k)}/values.parquet" for k in range(1, i + 1)]

    def _checkpoints(self, i: int) -> tuple[str, str]:
        """(policy, PRM) checkpoints after iteration i (the bootstrap models for i = 0)."""
        if i == 0:
            return self.cfg.model.policy, self.cfg.model.prm
        prm = f"{self._dir(i)}/prm" if self.algorithm.trains_prm else self._checkpoints(i - 1)[1]
        return f"{self._dir(i)}/policy", prm

    def _resume_point(self) -> int:
        """The last iteration whose weights are synced: the servers start from its checkpoints."""
        done = [i for i in range(1, self.cfg.loop.iterations + 1) if self.state.done(i, "sync")]
        return max(done, default=0)

    def _all_done(self) -> bool:
        return self.state.done(self.cfg.loop.iterations, "evaluate") if self.cfg.loop.iterations else \
            self.state.done(0, "evaluate")

    def _dir(self, i: int) -> str:
        return f"{self.out}/iter_{i}"

    def _rollout(self) -> Rollout:
        assert self.rollout is not None
        return self.rollout


def _pass_stats(s: PassSummary, kind: type[PassStats] = PassStats, **more: float | None) -> PassStats:
    """A pass summary in the log's terms (`kind`'s fields beyond PassStats come in `more`)."""
    return kind(accuracy=s.accuracy, solved_fraction=s.solved / max(s.questions, 1), questions=s.questions,
                samples=s.trace_rows, value_samples=s.value_rows, tokens=s.tokens,
                avg_tokens=s.tokens / max(s.questions, 1), prm_calls=s.prm_calls, retries=s.retries,
                resumed=s.resumed, failures=s.failures, bad_scores=s.bad_scores, wasted_tokens=s.wasted_tokens,
                finished=s.finished, wall_seconds=s.wall_seconds, phases=dict(s.phases), **more)


def _json(values: dict) -> str:
    import json

    return json.dumps(values, indent=2)


def self_train(cfg: Config, out: str) -> list[PhaseRecord]:
    return SelfTraining(cfg, out).run()
