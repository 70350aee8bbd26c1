"""cluster/: the launcher YAML, the KubeRay manifests and the runtime env parse, are complete, and
offer the resources that the cluster job config (cluster/gsm8k-qwen.yaml) makes the code ask for."""

from __future__ import annotations

import json
import math
import os
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray
import yaml

from restmcts.cli import parse_job_args
from restmcts.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
JOB_CONFIG = CLUSTER / "gsm8k-qwen.yaml"


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _ray_pin() -> str:
    (pin,) = [d for d in _pyproject()["project"]["dependencies"] if d.startswith("ray[")]
    return pin.split("==")[1]


@dataclass(frozen=True)
class NodeType:
    """What one node of a type offers Ray, and how many of them the autoscaler may run."""

    name: str
    resources: dict[str, float]
    min_nodes: int
    max_nodes: int
    head: bool = False

    def get(self, key: str) -> float:
        return self.resources.get(key, 0.0)


def launcher_node_types() -> list[NodeType]:
    cfg = _yaml(CLUSTER / "ray-cluster.aws.yaml")
    return [NodeType(name, {k: float(v) for k, v in t.get("resources", {}).items()},
                     1 if name == cfg["head_node_type"] else t["min_workers"],
                     1 if name == cfg["head_node_type"] else t["max_workers"],
                     head=name == cfg["head_node_type"])
            for name, t in cfg["available_node_types"].items()]


