"""The transformers backend: a dynamic batcher in front of a hand-written KV-cache decode loop.

Concurrent `generate` calls become rows (one per sample) that `Batcher` packs into batches of at
most `servers.max_batch_size` rows; the model runs on one worker thread, so requests keep queueing
while a batch decodes. The decode loop is ours rather than `model.generate` because each row needs
its own random stream and its own stop string:

- prompts are left-padded; position ids count real tokens only, so a row decodes exactly as it
  would alone; rows of one request share one prefill (the KV cache rows are copied, not recomputed);
- row `i` of a request samples from a `torch.Generator` seeded by `sample_seed(seed, i)` through
  the Gumbel-max trick (one uniform draw per vocabulary entry per step), so a request gives the
  same text whatever batch it lands in; temperature 0 is greedy and sends one row for all n;
- a row stops at the stop string, EOS or its own max_tokens, and leaves the batch (its cache rows
  are dropped) as soon as it stops.

The score engine batches texts the same way: right padding, the classifier's own last-token
pooling, `restmcts.tensors.prm_value` of the one logit.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from restmcts.config import ServersConfig
from restmcts.engines.base import Completion, EngineStats, GenerateRequest, sample_seed
from restmcts.engines.batcher import Batcher, Out, Row
from restmcts.tensors import pad_batch, prm_value
from restmcts.weights import GroupSpec, Manifest


@dataclass(frozen=True)
class _Row:
    """One sample of a request: the unit the batcher packs."""

    prompt: str
    seed: int  # this row's random-stream seed (unused when greedy)
    temperature: float
    max_tokens: int
    stop: str


def pick_device(servers: ServersConfig) -> str:
    import torch

    return "cuda" if servers.num_gpus > 0 and torch.cuda.is_available() else "cpu"


class _HFEngine(Generic[Row, Out]):
    """What both transformers engines share: loading, the batcher, weight swaps, counters, shutdown.
    A subclass runs one batch of its rows on the model thread (`_run_batch`)."""

    def __init__(self, servers: ServersConfig, model_path: str, dtype: str, device: str | None,
                 load: Callable[[str, str, str], Any], name: str) -> None:
        import torch

        from restmcts.checkpoints import load_tokenizer

        if servers.torch_threads > 0:
            torch.set_num_threads(servers.torch_threads)
        self.device = device or pick_device(servers)
        self.tokenizer = load_tokenizer(model_path)
        self.model = load(model_path, dtype, self.device)
        self._prompt_tokens = 0
        self._generated_tokens = 0
        self._weight_loads = 0
        self._batcher: Batcher[Row, Out] = Batcher(
            self._run_batch, servers.max_batch_size, servers.max_wait_ms, servers.max_queue, name)

    def _run_batch(self, rows: list[Row]) -> list[Out]:
        raise NotImplementedError

    async def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        await self._batcher.run_exclusive(lambda: _load_state(self.model, state_dict))
        self._weight_loads += 1

    async def receive_weights(self, spec: GroupSpec, rank: int, manifest: Manifest) -> None:
        """Join the sync's group as `rank`, then take the whole transfer between two batches,
        straight into the live tensors (a tensor whose dtype or layout differs from the model's
        lands in new memory and is loaded after)."""
        import asyncio

        from restmcts.weights import WeightGroup

        group = await asyncio.to_thread(WeightGroup.join, spec, rank)

        def take() -> None:
            own = self.model.state_dict()

            def into(meta: Any) -> Any:
                t = own.get(meta.name)
                same = (t is not None and t.is_contiguous() and tuple(t.shape) == meta.shape
                        and str(t.dtype).removeprefix("torch.") == meta.dtype)
                return t if same else None

            device = self.device if spec.backend == "nccl" else "cpu"
            received = dict(group.receive(manifest, device, into))
            _load_state(self.model, {k: v for k, v in received.items() if v is not own.get(k)}, set(received))

        try:
            await self._batcher.run_exclusive(take)
        finally:
            await asyncio.to_thread(group.close)
        self._weight_loads += 1

    def stats(self) -> EngineStats:
        c = self._batcher.counters
        return EngineStats(
            backend="hf", requests=c.requests, rows=c.rows, batches=c.batches,
            mean_batch_rows=c.mean_batch_rows, max_batch_rows=c.max_batch_rows, prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated_tokens, queued_rows=self._batcher.queued_rows,
            in_flight=self._batcher.in_flight, busy_s=c.busy_s, weight_loads=self._weight_loads,
        )

    def close(self) -> None:
        self._batcher.close()


class HFPolicyEngine(_HFEngine[_Row, Completion]):
    """PolicyEngine on a transformers causal LM (CPU or one GPU)."""

    def __init__(self, servers: ServersConfig, model_path: str, dtype: str = "float32",
                 device: str | None = None) -> None:
        from restmcts.checkpoints import load_policy

        super().__init__(servers, model_path, dtype, device, load_policy, "policy")
        self._eos_ids = _eos_ids(self.model, self.tokenizer)
        self._stop_triggers: dict[str, frozenset[int] | None] = {}

    async def generate(self, req: GenerateRequest) -> list[Completion]:
        if req.temperature == 0:  # greedy samples are all the same: decode one row
            row = _Row(req.prompt, 0, 0.0, req.max_tokens, req.stop)
            return (await self._batcher.submit([row])) * req.n
        rows = [_Row(req.prompt, sample_seed(req.seed, i), req.temperature, req.max_tokens, req.stop)
                for i in range(req.n)]
        return await self._batcher.submit(rows)

    # ------------------------------------------------------------------ model thread

    def _run_batch(self, rows: list[_Row]) -> list[Completion]:
        import torch

        with torch.inference_mode():
            return self._decode(rows)

    def _decode(self, rows: list[_Row]) -> list[Completion]:
        import torch

        cache, logits, mask, next_pos = self._prefill(rows)
        generators = [_generator(r.seed, self.device) if r.temperature > 0 else None for r in rows]
        new_ids: list[list[int]] = [[] for _ in rows]
        results: list[Completion | None] = [None] * len(rows)
        active = list(range(len(rows)))  # batch position -> row index
        while True:
            tokens = self._choose(logits, [rows[i] for i in active], [generators[i] for i in active])
            keep = []
            for pos, (i, token) in enumerate(zip(active, tokens.tolist(), strict=True)):
                new_ids[i].append(token)
                results[i] = self._finish(rows[i], new_ids[i])
                if results[i] is None:
                    keep.append(pos)
            if not keep:
                break
            if len(keep) < len(active):  # drop finished rows from the batch
                sel = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(sel)
                tokens, mask, next_pos = tokens[sel], mask[sel], next_pos[sel]
                active = [active[p] for p in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                             past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1].float()
            next_pos = next_pos + 1
        self._generated_tokens += sum(len(t) for t in new_ids)
        done = [r for r in results if r is not None]
        assert len(done) == len(rows)
        return done

    def _prefill(self, rows: list[_Row]) -> tuple[Any, Any, Any, Any]:
        """Run each distinct prompt once (left-padded), then give every row its prompt's cache rows.
        Returns the cache, the next-token logits, the attention mask and the next position per row."""
        import torch
        from transformers import DynamicCache

        prompts = list(dict.fromkeys(r.prompt for r in rows))
        encoded = [self.tokenizer(p)["input_ids"] for p in prompts]
        self._prompt_tokens += sum(len(e) for e in encoded)
        ids, mask = pad_batch(encoded, self.tokenizer.pad_token_id, left=True, device=self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True, logits_to_keep=1)
        slot = {p: i for i, p in enumerate(prompts)}
        which = torch.tensor([slot[r.prompt] for r in rows], device=self.device)
        cache.batch_select_indices(which)
        return cache, out.logits[which, -1].float(), mask[which], positions[which, -1] + 1

    def _choose(self, logits: Any, rows: Sequence[_Row], generators: Sequence[Any]) -> Any:
        """Next token per row: argmax for greedy rows, Gumbel-max with the row's generator otherwise."""
        import torch

        temps = torch.tensor([r.temperature for r in rows], device=logits.device)
        if not bool((temps > 0).any()):
            return logits.argmax(-1)
        vocab = logits.shape[-1]
        uniform = torch.stack([
            torch.rand(vocab, generator=g, device=logits.device) if g is not None
            else torch.full((vocab,), 0.5, device=logits.device)
            for g in generators
        ]).clamp_(1e-10, 1.0 - 1e-7)
        gumbel = -torch.log(-torch.log(uniform))
        sampled = (logits / temps.clamp(min=1e-6)[:, None] + gumbel).argmax(-1)
        return torch.where(temps > 0, sampled, logits.argmax(-1))

    def _finish(self, row: _Row, ids: list[int]) -> Completion | None:
        """The row's completion if it has stopped, else None."""
        last = ids[-1]
        if last in self._eos_ids:
            text = self.tokenizer.decode(ids[:-1], skip_special_tokens=True)
            return Completion(text.split(row.stop, 1)[0], len(ids), True, eos=row.stop not in text)
        triggers = self._triggers(row.stop)
        if triggers is None or last in triggers:
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if row.stop in text:
                return Completion(text.split(row.stop, 1)[0], len(ids), True)
        if len(ids) >= row.max_tokens:
            return Completion(self.tokenizer.decode(ids, skip_special_tokens=True), len(ids), False)
        return None

    def _triggers(self, stop: str) -> frozenset[int] | None:
        """Tokens that can complete `stop` (those whose text holds its last character), or None
        when that cannot be told token by token (a non-ASCII last character may be split in bytes)."""
        if stop not in self._stop_triggers:
            triggers = None
            if stop[-1].isascii():
                pieces = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
                triggers = frozenset(i for i, piece in enumerate(pieces) if stop[-1] in piece)
            self._stop_triggers[stop] = triggers
        return self._stop_triggers[stop]


