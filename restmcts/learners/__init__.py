"""DeepSpeed learners: policy SFT on verified traces, PRM value regression on (Q, p, v) samples.

    from restmcts.learners import LearnerGroup
    group = LearnerGroup(cfg, "prm")
    result = group.train(init_path, replay_paths, out_path)

One file per role (policy.py, prm.py), the shared DeepSpeed plumbing in engine.py, the Ray
actor group in group.py, env vars and placement in placement.py.
"""

from restmcts.learners.engine import StepMetrics, TrainResult
from restmcts.learners.group import LearnerGroup, train_phase

__all__ = ["LearnerGroup", "StepMetrics", "TrainResult", "train_phase"]
