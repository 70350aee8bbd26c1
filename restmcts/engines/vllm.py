"""The vLLM backend: vLLM's async engine (`AsyncLLM`, vLLM 0.32) behind the engine protocol.

vLLM batches continuously by itself: every `generate` sample and every scored text is its own
vLLM request, and the engine core (a separate process that `AsyncLLM` starts) schedules whatever
is in flight. The choices that keep it equal to the hf backend's contract:

- Sample `i` of a request is a vLLM request with `n=1` and `seed=sample_seed(seed, i)`. (vLLM's own
  `n` seeds its samples with `seed + i`, which would make neighbouring seeds share samples, and it
  rejects `n > 1` for greedy decoding.) Greedy requests decode once and repeat the result n times.
- `finished` is vLLM's `finish_reason == "stop"` (stop string or EOS); "length" is not finished.
  `eos` is a stop with no `stop_reason` (vLLM names the stop string it stopped at, None for EOS).
- The PRM runs as a pooling model (`runner="pooling"`, `convert="classify"`, last-token pooling).
  vLLM's activation for a one-label classifier depends on the checkpoint (sigmoid, or none when
  transformers saved `problem_type="regression"` after a regression loss), so we ask for the raw
  logit (`use_activation=False`) and read it with `restmcts.tensors.prm_value`, as the hf backend does.
- `load_weights` writes the tensors to a scratch safetensors folder (shared memory when there is
  one) and calls the workers' `reload_weights(weights_path=..., is_checkpoint_format=True)` through
  `collective_rpc`; tensors passed as arguments would need vLLM's pickle-based serialization.
- `receive_weights` takes a learner's broadcast inside vLLM's worker: the engine starts with the
  worker extension `restmcts.engines.vllm_worker.WeightReceiver`, and `collective_rpc` runs its
  `restmcts_receive_weights`, which joins the weight-sync group and streams the buckets into the
  worker's `reload_weights(weights_iterator=...)`. Only the group's address and the manifest (a
  few KB) go through the engine core's RPC.
- A learner sends a tied LM head once, as the input embedding; both paths load it under the LM
  head's name too (`vllm_worker.tied_copies`), since on CPU vLLM keeps a prepacked copy of the LM
  head that only a load of the LM head itself refreshes.
- After either, the prefix cache is reset (`reset_prefix_cache(reset_running_requests=True)`): its
  KV blocks were computed with the old weights, and a request still running holds blocks that
  would otherwise stay cached; it is preempted and recomputed with the new weights.
- `servers.max_model_len` is an upper bound: a model whose position limit is smaller gets that
  limit, since vLLM refuses a longer one.
- On vLLM's CPU build (tests, demos) the engines run eagerly (torch.compile's warm-up costs about
  20 s per engine here) and without chunked prefill: when a seeded request's prefill is split
  across steps, vLLM 0.32 rewinds the request's random generator with `set_offset`, which CPU
  generators do not support, and the engine core dies ("CPU Generator does not use offset").

vllm is imported inside the classes, so nothing else in the package needs it installed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from restmcts.config import ServersConfig
from restmcts.engines.base import Completion, EngineStats, GenerateRequest, sample_seed
from restmcts.engines.vllm_worker import EXTENSION, RECEIVE, tied_copies, to_wire
from restmcts.tensors import prm_value
from restmcts.weights import GroupSpec, Manifest


class _Tally:
    """Request counters and the concurrency seen at each arrival (vLLM hides its batches)."""

    def __init__(self) -> None:
        self.requests = 0
        self.rows = 0
        self.rows_in_flight = 0
        self.in_flight = 0
        self.arrival_rows_total = 0
        self.arrivals = 0
        self.max_rows_in_flight = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.weight_loads = 0

    def arrive(self, rows: int) -> None:
        self.in_flight += 1
        self.rows_in_flight += rows
        self.arrivals += 1
        self.arrival_rows_total += self.rows_in_flight
        self.max_rows_in_flight = max(self.max_rows_in_flight, self.rows_in_flight)

    def leave(self, rows: int) -> None:
        self.in_flight -= 1
        self.rows_in_flight -= rows
        self.requests += 1
        self.rows += rows

    def stats(self) -> EngineStats:
        return EngineStats(
            backend="vllm", requests=self.requests, rows=self.rows, batches=0,
            mean_batch_rows=self.arrival_rows_total / self.arrivals if self.arrivals else 0.0,
            max_batch_rows=self.max_rows_in_flight, prompt_tokens=self.prompt_tokens,
            generated_tokens=self.generated_tokens, queued_rows=0, in_flight=self.in_flight,
            busy_s=0.0, weight_loads=self.weight_loads,
        )


class _VLLMEngine:
    """What both vLLM engines share: construction, request ids, backpressure, weights, shutdown."""

    def __init__(self, servers: ServersConfig, model_path: str, dtype: str, runner: str) -> None:
        from transformers import AutoConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        on_cpu = current_platform.is_cpu()
        hf_config = AutoConfig.from_pretrained(model_path)
        # A causal LM whose LM head is its input embedding (see vllm_worker.tied_copies).
        self._ties = runner == "generate" and bool(
            getattr(hf_config.get_text_config(), "tie_word_embeddings", False))
        args = AsyncEngineArgs(
            model=model_path,
            dtype=dtype,
            runner=runner,
            convert="classify" if runner == "pooling" else "auto",
            enable_prefix_caching=servers.enable_prefix_caching,
            gpu_memory_utilization=servers.gpu_memory_utilization,
            max_model_len=_max_model_len(servers, hf_config),
            enforce_eager=on_cpu,
            enable_chunked_prefill=False if on_cpu else None,
            disable_log_stats=True,
            worker_extension_cls=EXTENSION,
        )
        self._llm: Any = AsyncLLM.from_engine_args(args)
        self._slots = asyncio.Semaphore(servers.max_queue)
        self._ids = itertools.count()
        self._prefix = f"restmcts-{os.getpid()}-{id(self):x}"
        self._tally = _Tally()

    def _request_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        copies = tied_copies(state_dict, self._ties)
        state_dict = {**state_dict, **{copy: state_dict[name] for name, copy in copies.items()}}
        with tempfile.TemporaryDirectory(prefix="restmcts-weights-", dir=_scratch_dir()) as folder:
            await asyncio.to_thread(_save_safetensors, state_dict, Path(folder) / "model.safetensors")
            await self._llm.collective_rpc(
                "reload_weights", kwargs={"weights_path": folder, "is_checkpoint_format": True})
        await self._loaded()

    async def receive_weights(self, spec: GroupSpec, rank: int, manifest: Manifest) -> None:
        """Join the sync's group as `rank` inside vLLM's worker and load the broadcast there (gloo
        lands each bucket in host memory, NCCL on the worker's GPU); the engine core runs no
        step meanwhile."""
        wire_spec, wire_manifest = to_wire(spec, manifest)
        await self._llm.collective_rpc(RECEIVE, args=(wire_spec, rank, wire_manifest))
        await self._loaded()

    async def _loaded(self) -> None:
        """New weights are in: drop every KV block computed with the old ones, count the load."""
        await self._llm.reset_prefix_cache(reset_running_requests=True)
        self._tally.weight_loads += 1

    def stats(self) -> EngineStats:
        return self._tally.stats()

    def close(self) -> None:
        """Stop the engine core process. The engine is unusable afterwards."""
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()


class VLLMPolicyEngine(_VLLMEngine):
    """PolicyEngine on vLLM's async engine."""

    def __init__(self, servers: ServersConfig, model_path: str, dtype: str = "float32") -> None:
        super().__init__(servers, model_path, dtype, "generate")

    async def generate(self, req: GenerateRequest) -> list[Completion]:
        rows = 1 if req.temperature == 0 else req.n
        async with self._slots:
            self._tally.arrive(rows)
            try:
                outs = await asyncio.gather(*(self._sample(req, i) for i in range(rows)))
            finally:
                self._tally.leave(rows)
        return list(outs) * req.n if req.temperature == 0 else list(outs)

    async def _sample(self, req: GenerateRequest, index: int) -> Completion:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            n=1,
            temperature=req.temperature,
            seed=None if req.temperature == 0 else sample_seed(req.seed, index),
            max_tokens=req.max_tokens,
            stop=[req.stop],
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        final = None
        async for out in self._llm.generate(req.prompt, params, request_id=self._request_id()):
            final = out
        assert final is not None and final.outputs, "vLLM returned no output"
        sample = final.outputs[0]
        self._tally.prompt_tokens += len(final.prompt_token_ids or ())
        self._tally.generated_tokens += len(sample.token_ids)
        stopped = sample.finish_reason == "stop"
        return Completion(sample.text, len(sample.token_ids), stopped, eos=stopped and sample.stop_reason is None)


class VLLMScoreEngine(_VLLMEngine):
    """ScoreEngine on vLLM's async engine running the PRM as a one-label classifier."""

    def __init__(self, servers: ServersConfig, model_path: str, dtype: str = "float32") -> None:
        super().__init__(servers, model_path, dtype, "pooling")

    async def score(self, texts: list[str]) -> list[float]:
        if not texts:
            return []
        async with self._slots:
            self._tally.arrive(len(texts))
            try:
                values = await asyncio.gather(*(self._score_one(t) for t in texts))
            finally:
                self._tally.leave(len(texts))
        return list(values)

    async def _score_one(self, text: str) -> float:
        from vllm.pooling_params import PoolingParams

        params = PoolingParams(task="classify", use_activation=False)
        final = None
        async for out in self._llm.encode(text, params, request_id=self._request_id()):
            final = out
        assert final is not None, "vLLM returned no output"
        self._tally.prompt_tokens += len(final.prompt_token_ids or ())
        return float(prm_value(final.outputs.data.reshape(-1)))


# ---------------------------------------------------------------------- helpers


def _max_model_len(servers: ServersConfig, hf_config: Any) -> int:
    limit = getattr(hf_config, "max_position_embeddings", None)
    return min(servers.max_model_len, limit) if limit else servers.max_model_len


def _scratch_dir() -> str | None:
    """Shared memory where the OS has it (weights never touch a disk), else the temp folder."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _save_safetensors(state_dict: Mapping[str, Any], path: Path) -> None:
    """Write `state_dict` as one safetensors file; tensors sharing memory (a tied LM head) are
    copied, since safetensors refuses shared storage."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    tensors = {}
    for name, tensor in state_dict.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        tensors[name] = t.clone() if ptr in seen else t
        seen.add(ptr)
    save_file(tensors, str(path))
