"""Weights from the learners straight into the live servers (restmcts.weights, Servers.push): the
bucket plan, the group between separate processes on loopback with gloo, both sync paths through
a real DeepSpeed learner and real server replicas, and a replica that Ray restarts after a sync."""

from __future__ import annotations

import asyncio
import os

import pytest
from killing import kill_actor  # tests/ is on sys.path

from restmcts import replay
from restmcts.config import load_config
from restmcts.weights import GroupSpec, Manifest, TensorMeta, Version, WeightGroup


def _meta(name: str, nbytes: int) -> TensorMeta:
    return TensorMeta(name, "uint8", (nbytes,), nbytes)


def test_buckets_keep_the_order_and_the_size_and_give_a_large_tensor_its_own():
    manifest = Manifest(3, tuple(_meta(n, b) for n, b in [("a", 10), ("b", 30), ("c", 100), ("d", 5), ("e", 7)]), 48)
    buckets = [[(m.name, offset) for m, offset in bucket] for bucket in manifest.buckets()]
    assert buckets == [[("a", 0), ("b", 16)], [("c", 0)], [("d", 0), ("e", 16)]]
    assert [m.name for b in manifest.buckets() for m, _ in b] == list("abcde")
    assert manifest.nbytes == 152


def _tensors():
    import torch

    g = torch.Generator().manual_seed(0)
    return {"embed.weight": torch.randn(3000, generator=g), "norm.weight": torch.randn(17, 5, generator=g).bfloat16(),
            "position_ids": torch.arange(7), "lm_head.weight": torch.randn(5000, generator=g)}


@pytest.mark.parametrize("where", ["network", "shm", "one_receiver_elsewhere"])
def test_a_group_of_separate_processes_sends_every_tensor_bit_for_bit(ray_local, where, tmp_path):
    """A sender and two receivers, each its own Ray worker process, meet on loopback over gloo.
    Over the network a 10 KB bucket size cuts the 33 KB of tensors into three buckets; through
    shared memory 4 KB chunks cut them into nine, most tensors straddling chunks. A receiver that
    cannot see the sender's /dev/shm file (another node) puts the whole group on the network.
    Receiver 1 names where the embedding goes; it lands there."""
    import ray
    import torch

    from restmcts.actors.runtime import LOOPBACK, free_port

    @ray.remote(num_cpus=0)
    class Member:
        def pid(self) -> int:
            return os.getpid()

        def send(self, spec, tensors, manifest) -> str:
            group = WeightGroup.join(spec, 0)
            transport = group.transport
            group.send(tensors.items(), manifest)
            group.close()
            return transport

        def receive(self, spec, rank, manifest, shm_dir: str | None) -> tuple[str, dict, bool]:
            import restmcts.weights.group as wg

            if shm_dir is not None:
                wg.SHM_DIR = shm_dir
            mine = {"embed.weight": torch.zeros(3000)} if rank == 1 else {}
            group = WeightGroup.join(spec, rank)
            transport = group.transport
            got = {name: t.clone() if name not in mine else t
                   for name, t in group.receive(manifest, into=lambda meta: mine.get(meta.name))}
            group.close()
            landed = all(got[name] is t for name, t in mine.items())
            return transport, got, landed

    tensors = _tensors()
    manifest = Manifest.of(tensors.items(), version=1, bucket_mb=10_000 / 2**20)
    assert len(manifest.buckets()) == 3
    members = [Member.remote() for _ in range(3)]
    pids = ray.get([m.pid.remote() for m in members])
    assert len({*pids, os.getpid()}) == 4, "every member is a process of its own"
    shm_name = "" if where == "network" else f"restmcts-sync-test-{os.getpid()}-{where}"
    spec = GroupSpec(LOOPBACK, free_port(), world_size=3, backend="gloo", timeout_s=120, shm_name=shm_name,
                     shm_chunk_bytes=4096)
    elsewhere = {1: None, 2: str(tmp_path) if where == "one_receiver_elsewhere" else None}
    received = [members[r].receive.remote(spec, r, manifest, elsewhere[r]) for r in (1, 2)]
    sent = ray.get(members[0].send.remote(spec, tensors, manifest))
    expected = "shm" if where == "shm" else "gloo"
    assert sent == expected
    for transport, got, landed in ray.get(received):
        assert transport == expected and landed
        assert list(got) == list(tensors)
        for name, t in tensors.items():
            assert got[name].dtype == t.dtype and torch.equal(got[name], t), name
    assert not os.path.exists(f"/dev/shm/{shm_name}") or not shm_name, "the sender removes its file"


