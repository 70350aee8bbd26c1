"""Conformance tests for the engine backends: the same contract checked on hf and on vllm.

The vllm cases carry `@pytest.mark.vllm` and run in `.venv-vllm` (`make test-vllm`); where vllm
cannot be imported they are skipped, except under RESTMCTS_REQUIRE_VLLM=1 (set by the Makefile's
vLLM runs), where they fail. Each backend's engines are built once per module and driven
from one event loop in a background thread, as an async Ray actor would drive them.

The models are the random tiny pair of `tiny_ckpt` with their weight matrices redrawn at a larger
scale: a freshly initialised tiny Llama repeats its last token under greedy decoding, which would
make greedy and stop-string checks trivial. Outputs are gibberish, but varied and deterministic.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from restmcts.config import ServersConfig
from restmcts.engines import GenerateRequest, make_policy_engine, make_score_engine

T = TypeVar("T")
MAX_QUEUE = 48
SERVERS = dict(max_batch_size=64, max_wait_ms=5.0, max_queue=MAX_QUEUE, max_model_len=256)
PROMPTS = ["Start with 5 .\n", "Start with 12 . Add 3 . What is the result ?\n", "Start with 7 . Multiply by 2 .\n"]
# Longer than one vLLM CPU KV block (128 tokens), so the prefix cache holds it across requests.
LONG_PROMPT = "Start with 5 . " + "Add 1 . " * 24 + "What is the result ?\n"
UNREACHABLE = "#"  # a stop string the arith vocabulary cannot produce


class LoopThread:
    """An event loop in a daemon thread; `run(coro)` waits for a coroutine scheduled on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def _redraw(model: Any, seed: int, scale: float = 2.0) -> dict[str, Any]:
    """A state dict for `model` with every matrix drawn from N(0, scale^2 / fan_in); vectors kept.
    Tied tensors (the LM head and the embedding) stay tied."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    drawn: dict[int, Any] = {}
    out = {}
    for name, value in model.state_dict().items():
        ptr = value.data_ptr()
        if ptr not in drawn:
            drawn[ptr] = (torch.randn(value.shape, generator=gen) * scale / value.shape[-1] ** 0.5
                          if value.dim() >= 2 else value.clone())
        out[name] = drawn[ptr]
    return out


@pytest.fixture(scope="module")
def ckpt(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_ckpt with redrawn weights (seed 0), saved as policy/ and prm/."""
    from restmcts.checkpoints import load_policy, load_prm, load_tokenizer, save

    root = tmp_path_factory.mktemp("engine_ckpt")
    for name, load in (("policy", load_policy), ("prm", load_prm)):
        model = load(str(tiny_ckpt / name))
        model.load_state_dict(_redraw(model, seed=0))
        save(model, load_tokenizer(str(tiny_ckpt / name)), root / name)
    return root


@pytest.fixture(scope="module")
def new_weights(ckpt: Path) -> dict[str, dict[str, Any]]:
    """Other weights (seed 1) for the load_weights test, keyed "policy" / "prm"."""
    from restmcts.checkpoints import load_policy, load_prm

    return {"policy": _redraw(load_policy(str(ckpt / "policy")), seed=1),
            "prm": _redraw(load_prm(str(ckpt / "prm")), seed=1)}


@pytest.fixture(scope="module")
def reference(ckpt: Path) -> dict[str, Any]:
    """transformers models with the checkpoint's weights, for direct comparison."""
    from restmcts.checkpoints import load_policy, load_prm, load_tokenizer

    return {"tok": load_tokenizer(str(ckpt / "policy")), "policy": load_policy(str(ckpt / "policy")),
            "prm": load_prm(str(ckpt / "prm"))}


def _vllm_or_skip() -> None:
    """Skip where vllm cannot be imported; under `make test` / `make test-vllm`
    (RESTMCTS_REQUIRE_VLLM=1) a vLLM environment that cannot import it fails instead."""
    try:
        import vllm  # noqa: F401
    except Exception as err:  # not installed, or installed and broken
        message = f"vllm cannot be imported here ({type(err).__name__}: {err})"
        if os.environ.get("RESTMCTS_REQUIRE_VLLM") == "1":
            pytest.fail(f"{message}; RESTMCTS_REQUIRE_VLLM=1 requires it (rebuild .venv-vllm: "
                        "rm -rf .venv-vllm && make setup-vllm)", pytrace=False)
        pytest.skip(f"{message} (run `make test-vllm`)")


