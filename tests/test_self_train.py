"""The self-training loop end to end on local Ray: layout, metrics, ReST-EM switch, kill and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restmcts import replay

ROOT = Path(__file__).resolve().parents[1]


def _overrides(ckpt) -> list[str]:
    return [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
        "loop.iterations=1", "data.num_questions=6", "data.num_test=4",
        "data.arith_min_ops=1", "data.arith_max_ops=2",
        "search.num_simulations=4", "search.max_depth=2", "search.max_step_tokens=8",
        "search.num_workers=1", "search.trees_per_worker=4",
        "learners.num_learners=0", "learners.policy_epochs=1", "learners.prm_epochs=1",
    ]


def _layout_ok(out: Path, iterations: int) -> None:
    assert (out / "iter_0" / "eval_traces.parquet").exists()
    for i in range(1, iterations + 1):
        d = out / f"iter_{i}"
        for name in ("traces.parquet", "values.parquet", "eval_traces.parquet", "policy_data.parquet"):
            assert (d / name).exists(), name
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        AutoModelForCausalLM.from_pretrained(d / "policy")
        AutoModelForSequenceClassification.from_pretrained(d / "prm", num_labels=1)


def test_one_iteration_writes_the_documented_layout(ray_local, tiny_ckpt, tmp_path):
    from restmcts.config import load_config
    from restmcts.loop import self_train

    out = tmp_path / "run"
    cfg = load_config(ROOT / "configs/arith-tiny.yaml", _overrides(tiny_ckpt))
    records = self_train(cfg, str(out))
    _layout_ok(out, 1)
    phases = [(r["iteration"], r["phase"]) for r in records]
    assert phases == [(0, "evaluate"), (1, "search"), (1, "extract"), (1, "train_prm"), (1, "train_policy"),
                      (1, "sync"), (1, "evaluate")]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines == records
    for r in lines:
        assert r["seconds"] >= 0
    evals = [r for r in lines if r["phase"] == "evaluate"]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["questions"] == 4 and "tokens" in r for r in evals)
    assert self_train(cfg, str(out)) == records, "a finished run does nothing"


def test_rest_em_switch_trains_no_prm(ray_local, tiny_ckpt, tmp_path):
    from restmcts.config import load_config
    from restmcts.loop import self_train

    out = tmp_path / "em"
    cfg = load_config(ROOT / "configs/arith-tiny.yaml",
                      _overrides(tiny_ckpt) + ["loop.algorithm=rest_em", "loop.rest_em_samples=2"])
    records = self_train(cfg, str(out))
    assert "train_prm" not in {r["phase"] for r in records}
    traces = replay.read_traces(str(out / "iter_1" / "traces.parquet"))
    assert {t.strategy for t in traces} == {"sc"}
    assert not (out / "iter_1" / "prm").exists()


def _job(out: Path, ckpt, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": "", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS")
    cmd = [sys.executable, "jobs/self_train.py", "--out", str(out), *_overrides(ckpt),
           "ray.num_cpus=8", "ray.dashboard=false", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _rows(out: Path) -> dict[str, int]:
    counts = {}
    for f in sorted(out.glob("iter_*/*.parquet")):
        counts[f"{f.parent.name}/{f.name}"] = len(replay.read_table(
            str(f), replay.VALUE_SCHEMA if f.name == "values.parquet" else replay.TRACE_SCHEMA))
    return counts


@pytest.mark.slow
def test_killed_job_resumes_to_the_same_replay(tiny_ckpt, tmp_path):
    """kill -9 the driver at several points; each rerun continues and the end state matches."""
    clean = tmp_path / "clean"
    assert _job(clean, tiny_ckpt).wait(timeout=600) == 0
    killed = tmp_path / "killed"
    for wait_for in ("search", "train_prm", "sync"):
        proc = _job(killed, tiny_ckpt)
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            log = killed / "metrics.jsonl"
            if log.exists() and f'"phase": "{wait_for}"' in log.read_text():
                break
            time.sleep(0.2)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _job(killed, tiny_ckpt).wait(timeout=600) == 0
    assert _rows(killed) == _rows(clean)
    logged = [(r["iteration"], r["phase"]) for r in map(json.loads, (killed / "metrics.jsonl").read_text().splitlines())]
    clean_log = [(r["iteration"], r["phase"]) for r in map(json.loads, (clean / "metrics.jsonl").read_text().splitlines())]
    assert logged == clean_log, "every phase ran to completion exactly once"
