"""DeepSpeed learners: policy SFT on verified traces, PRM value regression on (Q, p, v) samples.

    from restmcts.learners import LearnerGroup
    group = LearnerGroup(cfg, "prm")
    result = group.train(init_path, replay_paths, out_path)

One file per role (policy.py, prm.py), the shared DeepSpeed plumbing in engine.py, the Ray
actor group in group.py (placed and joined by restmcts.actors.runtime). Importing the package is
light: torch, DeepSpeed and Ray load when one of the names below is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from restmcts.learners.engine import StepMetrics, TrainResult
    from restmcts.learners.group import LearnerGroup, train_live, train_phase

_HOME = {"LearnerGroup": "group", "train_phase": "group", "train_live": "group", "StepMetrics": "engine",
         "TrainResult": "engine"}

__all__ = ["LearnerGroup", "StepMetrics", "TrainResult", "train_live", "train_phase"]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