@pytest.fixture(scope="module", params=["hf", pytest.param("vllm", marks=pytest.mark.vllm)])
def backend(request: pytest.FixtureRequest, ckpt: Path) -> Iterator[dict[str, Any]]:
    """One backend's (policy, prm) engines on a shared background loop."""
    if request.param == "vllm":
        _vllm_or_skip()
    servers = ServersConfig(engine=request.param, **SERVERS)
    runner = LoopThread()

    async def build() -> tuple[Any, Any]:
        return (make_policy_engine(servers, str(ckpt / "policy")),
                make_score_engine(servers, str(ckpt / "prm")))

    async def close() -> None:  # on the loop, as an actor would
        policy.close()
        prm.close()

    policy, prm = runner.run(build(), timeout=600)
    yield {"name": request.param, "run": runner.run, "policy": policy, "prm": prm}
    runner.run(close())
    runner.stop()


def _generate(backend: dict[str, Any], *reqs: GenerateRequest) -> list[list[Any]]:
    """Send all requests at once; their completions, in order."""
    async def go() -> list[list[Any]]:
        return list(await asyncio.gather(*(backend["policy"].generate(r) for r in reqs)))

    return backend["run"](go())


def _greedy(prompt: str, max_tokens: int = 24, stop: str = UNREACHABLE) -> GenerateRequest:
    return GenerateRequest(prompt, n=1, seed=0, temperature=0.0, max_tokens=max_tokens, stop=stop)


def _reference_greedy(ref: dict[str, Any], prompt: str, max_tokens: int, stop: str) -> tuple[str, bool, bool]:
    """Greedy (text, finished, eos) from transformers' own generate, cut at the stop string."""
    import torch

    tok, model = ref["tok"], ref["policy"]
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)
    new = out[0, ids.shape[1]:].tolist()
    if tok.eos_token_id in new:
        text = tok.decode(new[:new.index(tok.eos_token_id)], skip_special_tokens=True)
        return text.split(stop, 1)[0], True, stop not in text
    text = tok.decode(new, skip_special_tokens=True)
    return text.split(stop, 1)[0], stop in text, False


def _reference_scores(ref: dict[str, Any], texts: list[str]) -> list[float]:
    import torch

    with torch.inference_mode():
        return [torch.sigmoid(ref["prm"](ref["tok"](t, return_tensors="pt").input_ids).logits[0, 0]).item()
                for t in texts]


# --------------------------------------------------------------------------- generate


def test_n_samples_per_request(backend: dict[str, Any]) -> None:
    [outs] = _generate(backend, GenerateRequest(PROMPTS[0], n=5, seed=1, temperature=1.0, max_tokens=12, stop="\n"))
    assert len(outs) == 5
    assert all(isinstance(c.text, str) and 1 <= c.tokens <= 12 for c in outs)
    assert len({c.text for c in outs}) > 1  # independent samples, not copies


def test_a_request_larger_than_a_batch(backend: dict[str, Any]) -> None:
    n = SERVERS["max_batch_size"] + 6
    [outs] = _generate(backend, GenerateRequest(PROMPTS[2], n=n, seed=2, temperature=1.0, max_tokens=4, stop="\n"))
    assert len(outs) == n and all(c.tokens <= 4 for c in outs)


def test_greedy_is_deterministic_and_matches_transformers(backend: dict[str, Any], reference: dict[str, Any]) -> None:
    first = _generate(backend, *(_greedy(p) for p in PROMPTS))
    again = _generate(backend, *(_greedy(p) for p in reversed(PROMPTS)))
    assert first == list(reversed(again))
    for prompt, [c] in zip(PROMPTS, first, strict=True):
        assert (c.text, c.finished, c.eos) == _reference_greedy(reference, prompt, 24, UNREACHABLE)
    [copies] = _generate(backend, GenerateRequest(PROMPTS[1], n=3, seed=5, temperature=0.0, max_tokens=24,
                                                  stop=UNREACHABLE))
    assert copies == first[1] * 3


