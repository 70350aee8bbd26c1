"""Shared fixtures. Everything stays on this machine: Ray on 127.0.0.1, no hub access."""

from __future__ import annotations

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    """A random tiny (policy, PRM) pair saved as HF folders: fast, for plumbing tests.

    Returns the directory holding `policy/` and `prm/`.
    """
    from restmcts.bootstrap.tiny import build_arith_tokenizer, build_tiny_models
    from restmcts.checkpoints import save

    root = tmp_path_factory.mktemp("tiny_ckpt")
    tok = build_arith_tokenizer()
    policy, prm = build_tiny_models(tok, seed=0, hidden_size=64, num_layers=2, num_heads=2)
    save(policy, tok, root / "policy")
    save(prm, tok, root / "prm")
    return root


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance on loopback, shared by the session's tests."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=16, include_dashboard=False, _node_ip_address="127.0.0.1",
                 configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory):
    """A small bootstrap (about a minute and a half): a policy that solves short arith questions often.

    Returns the directory holding `policy/` and `prm/`.
    """
    from restmcts.bootstrap.arith import run_bootstrap
    from restmcts.config import load_config

    root = tmp_path_factory.mktemp("trained_ckpt")
    cfg = load_config("configs/arith-tiny.yaml", [
        "bootstrap.hidden_size=64", "bootstrap.num_layers=2", "bootstrap.num_heads=2",
        # Many small steps: the arithmetic, not just the format, is learned (greedy ~0.6 on 2 operations).
        "bootstrap.sft_steps=5000", "bootstrap.sft_batch_size=8", "bootstrap.sft_lr=2e-3",
        "bootstrap.sft_examples=2000", "bootstrap.prm_questions=16",
        "bootstrap.prm_steps=30", "bootstrap.max_ops=0",
        "data.arith_min_ops=1", "data.arith_max_ops=2", "data.arith_test_ops=2", "data.arith_test_size=20",
    ])
    run_bootstrap(cfg, root)
    return root
