"""The search side of the servers: `propose` and `score` callables over replica handles.

`ModelClient` renders (question, steps) into model text with the run's PromptFormat, sends each
call to the replica with the fewest calls in flight, and retries on another replica when one
dies (Ray restarts it). Its two methods have exactly the search core's ProposeFn / ScoreFn
signatures, so `Models(client.propose, client.score)` plugs into any strategy. `propose` can also
note which steps ended at EOS (`ended`): a real chat model ends its message where its solution
ends, whether or not its last step states the answer in a form the task recognises.
`for_question(task, settings)` pairs such a Models with the task's answer rules extended by those
solutions (whole prefixes: a step text that ended one message may continue another branch); its
propose samples with that search's step budget and temperature (SearchSettings).
`in_process(policy, prm, ...)` puts engines of this process (restmcts.engines) behind the same
client, for work that runs without servers (restmcts.bootstrap builds the starting models so).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from restmcts.config import Config, SearchSettings
from restmcts.engines import GenerateRequest, sample_seed
from restmcts.prompt import PromptFormat
from restmcts.search import Models
from restmcts.tasks import MessageEnds, Task

RETRY_ATTEMPTS = 6
RETRY_BACKOFF_S = 0.5


@dataclass
class ClientStats:
    policy_calls: int = 0
    prm_calls: int = 0
    retries: int = 0
    policy_seconds: float = 0.0  # wall time trees spent awaiting the policy
    prm_seconds: float = 0.0  # wall time trees spent awaiting the PRM


@dataclass
class _Replicas:
    handles: list[Any]
    in_flight: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.in_flight = [0] * len(self.handles)

    def pick(self, attempt: int) -> int:
        order = sorted(range(len(self.handles)), key=lambda i: self.in_flight[i])
        return order[attempt % len(order)]


class ModelClient:
    def __init__(self, policy: list[Any], prm: list[Any], fmt: PromptFormat, settings: SearchSettings,
                 sequential_calls: bool = False):
        if not policy or not prm:
            raise ValueError("ModelClient needs at least one policy and one PRM server handle")
        self.policy = _Replicas(list(policy))
        self.prm = _Replicas(list(prm))
        self.fmt = fmt
        self.settings = settings  # step budget and temperature, where a call brings no settings of its own
        self.sequential_calls = sequential_calls  # search.sequential_calls: the reference call schedule
        self.stats = ClientStats()

    @classmethod
    def from_config(cls, cfg: Config, policy: list[Any], prm: list[Any]) -> ModelClient:
        """A client rendering prompts as the run's data config says (through the policy
        tokenizer's chat template when `data.chat_template`)."""
        tokenizer = None
        if cfg.data.chat_template:
            from restmcts.checkpoints import load_tokenizer

            tokenizer = load_tokenizer(cfg.model.policy)
        return cls(policy, prm, PromptFormat.from_config(cfg.data, tokenizer), cfg.search.settings(),
                   cfg.search.sequential_calls)

    @classmethod
    def in_process(cls, policy: Any, prm: Any | None, fmt: PromptFormat, settings: SearchSettings) -> ModelClient:
        """A client over a PolicyEngine and a ScoreEngine (or None: no scoring) in this process."""
        return cls([_InProcess(policy, "policy")], [_InProcess(prm, "PRM")], fmt, settings)

    def for_question(self, task: Task, settings: SearchSettings | None = None) -> tuple[Models, MessageEnds]:
        """Models and answer rules for one question's search with `settings` (default: the
        client's): every step after which the policy ended its message (EOS) is terminal, and its
        answer is read from it (MessageEnds)."""
        ended: set[tuple[str, ...]] = set()
        propose = functools.partial(self.propose, ended=ended, settings=settings)
        return Models(propose, self.score), MessageEnds(task, ended)

    async def propose(self, question: str, steps: Sequence[str], n: int, seed: int,
                      temperature: float | None = None, ended: set[tuple[str, ...]] | None = None,
                      settings: SearchSettings | None = None) -> list[tuple[str, int]]:
        """ProposeFn over the servers; every sample that ended at EOS goes into `ended` as the
        whole solution it finishes (`steps` plus its text)."""
        s = settings if settings is not None else self.settings
        if self.sequential_calls and n > 1:  # the reference schedule: one call per candidate
            out = []
            for i in range(n):
                out += await self.propose(question, steps, 1, sample_seed(seed, i), temperature, ended, s)
            return out
        request = GenerateRequest(
            prompt=self.fmt.render(question, steps),
            n=n,
            seed=seed,
            temperature=s.temperature if temperature is None else temperature,
            max_tokens=s.max_step_tokens,
            stop=self.fmt.delimiter,
        )
        self.stats.policy_calls += 1
        completions = await self._call(self.policy, lambda h: h.generate.remote(request), "policy")
        if ended is not None:
            ended.update((*steps, c.text.strip()) for c in completions if c.eos and c.text.strip())
        return [(c.text.strip(), c.tokens) for c in completions]

    async def score(self, question: str, steps_list: Sequence[Sequence[str]]) -> list[float]:
        if self.sequential_calls and len(steps_list) > 1:  # the reference schedule: one call per prefix
            return [v for steps in steps_list for v in await self.score(question, [steps])]
        texts = [self.fmt.render(question, steps) for steps in steps_list]
        self.stats.prm_calls += len(texts)
        return list(await self._call(self.prm, lambda h: h.score.remote(texts), "prm"))

    async def _call(self, replicas: _Replicas, send: Any, kind: str) -> Any:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        loop = asyncio.get_running_loop()
        start = loop.time()
        for attempt in range(RETRY_ATTEMPTS):
            i = replicas.pick(attempt)
            replicas.in_flight[i] += 1
            try:
                return await send(replicas.handles[i])
            except (RayActorError, ActorDiedError, ActorUnavailableError):
                if attempt == RETRY_ATTEMPTS - 1:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(RETRY_BACKOFF_S * (attempt + 1))
            finally:
                replicas.in_flight[i] -= 1
                elapsed = loop.time() - start
                if kind == "policy":
                    self.stats.policy_seconds += elapsed
                else:
                    self.stats.prm_seconds += elapsed
                start = loop.time()
        raise AssertionError("unreachable")


class _InProcess:
    """An engine in this process behind the interface the client calls on a Ray actor handle:
    `handle.generate.remote(request)` gives an awaitable."""

    def __init__(self, engine: Any | None, role: str) -> None:
        self._engine, self._role = engine, role

    def __getattr__(self, method: str) -> Any:
        if self._engine is None:
            raise RuntimeError(f"ModelClient.in_process: this client was given no {self._role} engine")
        return SimpleNamespace(remote=getattr(self._engine, method))
