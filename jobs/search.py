"""One MCTS* search pass over a task's training questions; writes the replay and a summary.

    python jobs/search.py --config configs/arith-tiny.yaml --out runs/search \
        data.num_questions=16 search.num_workers=2

Starts a local Ray on 127.0.0.1 unless it runs on a cluster (`ray job submit` or RAY_ADDRESS).
Writes OUT/traces.parquet, OUT/values.parquet and OUT/summary.json. Rerunning the same
command after a crash resumes the pass without duplicating rows. With `search.export_trees=N`
it also writes the trees of the first N questions to OUT/trees/<question_id>.json; draw one
with `python -m restmcts.viewer OUT/trees/<question_id>.json -o tree.html`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from restmcts import storage
from restmcts.actors.runtime import init_ray  # noqa: E402
from restmcts.actors.search_pass import run_pass  # noqa: E402
from restmcts.actors.servers import start_servers  # noqa: E402
from restmcts.cli import parse_job_args  # noqa: E402
from restmcts.tasks import task_for  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg, out = parse_job_args(__doc__.splitlines()[0], argv, checkpoints=True)
    task = task_for(cfg)
    questions = task.questions("train", cfg.data.num_questions)
    init_ray(cfg.ray)
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    try:
        summary = run_pass(cfg, servers, questions, cfg.search.settings(), iteration=1, out_dir=out)
        engines = servers.stats()
    finally:
        servers.shutdown()
    report = {**json.loads(summary.to_json()), "servers": {
        role: [{"mean_batch_rows": s.mean_batch_rows, "max_batch_rows": s.max_batch_rows, "batches": s.batches,
                "rows": s.rows, "busy_s": s.busy_s} for s in stats] for role, stats in engines.items()}}
    text = json.dumps(report, indent=2)
    storage.write_text(f"{out}/summary.json", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
