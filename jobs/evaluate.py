"""Evaluate strategies, self-training runs and PRMs side by side; write a report with plots.

    python jobs/evaluate.py --config configs/arith-tiny.yaml --out runs/eval \
        'eval.self_train_runs=[runs/rest_mcts, runs/rest_em]'

Runs CoT, Self-Consistency, PRM Best-of-N, PRM-weighted SC, ToT and MCTS* at the budgets in
`eval:` over `eval.num_test` held-out questions per difficulty (`eval.difficulties`) against one
set of inference servers (SC and both PRM-guided votes from one set of `eval.max_samples` samples
per question); repeats MCTS* and the sampling baselines with the models of `eval.curve_iterations`
of the first ReST-MCTS* run in `eval.self_train_runs`; compares those runs (grouped by algorithm,
mean and range over seeds); trains a PRM on MCTS*-inferred values and one on Monte Carlo labels at
the same token budget and judges both. Every accuracy gets a 95% bootstrap interval and every
claim a paired test. Writes OUT/results.csv, OUT/accuracy_vs_tokens.png, OUT/self_training.png,
OUT/prm_quality.csv and OUT/report.md. A rerun reuses finished parts.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from restmcts.cli import parse_job_args  # noqa: E402
from restmcts.evaluation.driver import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    cfg, out = parse_job_args(__doc__.splitlines()[0], args, checkpoints=True)
    command = shlex.join(["python", "jobs/evaluate.py", *args])
    report = evaluate(cfg, out, command)
    claims = report.split("## Claims", 1)[1].split("##", 1)[0].strip()
    print(f"\n{claims}\n\nReport: {out}/report.md (results.csv, accuracy_vs_tokens.png, self_training.png, "
          f"prm_quality.csv)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
