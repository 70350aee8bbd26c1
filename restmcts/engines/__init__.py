"""Model backends behind one protocol: text in, text out (see base.py for the contract).

    from restmcts.engines import GenerateRequest, make_policy_engine, make_score_engine

Backends ("hf", "vllm") are chosen by `servers.engine` and imported only when made.
"""

from restmcts.engines.base import (
    Completion,
    EngineStats,
    GenerateRequest,
    PolicyEngine,
    ScoreEngine,
    sample_seed,
)
from restmcts.engines.registry import POLICY_ENGINES, SCORE_ENGINES, make_policy_engine, make_score_engine

__all__ = [
    "Completion",
    "EngineStats",
    "GenerateRequest",
    "POLICY_ENGINES",
    "PolicyEngine",
    "SCORE_ENGINES",
    "ScoreEngine",
    "make_policy_engine",
    "make_score_engine",
    "sample_seed",
]
