"""The engine contract: text in, text out, behind one protocol with interchangeable backends.

The policy server and the PRM server hold one engine each. Callers render prompts with
`restmcts.prompt.PromptFormat` and send plain strings; the engine knows nothing about questions,
steps or trees. Many callers await the same engine at once (the search runs many trees as asyncio
tasks); the engine, not the caller, decides how requests are batched.

Contract shared by every backend:
- `generate(req)` returns `req.n` completions. A completion's text excludes the stop string;
  `finished` is True when it ended at the stop string or at EOS, False when it hit `max_tokens`;
  `eos` is True when it ended at EOS (the model ended its message: the solution is over).
  `tokens` counts the generated tokens, including the one that completed the stop string or EOS.
- `temperature == 0` is greedy decoding. With `temperature > 0`, sample `i` of a request is drawn
  from a random stream seeded by `(req.seed, i)`: the same request gives the same texts again.
- `score(texts)` returns, per text, the sigmoid of the one-label sequence classifier's logit at
  the text's last token: a value in [0, 1].
- `load_weights(state_dict)` swaps the model's weights in the live engine (tensors keyed by the
  Hugging Face checkpoint names); requests after it see the new weights.
- `receive_weights(spec, rank, manifest)` does the same with weights broadcast by a learner over
  a weight-sync group (restmcts.weights): the engine joins the group as `rank` and loads what
  `manifest` lists; any cache of earlier outputs (vLLM's prefix cache) is dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from restmcts.search.types import derive_seed
from restmcts.weights import GroupSpec, Manifest


@dataclass(frozen=True)
class GenerateRequest:
    """Sample `n` continuations of `prompt`, each ending at `stop`, EOS or `max_tokens`."""

    prompt: str
    n: int
    seed: int
    temperature: float  # 0 = greedy
    max_tokens: int
    stop: str

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_tokens < 1:
            raise ValueError(f"GenerateRequest needs n >= 1 and max_tokens >= 1, got n={self.n}, "
                             f"max_tokens={self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"GenerateRequest.temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not self.stop:
            raise ValueError("GenerateRequest.stop must be a non-empty string (the step delimiter)")


@dataclass(frozen=True)
class Completion:
    """One sampled continuation."""

    text: str  # generated text, stop string and EOS excluded
    tokens: int  # tokens generated, including the stop/EOS token
    finished: bool  # True: ended at the stop string or EOS; False: cut at max_tokens
    eos: bool = False  # ended at EOS, not at the stop string: the model ended its message here


@dataclass(frozen=True)
class EngineStats:
    """Counters since the engine started; a snapshot, safe to send across processes.

    A row is one sequence: a sample of a generate request, or one text of a score call.
    Batches are the forward batches the backend ran; a backend that schedules its own
    continuous batches (vLLM) reports `batches == 0` and the mean rows in flight instead.
    """

    backend: str  # "hf" | "vllm"
    requests: int = 0  # generate / score calls answered
    rows: int = 0  # sequences answered
    batches: int = 0  # forward batches run (hf)
    mean_batch_rows: float = 0.0  # rows per batch (hf); mean rows in flight at each arrival (vllm)
    max_batch_rows: int = 0
    prompt_tokens: int = 0  # tokens read (prompts for generate, texts for score)
    generated_tokens: int = 0  # tokens generated (policy only)
    queued_rows: int = 0  # rows waiting for a batch, now
    in_flight: int = 0  # requests accepted and not yet answered, now
    busy_s: float = 0.0  # seconds spent running the model (hf); 0 where unknown
    weight_loads: int = 0


class PolicyEngine(Protocol):
    async def generate(self, req: GenerateRequest) -> list[Completion]: ...

    async def load_weights(self, state_dict: Mapping[str, Any]) -> None: ...

    async def receive_weights(self, spec: GroupSpec, rank: int, manifest: Manifest) -> None: ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None: ...


class ScoreEngine(Protocol):
    async def score(self, texts: list[str]) -> list[float]: ...

    async def load_weights(self, state_dict: Mapping[str, Any]) -> None: ...

    async def receive_weights(self, spec: GroupSpec, rank: int, manifest: Manifest) -> None: ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None: ...


def sample_seed(seed: int, index: int) -> int:
    """The random-stream seed of sample `index` of a request seeded `seed` (a 63-bit integer from
    the project's one seed hash, `restmcts.search.derive_seed`)."""
    return derive_seed(seed, index)
