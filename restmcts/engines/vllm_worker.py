"""The part of the vLLM backend that runs inside vLLM's worker: taking a weight broadcast.

`WeightReceiver` is vLLM's worker extension (engine argument `worker_extension_cls`): vLLM adds it
to its worker class's bases in the worker process (under the engine core process), so its methods
run next to the model and the engine calls them through `AsyncLLM.collective_rpc`. `restmcts_receive_weights` joins the
learner's weight-sync group (restmcts.weights), streams the broadcast bucket by bucket into the
worker's `reload_weights` (tensors keyed by the Hugging Face checkpoint names, so the model's own
`load_weights` maps them: fused projections, the PRM's classifier head), and leaves the group.
Nothing passes through the engine's process, disk or shared memory.

A learner leaves out tied copies (a tied LM head is the input embedding). vLLM's reload processes
only the layers it was given weights for, and on CPU it keeps a prepacked copy of the LM head's
matrix, so an LM head left out would keep answering with the old embedding: `tied_copies` names
the copies to load again under their own names.

collective_rpc's arguments cross into the engine core as msgpack, which turns dataclasses into plain
dicts (no pickle), so the spec and the manifest travel as dicts (`to_wire`) and are rebuilt here.

This module imports nothing heavy at load time: vLLM resolves the class by name in every worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict
from typing import Any

from restmcts.weights import GroupSpec, Manifest, TensorMeta

RECEIVE = "restmcts_receive_weights"  # the method name `collective_rpc` calls
EXTENSION = f"{__name__}.WeightReceiver"  # the engine argument `worker_extension_cls`


TIED_LM_HEAD = ("model.embed_tokens.weight", "lm_head.weight")  # Llama-family checkpoint names


def tied_copies(names: Iterable[str], tie_word_embeddings: bool) -> dict[str, str]:
    """{sent name: name to load it under as well} for tied tensors the sender left out: the LM head
    of a causal LM whose config ties its word embeddings."""
    embedding, head = TIED_LM_HEAD
    sent = set(names)
    return {embedding: head} if tie_word_embeddings and embedding in sent and head not in sent else {}


def with_copies(named: Iterable[tuple[str, Any]], copies: dict[str, str]) -> Iterator[tuple[str, Any]]:
    """`named`, with each tensor `copies` names given again under its second name."""
    for name, tensor in named:
        yield name, tensor
        if name in copies:
            yield copies[name], tensor


def to_wire(spec: GroupSpec, manifest: Manifest) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec and the manifest as plain dicts, the form collective_rpc carries."""
    return asdict(spec), asdict(manifest)


def spec_from_wire(data: dict[str, Any]) -> GroupSpec:
    return GroupSpec(**data)


def manifest_from_wire(data: dict[str, Any]) -> Manifest:
    tensors = tuple(TensorMeta(t["name"], t["dtype"], tuple(t["shape"]), t["nbytes"]) for t in data["tensors"])
    return Manifest(data["version"], tensors, data["bucket_bytes"])


class WeightReceiver:
    """Mixed into vLLM's worker; `self` is the worker (it has `reload_weights`, `device`, `rank`)."""

    def restmcts_receive_weights(self, spec: dict[str, Any], rank: int, manifest: dict[str, Any]) -> int:
        """Join the sync's group as `rank`, load the broadcast into the model, leave the group.
        Returns the bytes received. One worker per engine: the engine is one member of the group."""
        from restmcts.weights import WeightGroup

        worker: Any = self
        world = worker.vllm_config.parallel_config.world_size
        if world != 1:
            raise NotImplementedError(f"weight sync into a vLLM engine of {world} workers: each engine "
                                      "joins the group as one rank, so it needs one worker")
        group_spec, wanted = spec_from_wire(spec), manifest_from_wire(manifest)
        device = worker.device if group_spec.backend == "nccl" else "cpu"
        model_config = worker.model_config
        ties = model_config.runner_type == "generate" and bool(
            getattr(model_config.hf_text_config, "tie_word_embeddings", False))
        copies = tied_copies((t.name for t in wanted.tensors), ties)
        group = WeightGroup.join(group_spec, rank)
        stream = group.receive(wanted, device)
        try:
            worker.reload_weights(weights_iterator=with_copies(stream, copies), is_checkpoint_format=True)
        finally:
            try:  # take every bucket whatever the loader read, so the sender never waits on us
                for _ in stream:
                    pass
            finally:
                group.close()
        return wanted.nbytes
