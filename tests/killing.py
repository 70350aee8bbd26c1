"""Real faults for tests: jobs run as subprocesses and killed with SIGKILL at observed moments.

    proc = start_job(tmp_path / "job.log", "jobs/search.py", "--out", out, ...)
    wait_for(lambda: any(shards.glob("*.done.json")), proc, "a chunk's done marker")
    kill_job(proc)                 # SIGKILL to the job's whole session; asserts it died of it

A job runs in its own session (its local Ray's processes with it), its output goes to a log
file (a pipe nobody reads would block it). `wait_for` polls for an event with a deadline: the
deadline only bounds how long a missing event takes to fail the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_job(log: Path, script: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)  # a local Ray of its own, as `python jobs/...` on a laptop
    out = open(log, "ab")  # noqa: SIM115  (closed with the process: see finish)
    proc = subprocess.Popen([sys.executable, script, *map(str, args)], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log  # type: ignore[attr-defined]
    out.close()
    return proc


def finish(proc: subprocess.Popen, timeout: float = 900) -> int:
    """Wait for a job to end by itself; its log's tail in the message when it failed."""
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        _reap(proc)
    assert rc == 0, f"job failed ({rc}):\n" + Path(proc.log).read_text()[-4000:]  # type: ignore[attr-defined]
    return rc


def wait_for(event: Callable[[], bool], proc: subprocess.Popen, what: str, deadline_s: float = 600) -> None:
    """Poll until `event()` holds; fail if the job ends first or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while not event():
        if proc.poll() is not None:
            raise AssertionError(f"the job ended ({proc.returncode}) before {what}:\n"
                                 + Path(proc.log).read_text()[-3000:])  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            kill_job(proc)
            raise AssertionError(f"no {what} within {deadline_s:.0f}s")
        time.sleep(0.02)


def kill_job(proc: subprocess.Popen) -> None:
    """SIGKILL the job and every process of its session (its local Ray); assert the job died of it."""
    os.killpg(proc.pid, signal.SIGKILL)
    rc = proc.wait(timeout=60)
    _reap(proc)
    assert rc == -signal.SIGKILL, f"the job ended with {rc} before the kill landed"


def _reap(proc: subprocess.Popen) -> None:
    """Make sure nothing of the job's session outlives it (its Ray processes)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def session_processes(sid: int, needle: str) -> list[int]:
    """Pids of processes in session `sid` whose command line contains `needle`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != sid:
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ProcessLookupError):
            continue
        if needle in cmdline:
            found.append(int(entry))
    return found


IN_CLOSE_NOWRITE, IN_CREATE, IN_MOVED_TO = 0x10, 0x100, 0x80


class Watch:
    """inotify on one folder: `wait(prefix)` returns the name of the first entry whose name starts
    with `prefix` and that is created (or, with `closed=True`, closed after reading) from now on."""

    def __init__(self, folder: Path, closed: bool = False):
        import ctypes

        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK)
        mask = IN_CLOSE_NOWRITE if closed else IN_CREATE | IN_MOVED_TO
        if self.fd < 0 or self._libc.inotify_add_watch(self.fd, str(folder).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {folder}")

    def wait(self, prefix: str, proc_alive: Callable[[], bool], deadline_s: float = 600) -> str:
        import select
        import struct

        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if not poller.poll(100):
                assert proc_alive(), f"the process ended before an entry {prefix}* appeared"
                continue
            data = os.read(self.fd, 65536)
            while data:
                _, _, _, size = struct.unpack_from("iIII", data)
                name = data[16:16 + size].rstrip(b"\0").decode()
                data = data[16 + size:]
                if name.startswith(prefix):
                    return name
        raise AssertionError(f"no entry {prefix}* within {deadline_s:.0f}s")

    def close(self) -> None:
        os.close(self.fd)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def actor_pid(handle, deadline_s: float = 300) -> int:
    """The pid of a Ray actor's process; while the actor restarts (calls fail as unavailable) keep
    asking until it answers."""
    import ray

    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return ray.get(handle.__ray_call__.remote(lambda self: os.getpid()))
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def kill_actor(handle) -> tuple[int, int]:
    """SIGKILL a restartable actor's process and wait until Ray has restarted it: (old, new) pid."""
    old = actor_pid(handle)
    os.kill(old, signal.SIGKILL)
    new = actor_pid(handle)
    assert new != old, "a new process serves the actor"
    return old, new
