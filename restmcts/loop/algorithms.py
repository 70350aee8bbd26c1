"""The self-training algorithms `loop.algorithm` names, each as one object the driver asks.

An `Algorithm` knows the three things that tell ReST-MCTS* and ReST-EM apart in Algorithm 1:
- how the data-generation pass searches (`search_settings`): ReST-MCTS* runs the `search:`
  section as it is (MCTS*); ReST-EM samples `loop.rest_em_samples` solutions per question with
  the same policy settings (self-consistency sampling);
- which traces become policy data (`policy_data`): both keep the outcome-correct traces, once per
  (question, steps); ReST-MCTS* also drops those whose PRM value is below `loop.trace_min_value`;
- whether the PRM is trained (`trains_prm`): ReST-MCTS* trains V_i on the accumulated inferred
  values each iteration; ReST-EM keeps the starting PRM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from restmcts.config import ConfigError

if TYPE_CHECKING:
    from restmcts.config import Config, LoopConfig, SearchSettings
    from restmcts.replay import Trace


@dataclass(frozen=True)
class Algorithm:
    name: str  # the value of loop.algorithm
    title: str  # as the papers name it
    trains_prm: bool  # a train_prm phase each iteration (D_V accumulates across iterations)
    search_settings: Callable[[Config], SearchSettings]  # the data-generation pass's tree settings
    keeps: Callable[[Trace, LoopConfig], bool]  # whether an outcome-correct trace becomes policy data

    def policy_data(self, traces: Sequence[Trace], loop: LoopConfig) -> list[Trace]:
        """D_G^i: the outcome-correct traces the algorithm keeps, each (question, steps) once, in order."""
        kept = [t for t in traces if t.correct and self.keeps(t, loop)]
        return list({(t.question_id, t.steps): t for t in kept}.values())


def _mcts_star(cfg: Config) -> SearchSettings:
    return cfg.search.settings()


def _sampling(cfg: Config) -> SearchSettings:
    return dataclasses.replace(cfg.search.settings(), strategy="sc", num_samples=cfg.loop.rest_em_samples)


def _value_reaches_minimum(trace: Trace, loop: LoopConfig) -> bool:
    return trace.value is None or trace.value >= loop.trace_min_value


def _every_correct(trace: Trace, loop: LoopConfig) -> bool:
    return True


REST_MCTS = Algorithm("rest_mcts", "ReST-MCTS*", trains_prm=True, search_settings=_mcts_star, keeps=_value_reaches_minimum)
REST_EM = Algorithm("rest_em", "ReST-EM", trains_prm=False, search_settings=_sampling, keeps=_every_correct)
ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in (REST_MCTS, REST_EM)}


def algorithm_named(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ConfigError(f"loop.algorithm: got {name!r}; allowed: {', '.join(map(repr, ALGORITHMS))}")
    return ALGORITHMS[name]


def algorithm_for(cfg: Config) -> Algorithm:
    """The algorithm `cfg.loop.algorithm` names; a ConfigError naming the key and the valid names otherwise."""
    return algorithm_named(cfg.loop.algorithm)


def title(name: str) -> str:
    """The paper's name for a loop.algorithm value (the value itself when it names none)."""
    return ALGORITHMS[name].title if name in ALGORITHMS else name
