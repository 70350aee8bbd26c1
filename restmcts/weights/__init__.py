"""Moving new weights from the learners into the live inference servers.

    spec = GroupSpec(host, port, world_size=1 + replicas, backend="gloo")
    manifest = Manifest.of(named_tensors, version=i, bucket_mb=256)
    # learner rank 0 (rank 0 of the group):
    WeightGroup.join(spec, 0).send(named_tensors, manifest)
    # every server replica r (ranks 1..):
    for name, tensor in WeightGroup.join(spec, r).receive(manifest, device): ...

`group` is the transport: a torch.distributed process group of its own (gloo on CPU, NCCL on GPU,
built from its own TCP rendezvous, so it lives beside a learner's training world) that
broadcasts the weights in buckets of `sync.bucket_mb`, or, when every receiver shares the sender's
node, hands them over through a shared-memory ring (`sync.shared_memory`, chunks of
`sync.shm_chunk_mb`) with the group only signalling; the object-store path moves the same
buckets (`pack`, `unpack`) as one object each. `versions` records which checkpoint each
role's servers should serve, so a replica that Ray restarts loads the latest synced weights.
This package imports torch only inside the functions that move tensors.
"""

from restmcts.weights.group import GroupSpec, Manifest, TensorMeta, WeightGroup
from restmcts.weights.versions import Version, VersionRecord

__all__ = ["GroupSpec", "Manifest", "TensorMeta", "Version", "VersionRecord", "WeightGroup"]