def _greedy(servers, cfg, question: str, steps: list[str]) -> str:
    from restmcts.actors.client import ModelClient
    from restmcts.prompt import PromptFormat

    client = ModelClient(servers.policy, servers.prm, PromptFormat(), cfg.search)
    return asyncio.run(client.propose(question, steps, 1, 0, temperature=0.0))[0][0]


def _expected_greedy(path: str, question: str, prefixes: list[str], max_new_tokens: int) -> list[str]:
    """Greedy steps of the checkpoint at `path`, read from disk by transformers."""
    import torch

    from restmcts.checkpoints import load_policy, load_tokenizer

    model, tok = load_policy(path), load_tokenizer(path)
    out = []
    for prefix in prefixes:
        ids = tok(question + "\n" + prefix, return_tensors="pt").input_ids
        with torch.no_grad():
            gen = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        out.append(tok.decode(gen[0, ids.shape[1]:]).split("\n")[0].strip())
    return out


QUESTION = "Start with 4. Add 3. What is the result?"


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory):
    from restmcts.replay import Trace

    data = str(tmp_path_factory.mktemp("sync_data") / "traces.parquet")
    replay.write_records([Trace("q", QUESTION, ("4 + 3 = 7", "The answer is 7"), "7", True, 9, "mcts_star", 1)] * 8,
                         Trace, data)
    return data


def _cfg(ckpt, *overrides):
    return load_config("configs/arith-tiny.yaml", [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm", "servers.policy_replicas=2",
        "learners.policy_epochs=40", "learners.policy_lr=0.003", "learners.micro_batch_size=4",
        "search.max_step_tokens=16", "sync.bucket_mb=0.5", *overrides])


@pytest.mark.parametrize("method,learners", [("collective", 1), ("object_store", 1), ("collective", 0)])
def test_trained_weights_reach_every_replica_without_passing_through_the_driver(
        ray_local, tiny_ckpt, sft_data, tmp_path, method, learners):
    """Train the policy (a learner actor, or in-process), push from the live learners into two
    live replicas: each serves greedy steps equal to the saved checkpoint's, and says so."""
    from restmcts.actors.servers import start_servers
    from restmcts.learners import train_live
    from restmcts.weights import VersionRecord

    cfg = _cfg(tiny_ckpt, f"sync.method={method}", f"learners.num_learners={learners}")
    out = str(tmp_path / "policy")
    record = str(tmp_path / "weights.json")
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm, record=record)
    try:
        before = _greedy(servers, cfg, QUESTION, [])
        _, group = train_live(cfg, "policy", cfg.model.policy, [sft_data], out)
        try:
            report = servers.push("policy", group, Version(1, out), cfg)
        finally:
            group.shutdown()
        after = [_greedy(servers, cfg, QUESTION, []), _greedy(servers, cfg, QUESTION, ["4 + 3 = 7"])]
        assert servers.versions("policy") == [Version(1, out)] * 2
        assert servers.versions("prm") == [Version(0, cfg.model.prm)]
        loads = [s.weight_loads for s in servers.stats()["policy"]]
    finally:
        servers.shutdown()
    assert report.method == method and report.reloaded == 0 and report.replicas == 2
    assert report.bytes > 0 and loads == [1, 1]
    assert VersionRecord(record).get("policy") == Version(1, out)
    assert after == _expected_greedy(out, QUESTION, ["", "4 + 3 = 7\n"], 16)
    assert after[0] == "4 + 3 = 7" and before != after[0]


