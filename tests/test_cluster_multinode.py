"""A three-node Ray cluster on one machine, all on 127.0.0.1, and jobs sent to it with `ray job submit`.

    head    `ray start --head`       CPU 2, restmcts_server 2   servers (servers.resource), job drivers
    search  `ray start --address`    CPU 0, restmcts_search 2   search workers (search.worker_resource)
    train   `ray start --address`    CPU 1                      learners: the one CPU the servers leave

Jobs run with cluster/runtime_env.yaml (its working_dir and excludes; `pip` is left out, there is
no network). The search job asks for 4 workers where 2 fit: the pass runs on 2 and the other 2 stay
a pending demand that the autoscaler would add a node for. While it runs, the head's Prometheus
endpoint (--metrics-export-port) serves `ray_restmcts_*` series.

Two things of Ray's shape the setup. Its loopback guard (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which
keeps every process on 127.0.0.1) also makes `ray start --address` refuse to join a cluster, and
with the guard off Ray rewrites 127.0.0.1 to the machine's address and listens on every interface.
So the joining nodes run the same `ray start` command with only the CLI's refusal lifted (LIFT).
And `ray stop` would stop every Ray on the machine; teardown stops only this cluster's processes:
each `ray start` gets its own session, and every process of a node stays in that session.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LIFT = ("import sys, types; from ray._private import ray_constants as c; from ray.scripts import scripts; "
        "m = types.ModuleType('ray_constants'); m.__dict__.update(vars(c)); m.ENABLE_RAY_CLUSTER = True; "
        "scripts.ray_constants = m; sys.argv[0] = 'ray'; sys.exit(scripts.main())")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


class LocalCluster:
    """Ray nodes started with `ray start` on loopback, each with its own temp dir and ports."""

    def __init__(self, root: str):
        self.root = root
        self.sessions: list[int] = []  # pid of each `ray start` = the session id of its node's processes
        self.metrics: dict[str, int] = {}  # node name -> metrics export port
        self.gcs_port = _free_port()
        self.dashboard_port = _free_port()
        self.env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled",
                    "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false",
                    "RAY_metrics_report_interval_ms": "1000",  # export every second, not every ten
                    "AUTOSCALER_UPDATE_INTERVAL_S": "1",  # the head refreshes pending demand every second
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # `python` in a job = this venv
        self.env.pop("RAY_ADDRESS", None)

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start(self, name: str, num_cpus: int, resources: dict[str, float]) -> None:
        head = not self.sessions
        self.metrics[name] = _free_port()
        args = ["start", "--node-ip-address=127.0.0.1", f"--temp-dir={self.root}/{name}",
                f"--num-cpus={num_cpus}", f"--resources={json.dumps(resources)}",
                f"--metrics-export-port={self.metrics[name]}", f"--dashboard-agent-listen-port={_free_port()}"]
        if head:
            cmd = [str(BIN / "ray"), *args, "--head", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1",
                   f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={_free_port()}"]
        else:
            cmd = [sys.executable, "-c", LIFT, *args, f"--address=127.0.0.1:{self.gcs_port}"]
        proc = subprocess.Popen(cmd, env=self.env, start_new_session=True, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.sessions.append(proc.pid)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"ray start ({name}) failed:\n{out[-3000:]}"

    def node_ids(self) -> dict[str, str]:
        """node name -> Ray node id, told apart by the resources each node was given."""
        from ray.util.state import list_nodes

        deadline = time.time() + 60
        while True:
            nodes = [n for n in list_nodes(address=self.dashboard) if n.state == "ALIVE"]
            if len(nodes) == len(self.sessions) or time.time() > deadline:
                break
            time.sleep(0.5)
        names = {}
        for n in nodes:
            r = n.resources_total
            names["head" if n.is_head_node else "search" if "restmcts_search" in r else "train"] = n.node_id
        return names

    def submit(self, entrypoint: list[str], log: Path, timeout: float = 240, watch=None) -> tuple[int, str]:
        """`ray job submit` with cluster/runtime_env.yaml (minus pip), from the repository root;
        calls `watch()` every half second while the command runs. The submission id is log's stem."""
        env_file = log.with_suffix(".runtime_env.yaml")
        runtime_env = yaml.safe_load((ROOT / "cluster" / "runtime_env.yaml").read_text())
        runtime_env.pop("pip")
        env_file.write_text(yaml.safe_dump(runtime_env))
        cmd = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard, "--runtime-env", str(env_file),
               "--submission-id", log.stem, "--", *entrypoint]
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            deadline = time.time() + timeout
            while proc.poll() is None and time.time() < deadline:
                if watch is not None:
                    try:
                        watch()
                    except OSError:  # an endpoint not up yet; try again
                        pass
                time.sleep(0.5)
            if proc.poll() is None:
                proc.kill()
        return proc.wait(), log.read_text()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, every process of this cluster's sessions (and their children).
        The GCS server outlives SIGTERM for a long while; three seconds is its grace."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self._processes():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + 3
            while self._processes() and time.time() < deadline:
                time.sleep(0.2)

    def _processes(self) -> set[int]:
        table = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                if fields[0] != "Z":
                    table[int(entry)] = (int(fields[1]), int(fields[3]))  # ppid, session id
        found = {pid for pid, (_, sid) in table.items() if sid in self.sessions}
        while True:
            children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
            if not children:
                return found
            found |= children


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(tempfile.mkdtemp(prefix="rmc-"))  # short: Ray's socket paths must stay < 108 bytes
    try:
        c.start("head", 2, {"restmcts_server": 2})
        c.start("search", 0, {"restmcts_search": 2})
        c.start("train", 1, {})
        c.nodes = c.node_ids()
        assert set(c.nodes) == {"head", "search", "train"}
        yield c
    finally:
        c.stop()