def test_stops_at_the_stop_string(backend: dict[str, Any], reference: dict[str, Any]) -> None:
    [[full]] = _generate(backend, _greedy(PROMPTS[1], max_tokens=24))
    assert len(full.text) > 4, "the greedy text should be long enough to pick a stop string from it"
    stop = full.text[len(full.text) // 2]
    [[cut]] = _generate(backend, _greedy(PROMPTS[1], max_tokens=24, stop=stop))
    assert cut.finished and not cut.eos and stop not in cut.text
    assert cut.text == full.text.split(stop, 1)[0]
    assert cut.tokens < full.tokens
    # Sampled rows stop at the delimiter too: none contains it, and some stop before max_tokens.
    [outs] = _generate(backend, GenerateRequest(PROMPTS[0], n=16, seed=3, temperature=1.0, max_tokens=40, stop="\n"))
    assert all("\n" not in c.text for c in outs)
    assert any(c.finished and c.tokens < 40 for c in outs)


def test_max_tokens_is_respected_and_not_finished(backend: dict[str, Any]) -> None:
    [[c]] = _generate(backend, _greedy(PROMPTS[0], max_tokens=3))
    [[longer]] = _generate(backend, _greedy(PROMPTS[0], max_tokens=24))
    assert c.tokens == 3 and not c.finished and not c.eos
    assert longer.text.startswith(c.text)
    [outs] = _generate(backend, GenerateRequest(PROMPTS[2], n=12, seed=4, temperature=1.0, max_tokens=5,
                                                stop=UNREACHABLE))
    assert all(c.tokens <= 5 for c in outs)
    assert all(c.tokens == 5 for c in outs if not c.finished)
    assert any(not c.finished for c in outs)


def test_seeded_sampling_is_reproducible(backend: dict[str, Any]) -> None:
    req = GenerateRequest(PROMPTS[1], n=4, seed=11, temperature=0.8, max_tokens=16, stop="\n")
    [a] = _generate(backend, req)
    [b] = _generate(backend, req)
    [c] = _generate(backend, GenerateRequest(PROMPTS[1], n=4, seed=12, temperature=0.8, max_tokens=16, stop="\n"))
    assert a == b
    assert a != c


def test_seeded_sampling_does_not_depend_on_the_batch(backend: dict[str, Any]) -> None:
    req = GenerateRequest(PROMPTS[2], n=3, seed=21, temperature=1.0, max_tokens=20, stop="\n")
    [alone] = _generate(backend, req)
    crowd = [GenerateRequest(PROMPTS[i % 3] + "Add " * (i % 4), n=2, seed=100 + i, temperature=1.0,
                             max_tokens=8 + i % 13, stop="\n") for i in range(30)]
    results = _generate(backend, *crowd[:17], req, *crowd[17:])
    assert results[17] == alone


# --------------------------------------------------------------------------- score


def test_scores_are_probabilities_equal_to_transformers(backend: dict[str, Any], reference: dict[str, Any]) -> None:
    texts = [PROMPTS[0], PROMPTS[1] + "Add 3 = 15\n", PROMPTS[2] + "7 * 2 = 14\nThe answer is 14\n", "9"]
    values = backend["run"](backend["prm"].score(texts))
    assert len(values) == len(texts)
    assert values == pytest.approx(_reference_scores(reference, texts), abs=1e-4)
    assert len(set(values)) > 1
    assert backend["run"](backend["prm"].score([])) == []


def test_concurrent_score_calls_match_single_calls(backend: dict[str, Any]) -> None:
    texts = [f"Start with {i} . Add {i % 7} .\n" for i in range(40)]

    async def go() -> list[list[float]]:
        return list(await asyncio.gather(*(backend["prm"].score([t]) for t in texts)))

    together = [v for [v] in backend["run"](go())]
    assert together == pytest.approx(backend["run"](backend["prm"].score(texts)), abs=1e-5)


# --------------------------------------------------------------------------- batching and load


def test_concurrent_requests_batch_together(backend: dict[str, Any]) -> None:
    before = backend["policy"].stats()
    reqs = [GenerateRequest(PROMPTS[i % 3], n=3, seed=i, temperature=1.0, max_tokens=16, stop="\n")
            for i in range(64)]
    results = _generate(backend, *reqs)
    after = backend["policy"].stats()
    assert [len(r) for r in results] == [3] * 64
    assert after.requests - before.requests == 64
    assert after.rows - before.rows == 192
    if backend["name"] == "hf":
        batches = after.batches - before.batches
        mean_rows = (after.rows - before.rows) / batches
        print(f"hf policy: 64 requests x 3 samples in {batches} batches, mean {mean_rows:.1f} rows/batch")
        assert mean_rows > 16
        assert after.max_batch_rows <= SERVERS["max_batch_size"]
    else:
        print(f"vllm policy: mean rows in flight at arrival {after.mean_batch_rows:.1f}")
        assert after.max_batch_rows > 16


def test_queue_bound_holds_callers_back(backend: dict[str, Any]) -> None:
    engine = backend["policy"]
    peak = 0

    async def go() -> list[list[Any]]:
        nonlocal peak
        tasks = [asyncio.ensure_future(engine.generate(
            GenerateRequest(PROMPTS[i % 3], n=1, seed=i, temperature=1.0, max_tokens=12, stop="\n")))
            for i in range(3 * MAX_QUEUE)]
        while not all(t.done() for t in tasks):
            peak = max(peak, engine.stats().in_flight)
            await asyncio.sleep(0.001)
        return [t.result() for t in tasks]

    results = backend["run"](go())
    assert len(results) == 3 * MAX_QUEUE and all(len(r) == 1 for r in results)
    assert 1 < peak <= MAX_QUEUE
    assert engine.stats().in_flight == 0


def test_load_weights_swaps_the_live_model(backend: dict[str, Any], reference: dict[str, Any],
                                           new_weights: dict[str, dict[str, Any]]) -> None:
    policy, prm, run = backend["policy"], backend["prm"], backend["run"]
    texts = [PROMPTS[0] + "Add 1 = 6\n", PROMPTS[1]]
    old_out = _generate(backend, *(_greedy(p) for p in (*PROMPTS, LONG_PROMPT)))
    old_scores = run(prm.score(texts))
    old_policy = {k: v.clone() for k, v in reference["policy"].state_dict().items()}
    old_prm = {k: v.clone() for k, v in reference["prm"].state_dict().items()}
    try:
        run(policy.load_weights(new_weights["policy"]))
        run(prm.load_weights(new_weights["prm"]))
        reference["policy"].load_state_dict(new_weights["policy"])
        reference["prm"].load_state_dict(new_weights["prm"])
        new_out = _generate(backend, *(_greedy(p) for p in (*PROMPTS, LONG_PROMPT)))
        assert new_out != old_out
        for prompt, [c] in zip((*PROMPTS, LONG_PROMPT), new_out, strict=True):
            assert (c.text, c.finished, c.eos) == _reference_greedy(reference, prompt, 24, UNREACHABLE)
        new_scores = run(prm.score(texts))
        assert new_scores != pytest.approx(old_scores, abs=1e-3)
        assert new_scores == pytest.approx(_reference_scores(reference, texts), abs=1e-4)
    finally:  # put the checkpoint's weights back for the other tests
        run(policy.load_weights(old_policy))
        run(prm.load_weights(old_prm))
        reference["policy"].load_state_dict(old_policy)
        reference["prm"].load_state_dict(old_prm)
    assert _generate(backend, *(_greedy(p) for p in (*PROMPTS, LONG_PROMPT))) == old_out
    assert policy.stats().weight_loads >= 2


# --------------------------------------------------------------------------- weight sync


# A learner's side of a sync, in a process of its own: load a checkpoint, print the manifest (it
# travels through Ray in the loop), then broadcast as rank 0. Tied copies (the LM head) are left
# out, as a learner leaves them out.
SENDER = """
import json, sys
from dataclasses import asdict
from restmcts.checkpoints import load_policy, load_prm
from restmcts.weights import GroupSpec, Manifest, WeightGroup

role, path, host, port, shm = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
model = (load_policy if role == "policy" else load_prm)(path)
seen, named = set(), []
for name, tensor in model.state_dict().items():
    if tensor.data_ptr() not in seen:
        seen.add(tensor.data_ptr())
        named.append((name, tensor))
manifest = Manifest.of(named, version=7, bucket_mb=0.05)
print(json.dumps(asdict(manifest)), flush=True)
group = WeightGroup.join(GroupSpec(host, port, world_size=2, timeout_s=120.0, shm_name=shm, shm_chunk_bytes=2**16), 0)
assert group.transport == ("shm" if shm else "gloo"), group.transport
try:
    group.send(named, manifest)
finally:
    group.close()
"""


@pytest.fixture(scope="module")
def other_ckpt(ckpt: Path, new_weights: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint with `new_weights` (seed 1), saved as policy/ and prm/: what a sender sends."""
    from restmcts.checkpoints import load_policy, load_prm, load_tokenizer, save

    root = tmp_path_factory.mktemp("engine_ckpt_other")
    for name, load in (("policy", load_policy), ("prm", load_prm)):
        model = load(str(ckpt / name))
        model.load_state_dict(new_weights[name])
        save(model, load_tokenizer(str(ckpt / name)), root / name)
    return root


def _sync_from_sender(engine: Any, run: Any, role: str, path: Path, transport: str) -> int:
    """Start a sender process for the checkpoint at `path`, take its weights into `engine` as
    rank 1 over gloo on loopback (`transport` "network") or through a shared-memory ring of 64 KB
    chunks ("shm"); the number of buckets (network) or chunks (shm) it used."""
    import json
    import subprocess
    import sys
    import tempfile

    from restmcts.actors.runtime import LOOPBACK, free_port
    from restmcts.weights import GroupSpec, Manifest, TensorMeta

    port = free_port()
    shm = f"restmcts-sync-test-{port}" if transport == "shm" else ""
    spec = GroupSpec(LOOPBACK, port, world_size=2, timeout_s=120.0, shm_name=shm, shm_chunk_bytes=2**16)
    root = Path(__file__).resolve().parents[1]
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty sender never blocks on it
    sender = subprocess.Popen([sys.executable, "-c", SENDER, role, str(path), LOOPBACK, str(port), shm], cwd=root,
                              stdout=subprocess.PIPE, stderr=errors, text=True)

    def stderr() -> str:
        errors.seek(0)
        return errors.read()[-3000:]

    try:
        line = sender.stdout.readline()  # the manifest: the sender has its weights and is about to join
        assert line, f"the sender exited before its manifest: {sender.wait(timeout=60)} {stderr()}"
        data = json.loads(line)
        manifest = Manifest(data["version"], tuple(TensorMeta(t["name"], t["dtype"], tuple(t["shape"]), t["nbytes"])
                                                   for t in data["tensors"]), data["bucket_bytes"])
        run(engine.receive_weights(spec, 1, manifest))
        assert sender.wait(timeout=120) == 0, stderr()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        sender.stdout.close()
        errors.close()
    return len(manifest.buckets()) if transport == "network" else -(-manifest.nbytes // spec.shm_chunk_bytes)


def test_receive_weights_from_a_sender_process(backend: dict[str, Any], ckpt: Path, other_ckpt: Path) -> None:
    """A learner in another process broadcasts another checkpoint's weights over gloo, in several
    buckets; afterwards the engines answer as engines started from that checkpoint do, including
    for a prompt whose prefix vLLM cached before the sync."""
    policy, prm, run = backend["policy"], backend["prm"], backend["run"]
    servers = ServersConfig(engine=backend["name"], **SERVERS)
    prompts = (*PROMPTS, LONG_PROMPT)
    texts = [PROMPTS[0] + "Add 1 = 6\n", PROMPTS[1], LONG_PROMPT]

    async def start_fresh() -> tuple[Any, Any]:
        return (make_policy_engine(servers, str(other_ckpt / "policy")),
                make_score_engine(servers, str(other_ckpt / "prm")))

    async def close_fresh() -> None:
        fresh_policy.close()
        fresh_prm.close()

    fresh_policy, fresh_prm = run(start_fresh(), timeout=600)
    try:
        want_out = _generate({**backend, "policy": fresh_policy}, *(_greedy(p) for p in prompts))
        want_scores = run(fresh_prm.score(texts))
    finally:
        run(close_fresh())

    old_out = _generate(backend, *(_greedy(p) for p in prompts))  # LONG_PROMPT's blocks are cached now
    old_scores = run(prm.score(texts))
    assert old_out != want_out and old_scores != pytest.approx(want_scores, abs=1e-3)
    old_policy, old_prm = _state(ckpt, "policy"), _state(ckpt, "prm")
    assert "lm_head.weight" not in old_policy
    for transports in (("network", "shm"), ("shm", "network")):  # each engine takes each transport once
        loads = policy.stats().weight_loads, prm.stats().weight_loads
        try:
            assert _sync_from_sender(policy, run, "policy", other_ckpt / "policy", transports[0]) > 3
            assert _sync_from_sender(prm, run, "prm", other_ckpt / "prm", transports[1]) > 3
            assert (policy.stats().weight_loads, prm.stats().weight_loads) == (loads[0] + 1, loads[1] + 1)
            [long_out] = _generate(backend, _greedy(LONG_PROMPT))  # alone first: the stale-prefix case
            assert long_out == want_out[-1], transports
            assert _generate(backend, *(_greedy(p) for p in prompts)) == want_out, transports
            assert run(prm.score(texts)) == pytest.approx(want_scores, abs=1e-5), transports
        finally:  # put the checkpoint's weights back, through the object store's path
            run(policy.load_weights(old_policy))
            run(prm.load_weights(old_prm))
        assert _generate(backend, *(_greedy(p) for p in prompts)) == old_out
        assert run(prm.score(texts)) == pytest.approx(old_scores, abs=1e-5)


def _state(root: Path, role: str) -> dict[str, Any]:
    """The checkpoint's tensors without tied copies (the LM head), as a learner sends them."""
    from restmcts.checkpoints import load_policy, load_prm

    seen: set[int] = set()
    out = {}
    for name, tensor in (load_policy if role == "policy" else load_prm)(str(root / role)).state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            out[name] = tensor
    return out


# --------------------------------------------------------------------------- plain checks


def test_unknown_engine_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="hf, vllm"):
        make_policy_engine(ServersConfig(engine="bogus"), "unused")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hf, vllm"):
        make_score_engine(ServersConfig(engine="bogus"), "unused")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [dict(n=0), dict(max_tokens=0), dict(temperature=-1.0), dict(stop="")])
