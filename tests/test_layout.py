"""The layers import as light as they promise: the pure core, the config, the replay records, the
learners' package and the loop load without torch, Ray, DeepSpeed, transformers or vLLM; those load
inside the functions (or the learners' names) that need them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "deepspeed", "transformers", "vllm")
LIGHT = ("restmcts.config", "restmcts.search", "restmcts.replay", "restmcts.learners", "restmcts.loop",
         "restmcts.tasks", "restmcts.cli")


@pytest.mark.parametrize("module", LIGHT)
def test_importing_the_module_loads_no_heavy_package(module):
    check = (f"import sys, {module}\n"
             f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [], f"import {module} loaded {run.stdout.strip()}"


def test_the_learners_names_load_on_first_use():
    check = ("import sys, restmcts.learners as learners\n"
             "assert 'torch' not in sys.modules\n"
             "from restmcts.learners import LearnerGroup, StepMetrics, TrainResult, train_phase\n"
             "from restmcts.learners.group import LearnerGroup as group_class\n"
             "assert LearnerGroup is group_class and 'torch' in sys.modules and 'ray' in sys.modules\n"
             "try:\n"
             "    learners.Learnergroup\n"
             "except AttributeError as err:\n"
             "    print(err)\n")
    run = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "module 'restmcts.learners' has no attribute 'Learnergroup'"
