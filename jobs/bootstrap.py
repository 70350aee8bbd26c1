"""Build the embedded default from nothing: a tiny arith policy and its initial PRM, on CPU, offline.

    python jobs/bootstrap.py --config configs/arith-tiny.yaml --out runs/bootstrap [key.sub=value ...]

Writes OUT/policy/ and OUT/prm/ (Hugging Face folders: safetensors + tokenizer, loadable with
AutoModelForCausalLM / AutoModelForSequenceClassification), what they learned from as replay
files (OUT/sft.parquet: the SFT examples; OUT/values.parquet: the PRM's Monte Carlo labels) and
OUT/bootstrap.json (timings, parameter counts, iteration-0 accuracy, PRM AUROC). Generation,
scoring and training run on the project's engines and learners in this process
(restmcts/bootstrap/). The same config and seed give the same weights.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from restmcts.cli import parse_job_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    cfg, out = parse_job_args(__doc__.splitlines()[0], argv)
    import torch

    from restmcts.bootstrap.arith import run_bootstrap

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    r = run_bootstrap(cfg, out)
    print(f"\nWrote {out}/policy, {out}/prm, {out}/sft.parquet, {out}/values.parquet, {out}/bootstrap.json "
          f"in {r.timings_s['total']:.0f}s "
          f"({r.threads} threads)")
    print(f"  params          policy {r.params['policy']:,}  prm {r.params['prm']:,}")
    print(f"  SFT             {r.sft_examples} examples (by operations {r.sft_ops}), "
          f"final loss {r.sft_final_loss:.4f}")
    print(f"  PRM data        {r.prm_samples} prefixes from {r.prm_questions} questions, "
          f"mean label {r.prm_mean_label:.3f}, final MSE {r.prm_final_loss:.4f}")
    print(f"  greedy accuracy {r.greedy_accuracy:.3f} on {r.test_questions} test questions "
          f"(first errors: {r.greedy_errors})")
    print(f"  T={r.temperature}        sample accuracy {r.sample_accuracy:.3f}, pass@{r.k} {r.pass_at_k:.3f}, "
          f"PRM best-of-{r.k} {r.prm_best_of_k_accuracy:.3f}")
    print(f"  PRM AUROC       {r.prm_auroc:.3f} over {r.prm_eval_steps} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
