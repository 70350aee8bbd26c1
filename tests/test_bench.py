"""jobs/bench.py: every measurement runs against real servers, workers and learners on local Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from restmcts.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_measures_search_engine_and_learners(ray_local, trained_ckpt, tmp_path):
    from restmcts.evaluation.bench import run_bench

    cfg = load_config("configs/arith-tiny.yaml", [
        f"model.policy={trained_ckpt}/policy", f"model.prm={trained_ckpt}/prm",
        "data.arith_min_ops=1", "data.arith_max_ops=2", "search.num_simulations=6", "search.max_depth=4",
        "learners.policy_epochs=1", "learners.prm_epochs=1",
        "search.rollout_steps=0",  # expansions only: every policy call asks for `branch` candidates
    ])
    report = run_bench(cfg, str(tmp_path), sweep=(1, 6), sequential_questions=2, engine_rows=128,
                       learner_counts=(1, 2))

    saved = json.loads((tmp_path / "bench.json").read_text())
    # The headline fields of bench.json agree with the sections they summarise.
    assert saved["sequential_nodes_per_s"] == saved["sequential"]["nodes_per_s"] > 0
    assert saved["batched_nodes_per_s"] == max(p["nodes_per_s"] for p in saved["sweep"]) > 0
    assert saved["speedup"] == pytest.approx(saved["batched_nodes_per_s"] / saved["sequential_nodes_per_s"])
    assert saved["search_tokens_per_s"] == saved["sweep"][-1]["tokens_per_s"] > 0
    assert saved["engine_tokens_per_s_limit"] == saved["engine_limit"]["tokens_per_s"] > 0
    assert saved["saturation"] == pytest.approx(saved["search_tokens_per_s"] / saved["engine_tokens_per_s_limit"])
    seq, (one, six) = report.sequential, report.sweep
    assert (seq.questions, one.questions, six.questions) == (2, 8, 12)
    assert (one.trees_in_flight, six.trees_in_flight) == (1, 6)
    assert all(p.nodes > 0 and p.tokens > 0 and p.nodes_per_s > 0 for p in (seq, one, six))
    assert (seq.policy_mean_batch_rows, seq.prm_mean_batch_rows) == (1.0, 1.0), "the reference: one row per call"
    assert one.policy_mean_batch_rows == cfg.search.branch, "one tree: a node's candidates in one call"
    assert six.policy_mean_batch_rows > one.policy_mean_batch_rows, "trees in flight share the policy's batches"
    for p in (seq, one, six):  # rates are the pass's own counts over its wall time
        assert p.nodes_per_s == pytest.approx(p.nodes / p.wall_s, rel=1e-3)
        assert p.tokens_per_s == pytest.approx(p.tokens / p.wall_s, rel=1e-3)

    limit = report.engine_limit
    assert limit["rows"] == 128 // cfg.search.branch * cfg.search.branch and limit["tokens"] > 0
    assert limit["mean_batch_rows"] > cfg.servers.max_batch_size - cfg.search.branch, "measured on full batches"
    assert limit["tokens_per_s"] == pytest.approx(limit["tokens"] / limit["wall_s"], rel=1e-2)

    shares = [v for k, v in report.profile.items() if k.startswith("tree_share_")]
    assert sum(shares) == pytest.approx(1.0, abs=1e-3)
    assert 0 < report.profile["policy_engine_busy_share"] <= 1.5  # busy time is per replica; wall is the pass

    points = {(p.role, p.learners): p for p in report.learners}
    assert set(points) == {("prm", 1), ("prm", 2), ("policy", 1), ("policy", 2)}
    assert all(p.samples > 0 and p.samples_per_s > 0 for p in points.values())
    assert points[("prm", 1)].samples == points[("prm", 2)].samples


def test_bench_rejects_a_bad_sweep(tmp_path):
    result = subprocess.run([sys.executable, "jobs/bench.py", "--config", "configs/arith-tiny.yaml",
                             "--out", str(tmp_path), "--sweep", "1,x"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "--sweep and --learners take comma-separated integers" in result.stderr


def _sync_cfg(ckpt):
    return load_config("configs/arith-tiny.yaml", [f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
                                                   "sync.bucket_mb=1"])


def test_sync_bench_times_every_path_on_live_learners_and_servers(ray_local, tiny_ckpt, tmp_path):
    """Both sync methods and the path through the driver, once each, on the tiny model; the
    record lands in bench.json's sync fields."""
    from restmcts.checkpoints import read_weights
    from restmcts.evaluation.bench import BenchReport
    from restmcts.evaluation.sync_bench import run_sync_bench
    from restmcts.weights import Manifest

    cfg = _sync_cfg(tiny_ckpt)
    record = run_sync_bench(cfg, str(tmp_path), models=("tiny",), methods=("collective", "object_store"), repeats=1)

    (model,) = record.models
    assert (record.repeats, record.replicas, model.model, model.path) == (1, 1, "tiny", cfg.model.policy)
    manifest = Manifest.of(read_weights(f"{tmp_path}/tiny/trained").items(), 1, cfg.sync.bucket_mb)
    assert model.bytes == manifest.nbytes > 0, "a push sends every saved tensor, tied copies once"
    assert [p.method for p in model.paths] == ["collective", "object_store", "via_driver"]
    for p in model.paths:
        assert len(p.seconds) == 1 and p.median_s == p.seconds[0] > 0 and p.driver_peak_mb >= 0
    assert model.copy_limit_s > 0
    assert model.collective_over_copy_limit == pytest.approx(model.path_for("collective").median_s
                                                             / model.copy_limit_s, rel=0.05)

    report = BenchReport()
    report.add_sync(record)
    saved = json.loads(report.to_json())
    assert saved["sync_seconds"] == {"tiny": {p.method: p.median_s for p in model.paths}}
    assert saved["sync_copy_limit_seconds"] == {"tiny": model.copy_limit_s}
    assert saved["sync_driver_peak_mb"] == {"tiny": {p.method: p.driver_peak_mb for p in model.paths}}
    assert saved["sync_bytes"] == {"tiny": model.bytes}
    assert saved["sync_collective_over_copy_limit"] == {"tiny": model.collective_over_copy_limit}
    assert "sync tiny" in report.table()


def test_the_driver_never_holds_the_weights_a_push_sends(ray_local, tiny_ckpt, tmp_path):
    """An 84 MB model: the driver's memory stays flat while the learner pushes by either method,
    and grows by at least the model when the weights go through it (so the sampler can tell)."""
    from restmcts.evaluation.sync_bench import ModelShape, run_sync_bench

    shape = ModelShape("mid", hidden_size=512, num_layers=3, num_heads=8, num_kv_heads=8,
                       intermediate_size=2048, vocab_size=16384)
    record = run_sync_bench(_sync_cfg(tiny_ckpt), str(tmp_path), models=(shape,), repeats=1)

    (model,) = record.models
    model_mb = model.bytes / 2**20
    assert model_mb > 80
    peaks = {p.method: p.driver_peak_mb for p in model.paths}
    assert peaks["collective"] < model_mb / 5, peaks
    assert peaks["object_store"] < model_mb / 5, peaks
    assert peaks["via_driver"] > 0.9 * model_mb, peaks


def test_bench_rejects_an_unknown_sync_model(tmp_path):
    result = subprocess.run([sys.executable, "jobs/bench.py", "--config", "configs/arith-tiny.yaml",
                             "--out", str(tmp_path), "--sync-models", "tiny,smollm-2"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "--sync-models: sync models: unknown model 'smollm-2'; valid: tiny, smollm2-135m" in result.stderr