def _kuberay_resources(group: dict) -> dict[str, float]:
    """Ray's view of a KubeRay group: CPU/GPU from the container limits (num-cpus/num-gpus override),
    custom resources from rayStartParams.resources (a JSON object inside a JSON string)."""
    params = group["rayStartParams"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    resources = {"CPU": float(params.get("num-cpus", limits.get("cpu", 0))),
                 "GPU": float(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}
    if "resources" in params:
        custom = json.loads(json.loads(params["resources"]))
        assert not {"CPU", "GPU", "memory"} & set(custom), "CPU/GPU/memory go in num-cpus/num-gpus/limits"
        resources.update({k: float(v) for k, v in custom.items()})
    return resources


def kuberay_node_types() -> list[NodeType]:
    spec = _yaml(CLUSTER / "kuberay" / "raycluster.yaml")["spec"]
    head = NodeType("head", _kuberay_resources(spec["headGroupSpec"]), 1, 1, head=True)
    return [head] + [NodeType(g["groupName"], _kuberay_resources(g), g["minReplicas"], g["maxReplicas"])
                     for g in spec["workerGroupSpecs"]]


CLUSTERS = {"launcher": launcher_node_types, "kuberay": kuberay_node_types}


# --------------------------------------------------------------------------- cluster launcher


def test_launcher_yaml_passes_the_autoscaler_schema():
    import jsonschema

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = _yaml(CLUSTER / "ray-cluster.aws.yaml")
    jsonschema.validate(cfg, schema)  # unknown or misspelled keys fail here
    assert cfg["head_node_type"] in cfg["available_node_types"]
    workers = [t for t in launcher_node_types() if not t.head]
    assert all(0 <= t.min_nodes <= t.max_nodes for t in workers)
    assert sum(t.max_nodes for t in workers) <= cfg["max_workers"]
    assert cfg["docker"]["image"].startswith(f"rayproject/ray:{_ray_pin()}-")
    for command in cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]:
        if "ray start" in command:
            assert "--metrics-export-port=8080" in command, "every node exports restmcts_* metrics on 8080"


def test_launcher_installs_the_runtime_env_packages():
    cfg = _yaml(CLUSTER / "ray-cluster.aws.yaml")
    setup = " ".join(cfg["setup_commands"])
    for package in _yaml(CLUSTER / "runtime_env.yaml")["pip"]["packages"]:
        assert f'"{package}"' in setup, f"setup_commands do not pre-install {package}"


# --------------------------------------------------------------------------- KubeRay


def test_kuberay_raycluster_and_rayjob_agree():
    cluster = _yaml(CLUSTER / "kuberay" / "raycluster.yaml")
    job = _yaml(CLUSTER / "kuberay" / "rayjob.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["rayClusterSpec"] == cluster["spec"], "rayjob.yaml must carry raycluster.yaml's spec"
    spec = cluster["spec"]
    assert spec["rayVersion"] == _ray_pin() == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    groups = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    for group in groups:
        for container in group["template"]["spec"]["containers"]:
            assert container["image"].startswith(f"rayproject/ray:{_ray_pin()}-")
            assert {"name": "runs", "mountPath": "/mnt/runs"} in container["volumeMounts"]
    for group in spec["workerGroupSpecs"]:
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
    claims = {v["persistentVolumeClaim"]["claimName"] for g in groups for v in g["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    storage = _yaml(CLUSTER / "kuberay" / "storage.yaml")
    assert claims == {storage["metadata"]["name"]} and storage["spec"]["accessModes"] == ["ReadWriteMany"]


def test_rayjob_entrypoint_and_runtime_env():
    job = _yaml(CLUSTER / "kuberay" / "rayjob.yaml")["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[0] == "python" and (ROOT / argv[1]).is_file(), f"entrypoint script {argv[1]} missing"
    cwd = Path.cwd()
    try:
        os.chdir(ROOT)  # the job's working directory is the repository root
        cfg, out = parse_job_args("rayjob", argv[2:])
    finally:
        os.chdir(cwd)
    assert out.startswith("/mnt/runs/"), "outputs must go to the shared volume"
    assert cfg == load_config(JOB_CONFIG)
    env = yaml.safe_load(job["runtimeEnvYAML"])
    local = _yaml(CLUSTER / "runtime_env.yaml")
    assert {k: v for k, v in env.items() if k != "working_dir"} == \
        {k: v for k, v in local.items() if k not in ("working_dir", "excludes")}
    assert env["working_dir"].startswith(("https://", "s3://", "gs://")) and env["working_dir"].endswith(".zip")


# --------------------------------------------------------------------------- runtime env


def test_runtime_env_ships_code_but_no_venv_runs_or_weights():
    pathspec = pytest.importorskip("ray._private.thirdparty.pathspec")  # what Ray matches excludes with
    env = _yaml(CLUSTER / "runtime_env.yaml")
    assert env["working_dir"] == "."
    spec = pathspec.PathSpec.from_lines("gitwildmatch", env["excludes"])
    for path in (".venv", ".venv/lib/python3.11/site.py", ".venv-vllm", "runs", "runs/demo/iter_1/prm/x.json",
                 "checkpoints", ".git", "restmcts.egg-info", "restmcts/__pycache__", "model.safetensors", ".hypothesis",
                 "runs/x/traces.parquet"):
        assert spec.match_file(path), f"{path} would be uploaded"
    for path in ("jobs/search.py", "restmcts/config.py", "restmcts/loop/driver.py", "cluster/gsm8k-qwen.yaml",
                 "configs/arith-tiny.yaml", "pyproject.toml", "README.md", ".gitignore"):
        assert not spec.match_file(path), f"{path} would be left out"


def test_runtime_env_pip_is_the_project_dependencies_without_ray():
    project = _pyproject()["project"]
    wanted = [d for d in project["dependencies"] if not d.startswith("ray")] + project["optional-dependencies"]["gpu"]
    packages = _yaml(CLUSTER / "runtime_env.yaml")["pip"]["packages"]
    assert not [p for p in packages if p.split("[")[0].split("=")[0].split(">")[0].strip() == "ray"]
    missing = [d for d in wanted if d not in packages]
    assert not missing, f"cluster/runtime_env.yaml lacks {missing} (pyproject.toml)"


# --------------------------------------------------------------------------- resources vs the job config


def test_job_config_loads_and_names_custom_resources():
    cfg = load_config(JOB_CONFIG)
    assert cfg.servers.resource and cfg.search.worker_resource
    assert cfg.servers.num_gpus > 0 and cfg.learners.num_gpus > 0 and cfg.learners.num_learners > 0
    assert cfg.model.prm.startswith("/mnt/runs/")


@pytest.mark.parametrize("cluster", sorted(CLUSTERS))
def test_node_types_offer_what_the_job_asks(cluster):
    cfg: Config = load_config(JOB_CONFIG)
    types = CLUSTERS[cluster]()
    (head,) = [t for t in types if t.head]
    assert head.get("CPU") == 0, "the head runs the driver and dashboard only"
    advertised = {k for t in types for k in t.resources} - {"CPU", "GPU"}
    assert advertised == {cfg.servers.resource, cfg.search.worker_resource}

    s = cfg.servers
    replicas = s.policy_replicas + s.prm_replicas
    serving = [t for t in types if t.get(s.resource) > 0]
    assert sum(t.get(s.resource) * t.max_nodes for t in serving) >= replicas
    for t in serving:  # each unit of the server resource comes with a replica's GPUs and CPUs
        assert t.get("GPU") >= t.get(s.resource) * s.num_gpus and t.get("CPU") >= t.get(s.resource) * s.num_cpus
        assert t.min_nodes == t.max_nodes, f"{t.name}: a fixed size keeps learner demand off the server nodes"

    sc = cfg.search
    searching = [t for t in types if t.get(sc.worker_resource) > 0]
    assert sum(t.get(sc.worker_resource) * t.max_nodes for t in searching) >= sc.num_workers
    assert sum(t.get(sc.worker_resource) * t.min_nodes for t in searching) >= sc.min_workers
    for t in searching:
        assert t.get("CPU") >= t.get(sc.worker_resource) * sc.worker_cpus and t.get("GPU") == 0

    lc = cfg.learners  # one placement group, PACKed: one node type should hold the whole group
    training = [t for t in types if t not in serving and not t.head
                and t.get("GPU") >= lc.num_learners * lc.num_gpus and t.get("CPU") >= lc.num_learners * lc.num_cpus]
    assert training, f"no {cluster} node type fits {lc.num_learners} learners x {lc.num_gpus} GPU"
    nodes_for_search = math.ceil(sc.num_workers / max(t.get(sc.worker_resource) for t in searching))
    assert nodes_for_search <= sum(t.max_nodes for t in searching)
