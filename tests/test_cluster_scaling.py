"""Search workers follow search.min_workers..num_workers and the cluster's resources; custom resource
names pin roles to node types. Local Ray (the shared `ray_local` fixture)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from restmcts.config import ConfigError, load_config


def _cfg(ckpt, *overrides):
    return load_config("configs/arith-tiny.yaml", [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
        "search.num_simulations=2", "search.max_depth=2", "search.max_step_tokens=6",
        "search.trees_per_worker=4", "data.arith_min_ops=1", "data.arith_max_ops=2", *overrides,
    ])


def test_scaling_fields_default_to_the_old_behaviour():
    cfg = load_config("configs/arith-tiny.yaml")
    assert (cfg.search.min_workers, cfg.search.worker_resource, cfg.servers.resource) == (1, "", "")


@pytest.mark.parametrize("override, message", [
    ("search.min_workers=3", "need 1 <= min_workers <= num_workers (got 3 and 2)"),
    ("search.min_workers=0", "need 1 <= min_workers"),
    ("search.worker_resource=GPU", "got 'GPU'; use a custom Ray resource name"),
    ("servers.resource=restmcts-server", "got 'restmcts-server'; use a custom Ray resource name"),
    ("search.worker_cpus=-1", "search.worker_cpus: must be >= 0"),
    ("search.worker_start_timeout_s=0", "search.worker_start_timeout_s: must be > 0"),
])
def test_scaling_fields_reject_bad_values(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("configs/arith-tiny.yaml", [override])


def test_actor_options_ask_one_unit_of_the_role_resource():
    from restmcts.actors.runtime import actor_options

    assert actor_options(0.25, 0, resource="restmcts_search") == \
        {"num_cpus": 0.25, "num_gpus": 0, "resources": {"restmcts_search": 1.0}}
    assert "resources" not in actor_options(1, 0)


def test_pass_without_room_for_min_workers_fails_naming_the_resources(ray_local, tiny_ckpt, tmp_path):
    from restmcts.actors.search_pass import run_pass
    from restmcts.tasks import make_task

    cfg = _cfg(tiny_ckpt, "search.worker_resource=restmcts_nowhere", "search.worker_start_timeout_s=1")
    questions = make_task(cfg.data, seed=0).questions("train", 2)
    with pytest.raises(RuntimeError) as err:  # returns at all: it gave up instead of waiting forever
        run_pass(cfg, SimpleNamespace(policy=[], prm=[]), questions, cfg.search, 1, str(tmp_path))
    message = str(err.value)
    assert message.startswith("search: 0 of search.min_workers=1 search workers started within "
                              "search.worker_start_timeout_s=1s")
    assert "'restmcts_nowhere': 1.0" in message and "Lower search.min_workers" in message


def test_pass_runs_on_the_workers_that_fit_while_the_rest_wait(ray_local, tiny_ckpt, tmp_path, capfd):
    """Four workers requested, room for two: the pass finishes on two while the other two stay
    pending (the demand an autoscaler adds nodes for; tests/test_cluster_multinode.py watches it)."""
    from restmcts.actors.search_pass import run_pass
    from restmcts.actors.servers import start_servers
    from restmcts.tasks import make_task

    base = _cfg(tiny_ckpt)
    servers = start_servers(base, base.model.policy, base.model.prm)
    try:
        room = ray_local.available_resources()["CPU"]
        cfg = _cfg(tiny_ckpt, "search.num_workers=4", "search.min_workers=1", f"search.worker_cpus={room / 2.5}")
        questions = make_task(cfg.data, seed=0).questions("train", 12)
        summary = run_pass(cfg, servers, questions, cfg.search, 1, str(tmp_path))
    finally:
        servers.shutdown()
    assert summary.questions == 12 and summary.retries == 0
    assert "workers 2/4" in capfd.readouterr().err.splitlines()[-1]