def test_generate_request_rejects_bad_values(bad: dict[str, Any]) -> None:
    fields = dict(prompt="x", n=1, seed=0, temperature=0.0, max_tokens=4, stop="\n") | bad
    with pytest.raises(ValueError):
        GenerateRequest(**fields)


def test_a_required_vllm_that_cannot_be_imported_fails_the_run(tmp_path: Path) -> None:
    """Under `make test` / `make test-vllm` (RESTMCTS_REQUIRE_VLLM=1) a broken vLLM environment
    fails instead of passing with every vLLM test skipped. Here a `vllm` that raises on import
    stands in for the broken install."""
    import subprocess
    import sys

    broken = tmp_path / "broken"
    (broken / "vllm").mkdir(parents=True)
    (broken / "vllm" / "__init__.py").write_text("raise ImportError('libtorch_cpu.so: undefined symbol')\n")
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "vllm",
           "tests/test_engines.py::test_scores_are_probabilities_equal_to_transformers"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(broken), os.environ.get("PYTHONPATH", "")]),
           "RESTMCTS_REQUIRE_VLLM": "1"}
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "vllm cannot be imported here (ImportError: libtorch_cpu.so: undefined symbol)" in result.stdout
    assert "1 error" in result.stdout or "1 failed" in result.stdout