class HFScoreEngine(_HFEngine[str, float]):
    """ScoreEngine on a transformers one-label sequence classifier (the PRM)."""

    def __init__(self, servers: ServersConfig, model_path: str, dtype: str = "float32",
                 device: str | None = None) -> None:
        from restmcts.checkpoints import load_prm

        super().__init__(servers, model_path, dtype, device, load_prm, "prm")
        self._pad_id = self.model.config.pad_token_id

    async def score(self, texts: list[str]) -> list[float]:
        return await self._batcher.submit(texts) if texts else []

    def _run_batch(self, texts: list[str]) -> list[float]:
        import torch

        encoded = [self.tokenizer(t)["input_ids"] for t in texts]
        self._prompt_tokens += sum(len(e) for e in encoded)
        # right padding: positions and causal context stay as unpadded
        ids, mask = pad_batch(encoded, self._pad_id, device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits
        return prm_value(logits).tolist()


# ---------------------------------------------------------------------- helpers


def _generator(seed: int, device: str) -> Any:
    import torch

    return torch.Generator(device=device).manual_seed(seed)


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids = model.generation_config.eos_token_id if model.generation_config is not None else None
    ids = ids if isinstance(ids, list) else [ids]
    return frozenset(i for i in [*ids, tokenizer.eos_token_id] if i is not None)


def _load_state(model: Any, state_dict: Mapping[str, Any], written: Collection[str] = ()) -> None:
    """Copy `state_dict` into `model` in place; `written` names tensors already written in place.
    Keys neither has are allowed only for tensors tied to one they have (a tied LM head);
    unknown keys are an error."""
    missing, unexpected = model.load_state_dict(dict(state_dict), strict=False)
    if unexpected:
        raise KeyError(f"load_weights: keys not in the model: {sorted(unexpected)[:5]}")
    own = model.state_dict()
    loaded = {own[k].data_ptr() for k in {*state_dict, *written}}
    untied = [k for k in missing if k not in written and own[k].data_ptr() not in loaded]
    if untied:
        raise KeyError(f"load_weights: state_dict lacks {sorted(untied)[:5]}")
