"""Two self-training iterations on local Ray: what the loop carries from one iteration to the next
(accumulated value data, fresh question windows, the policy's init, the trace filter), and the
`restmcts_` metric series the run exports."""

from __future__ import annotations

import threading
import urllib.request

import pytest

from restmcts import replay

SERIES = ("restmcts_questions_done", "restmcts_questions_solved", "restmcts_nodes_expanded",
          "restmcts_tokens_generated", "restmcts_prm_calls", "restmcts_trees_in_flight",
          "restmcts_server_queue_depth", "restmcts_server_batch_size", "restmcts_learner_loss",
          "restmcts_learner_samples_per_s", "restmcts_learner_step_seconds")
MIN_VALUE = 0.6  # loop.trace_min_value


class Scraper:
    """Reads this node's Prometheus endpoint until stopped; keeps every `ray_restmcts_` sample seen
    (a search worker's gauges disappear a while after the pass kills it, so they are read live)."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.seen: dict[str, float] = {}  # series with labels -> last value
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.scrape()
            self.stop.wait(0.5)

    def scrape(self) -> None:
        try:
            text = urllib.request.urlopen(self.url, timeout=5).read().decode()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("ray_restmcts_"):
                name, value = line.rsplit(" ", 1)
                self.seen[name] = float(value)

    def names(self) -> set[str]:
        return {k.split("{")[0].removeprefix("ray_").removesuffix("_total").removesuffix("_bucket")
                .removesuffix("_count").removesuffix("_sum") for k in self.seen}

    def value(self, name: str, **tags: str) -> list[float]:
        want = [f'{k}="{v}"' for k, v in tags.items()]
        names = (f"ray_{name}", f"ray_{name}_total")  # Prometheus suffixes counters with _total
        return [v for k, v in self.seen.items() if k.split("{")[0] in names and all(w in k for w in want)]


@pytest.mark.slow
def test_two_iterations_carry_data_forward_and_export_every_series(ray_local, trained_ckpt, tmp_path):
    from restmcts.config import load_config
    from restmcts.loop import self_train
    from restmcts.tasks import make_task
    from restmcts.telemetry import metric

    cfg = load_config("configs/arith-tiny.yaml", [
        f"model.policy={trained_ckpt}/policy", f"model.prm={trained_ckpt}/prm",
        "loop.iterations=2", "loop.fresh_questions=true", f"loop.trace_min_value={MIN_VALUE}",
        "learners.policy_init=base", "data.num_questions=8", "data.num_test=4",
        "data.arith_min_ops=2", "data.arith_max_ops=2", "search.num_simulations=8", "search.max_depth=4",
        "search.num_workers=1", "search.trees_per_worker=8",
        "learners.num_learners=0", "learners.policy_epochs=1", "learners.prm_epochs=1",
    ])
    out = tmp_path / "run"
    metric.cache_clear()  # this process's metrics were made (or not) by earlier tests
    scraper = Scraper(ray_local._private.worker.global_worker.node.metrics_export_port)
    try:
        records = self_train(cfg, str(out))
        logged = {(r.iteration, r.phase): r.stats for r in records}
        for _ in range(60):  # the last reports reach the endpoint within a few seconds
            if scraper.names() >= set(SERIES) and scraper.value("restmcts_learner_loss", role="prm") == \
                    [logged[(2, "train_prm")].final_loss]:
                break
            scraper.stop.wait(0.5)
    finally:
        scraper.stop.set()
        scraper.thread.join(timeout=10)

    # Fresh questions: iteration i searches the i-th window of the training split.
    train = make_task(cfg.data, seed=cfg.loop.seed).questions("train")
    searched = {i: replay.read_traces(str(out / f"iter_{i}" / "traces.parquet")) for i in (1, 2)}
    for i, window in ((1, train[:8]), (2, train[8:16])):
        ids = {t.question_id for t in searched[i]}
        assert ids and ids <= {q.id for q in window}, f"iteration {i} searched outside its window"
    assert not {t.question_id for t in searched[1]} & {t.question_id for t in searched[2]}

    # D_V accumulates: iteration 2's PRM trains on the values of iterations 1 and 2.
    values = {i: len(replay.read_values(str(out / f"iter_{i}" / "values.parquet"))) for i in (1, 2)}
    assert values[1] > 0, "iteration 1 solved nothing: no value data to follow"
    assert logged[(2, "extract")].prm_samples == values[1] + values[2]
    assert logged[(2, "train_prm")].samples == values[1] + values[2]
    assert logged[(1, "train_prm")].samples == values[1]
    assert logged[(2, "train_prm")].init_path == f"{out}/iter_1/prm", "the PRM continues from V_1"

    # learners.policy_init=base: every iteration's policy starts from the bootstrap policy.
    assert logged[(1, "train_policy")].init_path == logged[(2, "train_policy")].init_path == \
        cfg.model.policy

    # Policy data: the correct traces whose PRM value reaches loop.trace_min_value, once each.
    filtered_out, kept = 0, 0
    for i in (1, 2):
        data = replay.read_traces(str(out / f"iter_{i}" / "policy_data.parquet"))
        keep = [t for t in searched[i] if t.correct and (t.value is None or t.value >= MIN_VALUE)]
        filtered_out += sum(1 for t in searched[i] if t.correct) - len(keep)
        assert data == list({(t.question_id, t.steps): t for t in keep}.values())
        assert len({(t.question_id, t.steps) for t in data}) == len(data)
        assert logged[(i, "train_policy")].samples == len(data)
        kept += len(data)
    assert kept + filtered_out > 0, "no correct trace: the policy data went unchecked"

    # Every documented series was exported; the learner gauges hold the last train phase's figures.
    assert scraper.names() >= set(SERIES), f"missing: {sorted(set(SERIES) - scraper.names())}"
    for role in ("prm", "policy"):  # a phase with nothing to learn takes no step and sets no loss
        last = next(logged[(i, f"train_{role}")] for i in (2, 1) if logged[(i, f"train_{role}")].steps)  \
            if any(logged[(i, f"train_{role}")].steps for i in (1, 2)) else None
        if last is None:
            continue
        assert scraper.value("restmcts_learner_loss", role=role) == [pytest.approx(last.final_loss)]
        assert scraper.value("restmcts_learner_step_seconds", role=role) == \
            [pytest.approx(last.train_seconds / last.steps)]
    assert scraper.value("restmcts_learner_samples_per_s", role="prm") == \
        [pytest.approx(logged[(2, "train_prm")].samples_per_s)]
    solved = sum(logged[(i, p)].solved_fraction * logged[(i, p)].questions
                 for i, p in logged if p in ("search", "evaluate"))
    assert sum(scraper.value("restmcts_questions_solved")) >= round(solved) > 0
    assert any(k.startswith("ray_restmcts_trees_in_flight{") and 'worker="worker-0"' in k for k in scraper.seen)
    assert any(k.startswith("ray_restmcts_server_queue_depth{") and 'server="prm-0"' in k for k in scraper.seen)