def _placement(c: LocalCluster, submission_id: str) -> dict[str, list[str]]:
    """actor class -> sorted node names its actors of that job ran on ("" for never placed)."""
    from ray.job_submission import JobSubmissionClient
    from ray.util.state import list_actors

    job_id = JobSubmissionClient(c.dashboard).get_job_info(submission_id).job_id
    names = {node_id: name for name, node_id in c.nodes.items()}
    out: dict[str, list[str]] = {}
    for a in list_actors(address=c.dashboard, filters=[("job_id", "=", job_id)], detail=True, limit=10_000):
        out.setdefault(a.class_name, []).append(names.get(a.node_id, "") if a.node_id else "")
    return {k: sorted(v) for k, v in out.items()}


SMALL = ["data.arith_min_ops=1", "data.arith_max_ops=2", "search.max_step_tokens=6", "search.max_depth=3",
         "search.worker_cpus=0", "search.worker_resource=restmcts_search", "servers.resource=restmcts_server"]


def test_search_job_through_ray_job_submit(cluster, tiny_ckpt, tmp_path):
    """The done-when of cluster operations: the job succeeds, the head exports restmcts_ series
    while it runs, the workers that do not fit are a visible pending demand, roles sit on their nodes."""
    out = tmp_path / "search"
    args = ["--out", f"file://{out}", f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm",
            "data.num_questions=32", "search.num_simulations=8", "search.num_workers=4", "search.min_workers=1",
            "search.trees_per_worker=4", *SMALL]
    seen: dict[str, str] = {}
    head_metrics = f"http://127.0.0.1:{cluster.metrics['head']}"

    def watch():
        if "metrics" not in seen:
            text = _get(head_metrics)
            if "ray_restmcts_" in text:
                seen["metrics"] = text
        if "demand" not in seen:
            status = json.loads(_get(f"{cluster.dashboard}/api/cluster_status?format=1"))["data"]["clusterStatus"]
            demand = status.split("Pending Demands:")[1]
            if "restmcts_search" in demand:
                seen["demand"] = demand

    # `test ! -e .venv`: the runtime env's excludes kept the virtualenv out of the upload
    rc, log = cluster.submit(["bash", "-c", "test ! -e .venv && python jobs/search.py " + " ".join(args)],
                             tmp_path / "restmcts-search.log", watch=watch)
    assert rc == 0, log[-4000:]
    assert "succeeded" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 32 and summary["retries"] == 0
    assert (out / "traces.parquet").exists() and (out / "values.parquet").exists()
    assert "workers 2/4" in log, "two workers fit the search node"

    assert "metrics" in seen, "no ray_restmcts_ series on the head's metrics endpoint while the job ran"
    assert "ray_restmcts_server_batch_size" in seen["metrics"]  # the servers run on the head
    assert "demand" in seen, "the two workers that did not fit were not a pending demand"
    assert "ray_restmcts_questions_done_total" not in seen["metrics"], "search counters are the search node's"
    deadline = time.time() + 20  # cluster/metrics_logger.py sums every node's endpoint
    while True:
        logged = subprocess.run([sys.executable, "cluster/metrics_logger.py", "--dashboard", cluster.dashboard,
                                 "--once", "--print"], cwd=ROOT, capture_output=True, text=True, check=True)
        values = json.loads(logged.stdout or "{}")
        if values.get("restmcts_questions_done") == 32 or time.time() > deadline:
            break
        time.sleep(1)
    assert values.get("restmcts_questions_done") == 32, values
    assert values["restmcts_tokens_generated"] == summary["tokens"]
    assert values["restmcts_prm_calls"] == summary["prm_calls"]
    assert 1 <= values["restmcts_server_batch_size/server=policy-0"] <= 64

    placed = _placement(cluster, "restmcts-search")
    assert set(placed["PolicyServer"]) == set(placed["PRMServer"]) == {"head"}
    assert placed["SearchWorker"] == ["", "", "search", "search"]


