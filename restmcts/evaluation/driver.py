"""The evaluation run: one set of inference servers, every comparison, one report.

    text = evaluate(cfg, "runs/eval", command="python jobs/evaluate.py ...")

Order: read the self-training runs named in `eval.self_train_runs` (so a wrong path fails before
any search), start the servers on `model.policy` / `model.prm`, run the equal-budget grid on the
held-out split, then the PRM-quality comparison (`eval.prm_quality`), then write the report.
Every stage keeps its outputs under DIR, so a rerun after a crash picks up where it stopped.
"""

from __future__ import annotations

import sys
import time

from restmcts.actors.runtime import init_ray
from restmcts.actors.servers import start_servers
from restmcts.config import Config
from restmcts.evaluation.grid import run_grid
from restmcts.evaluation.prm_quality import run_prm_quality
from restmcts.evaluation.report import write_report
from restmcts.evaluation.runs import read_run
from restmcts.tasks import make_task


def evaluate(cfg: Config, out: str, command: str) -> str:
    start = time.time()
    task = make_task(cfg.data, seed=cfg.loop.seed)
    test = task.questions("test", cfg.data.num_test)
    labels = getattr(task, "step_labels", None)
    runs = [read_run(path, labels) for path in cfg.eval.self_train_runs]
    init_ray(cfg.ray)
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    try:
        print(f"[evaluate] equal-budget grid on {len(test)} held-out questions", file=sys.stderr)
        grid = run_grid(cfg, servers, test, out)
        prm = None
        if cfg.eval.prm_quality:
            print("[evaluate] PRM quality: MCTS* values against Monte Carlo labels", file=sys.stderr)
            train = task.questions("train")
            prm = run_prm_quality(cfg, servers, task, train, test, out)
    finally:
        servers.shutdown()
    return write_report(out, cfg, grid, runs, prm, command, time.time() - start)
