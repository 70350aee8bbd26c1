"""Engine backends by name (`servers.engine`), imported only when chosen.

    policy = make_policy_engine(cfg.servers, cfg.model.policy, cfg.model.dtype)
    prm = make_score_engine(cfg.servers, cfg.model.prm, cfg.model.dtype)

"hf" runs transformers (CPU or one GPU) behind a dynamic batcher; "vllm" runs vLLM's async engine
(GPU, or its CPU build in `.venv-vllm`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from restmcts.config import ServersConfig
from restmcts.engines.base import PolicyEngine, ScoreEngine

E = TypeVar("E", PolicyEngine, ScoreEngine)


def _hf_policy(servers: ServersConfig, model_path: str, dtype: str) -> PolicyEngine:
    from restmcts.engines.hf import HFPolicyEngine

    return HFPolicyEngine(servers, model_path, dtype)


def _hf_score(servers: ServersConfig, model_path: str, dtype: str) -> ScoreEngine:
    from restmcts.engines.hf import HFScoreEngine

    return HFScoreEngine(servers, model_path, dtype)


def _vllm_policy(servers: ServersConfig, model_path: str, dtype: str) -> PolicyEngine:
    from restmcts.engines.vllm import VLLMPolicyEngine

    return VLLMPolicyEngine(servers, model_path, dtype)


def _vllm_score(servers: ServersConfig, model_path: str, dtype: str) -> ScoreEngine:
    from restmcts.engines.vllm import VLLMScoreEngine

    return VLLMScoreEngine(servers, model_path, dtype)


POLICY_ENGINES: dict[str, Callable[[ServersConfig, str, str], PolicyEngine]] = {
    "hf": _hf_policy,
    "vllm": _vllm_policy,
}
SCORE_ENGINES: dict[str, Callable[[ServersConfig, str, str], ScoreEngine]] = {
    "hf": _hf_score,
    "vllm": _vllm_score,
}


def make_policy_engine(servers: ServersConfig, model_path: str, dtype: str = "float32") -> PolicyEngine:
    return _lookup(POLICY_ENGINES, servers.engine)(servers, model_path, dtype)


def make_score_engine(servers: ServersConfig, model_path: str, dtype: str = "float32") -> ScoreEngine:
    return _lookup(SCORE_ENGINES, servers.engine)(servers, model_path, dtype)


def _lookup(table: dict[str, Callable[[ServersConfig, str, str], E]], name: str) -> Callable[[ServersConfig, str, str], E]:
    if name not in table:
        raise ValueError(f"servers.engine: unknown engine {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]
