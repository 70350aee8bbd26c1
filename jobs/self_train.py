"""ReST-MCTS* self-training (Algorithm 1): the project's main job.

    python jobs/self_train.py --config configs/arith-tiny.yaml --out runs/demo [key.sub=value ...]

Each iteration searches with MCTS*, extracts verified traces and inferred values, trains the
PRM and the policy with DeepSpeed learners, pushes the new weights into the live servers and
evaluates on the held-out split. Rerunning the same command resumes at the first unfinished
phase; a finished run does nothing. Writes OUT/iter_<i>/..., OUT/metrics.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from restmcts.cli import parse_job_args  # noqa: E402
from restmcts.loop import self_train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg, out = parse_job_args(__doc__.splitlines()[0], argv, checkpoints=True)
    records = self_train(cfg, out)
    print(f"\nOutputs in {out}/ (metrics.jsonl, iter_<i>/...). Held-out accuracy per iteration:")
    for r in (r for r in records if r.phase == "evaluate"):
        independent = r.stats.heldout_accuracy
        extra = f"  (independent check {independent:.3f})" if independent is not None else ""
        print(f"  iteration {r.iteration}: {r.stats.accuracy:.3f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