def test_self_train_job_puts_learners_on_their_own_node(cluster, tiny_ckpt, tmp_path):
    out = tmp_path / "run"
    args = ["--out", str(out), f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm",
            "loop.iterations=1", "data.num_questions=6", "data.num_test=4", "search.num_simulations=4",
            "search.num_workers=2", "search.trees_per_worker=4", "learners.num_learners=1", "learners.num_cpus=1",
            "learners.policy_epochs=1", "learners.prm_epochs=1", *SMALL]
    rc, log = cluster.submit(["python", "jobs/self_train.py", *args], tmp_path / "restmcts-self-train.log")
    assert rc == 0, log[-4000:]
    phases = [json.loads(line)["phase"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["evaluate", "search", "extract", "train_prm", "train_policy", "sync", "evaluate"]
    assert (out / "iter_1" / "policy" / "config.json").exists() and (out / "iter_1" / "prm" / "config.json").exists()

    placed = _placement(cluster, "restmcts-self-train")
    assert placed["LearnerActor"] == ["train", "train"]  # one PRM learner, then one policy learner
    assert set(placed["PolicyServer"]) == set(placed["PRMServer"]) == {"head"}
    assert set(placed["SearchWorker"]) - {""} == {"search"}


def test_search_job_survives_a_killed_worker(cluster, tiny_ckpt, tmp_path):
    """SIGKILL one of the job's two search workers mid-pass: every question lands once, the retry is counted."""
    from ray.util.state import list_actors

    from restmcts import replay

    out = tmp_path / "search"
    args = ["--out", str(out), f"model.policy={tiny_ckpt}/policy", f"model.prm={tiny_ckpt}/prm",
            "data.num_questions=32", "search.num_simulations=8", "search.num_workers=2", "search.min_workers=2",
            "search.trees_per_worker=4", *SMALL]
    killed: list[int] = []

    def watch():
        shards = out / ".shards-traces"
        done = [f for f in os.listdir(shards) if f.endswith(".done.json")] if shards.exists() else []
        if killed or len(done) < 2:
            return
        workers = list_actors(address=cluster.dashboard, detail=True, filters=[
            ("class_name", "=", "SearchWorker"), ("state", "=", "ALIVE")])
        if workers:
            killed.append(int(workers[0].pid))
            os.kill(killed[0], signal.SIGKILL)  # every node runs on this machine

    rc, log = cluster.submit(["python", "jobs/search.py", *args], tmp_path / "restmcts-search-kill.log", watch=watch)
    assert rc == 0, log[-4000:]
    assert killed, "the pass ended before a worker could be killed"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 32 and summary["retries"] >= 1
    traces = replay.read_traces(str(out / "traces.parquet"))
    values = replay.read_values(str(out / "values.parquet"))
    assert len({t.question_id for t in traces}) == 32
    assert len({(v.question_id, v.steps) for v in values}) == len(values), "no duplicate value rows"
    per_question = {}
    for t in traces:
        per_question.setdefault(t.question_id, []).append(t.steps)
    assert all(len(s) == len(set(s)) for s in per_question.values()), "no duplicate traces"