class _SenderThatBreaksOff:
    """Stands in for a learner group: offers the checkpoint at `path`, sends the first half of its
    tensors through the shared-memory ring, then dies (an exception) without sending the rest."""

    def __init__(self, path: str) -> None:
        from restmcts.checkpoints import read_weights

        self.named = list(read_weights(path).items())
        self.sent_chunks = 0

    def sync_address(self) -> tuple[str, int]:
        from restmcts.actors.runtime import LOOPBACK, free_port

        return LOOPBACK, free_port()

    def manifest(self, version: int, bucket_mb: float) -> Manifest:
        return Manifest.of(self.named, version, bucket_mb)

    def send_weights(self, spec: GroupSpec, manifest: Manifest) -> None:
        half = Manifest(manifest.version, manifest.tensors[:len(manifest.tensors) // 2], manifest.bucket_bytes)
        group = WeightGroup.join(spec, 0)
        try:
            assert group.transport == "shm"
            group.send(self.named, half)
            self.sent_chunks = -(-half.nbytes // spec.shm_chunk_bytes)
        finally:
            try:
                group.close()
            except RuntimeError:
                pass  # the receivers may have given up first
        raise RuntimeError("the sender died halfway")


def test_a_push_broken_off_halfway_leaves_every_replica_on_the_checkpoint(ray_local, tiny_ckpt, sft_data, tmp_path):
    """Both replicas take half the tensors straight into their live weights, then wait in vain
    (sync.timeout_s) for the rest: each reports the push failed, and the catch-up has it load the
    checkpoint, so both serve exactly the saved weights, not a mix."""
    from restmcts.actors.servers import start_servers
    from restmcts.learners import train_live

    cfg = _cfg(tiny_ckpt, "learners.num_learners=0", "sync.timeout_s=5", "sync.shm_chunk_mb=0.25")
    out = str(tmp_path / "policy")
    _, group = train_live(cfg, "policy", cfg.model.policy, [sft_data], out)
    group.shutdown()
    sender = _SenderThatBreaksOff(out)
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm, record=str(tmp_path / "weights.json"))
    try:
        before = _greedy(servers, cfg, QUESTION, [])
        report = servers.push("policy", sender, Version(1, out), cfg)
        after = [_greedy(servers, cfg, QUESTION, []), _greedy(servers, cfg, QUESTION, ["4 + 3 = 7"])]
        assert servers.versions("policy") == [Version(1, out)] * 2
        loads = [s.weight_loads for s in servers.stats()["policy"]]
    finally:
        servers.shutdown()
    total_chunks = -(-sender.manifest(1, 1).nbytes // int(0.25 * 2**20))
    assert 2 <= sender.sent_chunks < total_chunks, "the replicas wrote part of the weights before the sender died"
    assert report.reloaded == 2, "both replicas missed the push and loaded the checkpoint"
    assert loads == [1, 1], "the broken receive is not counted as a load; the checkpoint load is"
    assert after == _expected_greedy(out, QUESTION, ["", "4 + 3 = 7\n"], 16)
    assert after[0] == "4 + 3 = 7" and before != after[0]


def test_a_replica_killed_after_a_sync_comes_back_serving_the_synced_weights(ray_local, tiny_ckpt, sft_data, tmp_path):
    """SIGKILL a policy replica after the push: Ray restarts it with its first constructor
    arguments (the bootstrap checkpoint), and it reads the run's record to serve version 1."""
    from restmcts.actors.servers import start_servers
    from restmcts.learners import train_live

    cfg = _cfg(tiny_ckpt, "servers.policy_replicas=1", "learners.num_learners=0")
    out = str(tmp_path / "policy")
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm, record=str(tmp_path / "weights.json"))
    try:
        _, group = train_live(cfg, "policy", cfg.model.policy, [sft_data], out)
        try:
            servers.push("policy", group, Version(1, out), cfg)
        finally:
            group.shutdown()
        synced = _greedy(servers, cfg, QUESTION, [])
        kill_actor(servers.policy[0])
        assert servers.versions("policy") == [Version(1, out)]
        assert _greedy(servers, cfg, QUESTION, []) == synced == "4 + 3 = 7"
    finally:
        servers.shutdown()
