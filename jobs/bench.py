"""Benchmark: sequential vs batched search, engine saturation, learner throughput, weight sync (one run).

    python jobs/bench.py --config configs/arith-tiny.yaml --out runs/bench [--sweep 1,8,64,256]
        [--sync-models tiny,smollm2-135m] [key.sub=value ...]

Writes OUT/bench.json (see restmcts/evaluation/bench.py for every field) and prints a short table. Every
figure comes from the same servers, models and question list, so compare ratios, not absolute
times across machines.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from restmcts.cli import parse_job_args  # noqa: E402
from restmcts.evaluation.sync_bench import check_models  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--sweep", default="1,8,64,256", help="trees in flight per point, comma-separated")
    parser.add_argument("--sequential-questions", type=int, default=8)
    parser.add_argument("--engine-rows", type=int, default=512)
    parser.add_argument("--learners", default="1,2", help="learner counts for the learner throughput points")
    parser.add_argument("--sync-models", default="",
                        help="models whose weight sync to time, comma-separated: tiny, smollm2-135m ('' = none)")
    parser.add_argument("--sync-repeats", type=int, default=3)
    known, rest = parser.parse_known_args(argv)
    try:
        sweep = tuple(int(x) for x in known.sweep.split(","))
        learners = tuple(int(x) for x in known.learners.split(",")) if known.learners else ()
    except ValueError:
        parser.error("--sweep and --learners take comma-separated integers, e.g. --sweep 1,8,64,256")
    sync_models = tuple(m for m in known.sync_models.split(",") if m)
    try:
        check_models(sync_models)
    except ValueError as err:
        parser.error(f"--sync-models: {err}")
    if known.sync_repeats < 1:
        parser.error("--sync-repeats: need >= 1")
    cfg, out = parse_job_args(__doc__.splitlines()[0], rest, checkpoints=True)

    from restmcts.actors.runtime import init_ray
    from restmcts.evaluation.bench import run_bench

    init_ray(cfg.ray)
    report = run_bench(cfg, out, sweep=sweep, sequential_questions=known.sequential_questions,
                       engine_rows=known.engine_rows, learner_counts=learners, sync_models=sync_models,
                       sync_repeats=known.sync_repeats)
    print(report.table())
    print(f"\nWrote {out}/bench.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
