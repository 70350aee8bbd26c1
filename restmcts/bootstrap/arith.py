"""Building the embedded default from nothing: a tiny policy and an initial PRM on arith.

    report = run_bootstrap(cfg, "runs/bootstrap")   # writes policy/, prm/, sft.parquet, values.parquet, bootstrap.json

Four timed phases, all seeded from `cfg.bootstrap.seed`, on the project's own engines and learners
run in this process (restmcts/bootstrap/inprocess.py says how each `bootstrap.*` key maps onto them):
1. sft        a random tiny Llama (tiny.py) learns to write arith solutions: the task's own
              step-by-step solutions become replay rows (OUT/sft.parquet, `correct` True, strategy
              "reference") and the policy learner fine-tunes on them, loss on the solution tokens
              and the closing EOS only. The embedded default teaches it easy questions (2 and 3
              operations) and shows it only 30 of the 4-operation kind the loop searches and the
              test asks (`bootstrap.max_ops`, `longer_examples`): it starts right about 4 times in
              10 on those, wrong through slips on the longer chains, and self-training has to close
              the gap from its own verified searches.
2. mc_labels  Math-Shepherd-style value labels for `D_V0` (ALGORITHM.md, Self-training) from the
              SFT'd policy, one row per prefix in OUT/values.parquet (restmcts/bootstrap/labels.py,
              shared with jobs/prepare_model.py).
3. train_prm  the PRM learner regresses those labels with MSE: the SFT'd backbone with a fresh
              one-label head, read through a sigmoid.
4. evaluate   what the self-training loop starts from, measured on the test split through the
              search core's chains (restmcts.search.baselines): greedy accuracy (one chain at
              temperature 0, as `cot`) with its first errors by kind, `eval_samples` chains at
              `temperature` for sample accuracy and pass@k, the PRM's value of every prefix of those
              samples for per-step AUROC against the ground-truth `arith.step_labels`, and PRM
              best-of-k accuracy (the sample with the highest minimum prefix value).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from restmcts import replay
from restmcts.bootstrap.inprocess import (
    chain_settings,
    concurrently,
    in_process_client,
    num_params,
    tail_mean,
    timed,
    train,
)
from restmcts.bootstrap.labels import monte_carlo_values
from restmcts.bootstrap.tiny import build_arith_tokenizer, build_tiny_models
from restmcts.checkpoints import save
from restmcts.config import Config, ConfigError, SearchSettings
from restmcts.evaluation.stats import auroc
from restmcts.prompt import PromptFormat
from restmcts.replay import Trace
from restmcts.search import derive_seed
from restmcts.search.baselines import Chain, highest_value, sample_chain, sample_chains
from restmcts.search.calls import Calls
from restmcts.storage import write_text
from restmcts.tasks import Question
from restmcts.tasks.arith import ArithTask, Problem, error_kinds, step_labels

if TYPE_CHECKING:
    from restmcts.actors.client import ModelClient

SFT_FILE = "sft.parquet"  # the policy's SFT rows (replay Traces)
VALUES_FILE = "values.parquet"  # the PRM's Monte Carlo labels (replay ValueRecords)


@dataclass
class BootstrapReport:
    """What bootstrap.json holds: how the models were built and how good they start."""

    seed: int
    threads: int
    params: dict[str, int]  # policy / prm parameter counts
    timings_s: dict[str, float] = field(default_factory=dict)  # phase -> seconds (saving included), and "total"
    sft_examples: int = 0
    sft_ops: dict[str, int] = field(default_factory=dict)  # SFT examples by number of operations
    sft_final_loss: float = 0.0  # mean of the last 20 steps (per solution token)
    prm_questions: int = 0
    prm_samples: int = 0  # labelled prefixes
    prm_mean_label: float = 0.0
    prm_final_loss: float = 0.0  # MSE, mean of the last 20 steps
    test_questions: int = 0
    greedy_accuracy: float = 0.0  # iteration-0 CoT accuracy on the whole test split
    greedy_accuracy_num_test: float = 0.0  # on the first data.num_test (what the loop evaluates)
    greedy_errors: dict[str, int] = field(default_factory=dict)  # first wrong step of wrong answers, by kind
    temperature: float = 0.0
    k: int = 0
    sample_accuracy: float = 0.0  # mean accuracy of single temperature samples
    pass_at_k: float = 0.0  # some sample of k is right
    prm_best_of_k_accuracy: float = 0.0  # the sample with the highest min-step PRM value is right
    prm_auroc: float = 0.0  # per-step PRM value vs arith.step_labels on the test samples
    prm_eval_steps: int = 0
    prm_eval_positive: float = 0.0  # fraction of evaluated steps that are right

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)


# --------------------------------------------------------------------------- the job


def run_bootstrap(cfg: Config, out: str | Path) -> BootstrapReport:
    """Build, train, evaluate and save the embedded default's policy and PRM under `out`."""
    import torch

    if cfg.data.task != "arith":
        raise ValueError(f"data.task: bootstrap builds the arith default only; got {cfg.data.task!r}")
    b, out = cfg.bootstrap, Path(out)
    task = ArithTask(cfg.data, seed=cfg.loop.seed)
    sft_problems, mc_problems = bootstrap_problems(cfg, task.problems("train"))
    tok = build_arith_tokenizer()
    fmt = PromptFormat.from_config(cfg.data)
    policy, prm = build_tiny_models(tok, seed=b.seed, hidden_size=b.hidden_size, num_layers=b.num_layers,
                                    num_heads=b.num_heads, max_position=b.max_position)
    report = BootstrapReport(seed=b.seed, threads=torch.get_num_threads(),
                             params={"policy": num_params(policy), "prm": num_params(prm)})
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    with timed(report.timings_s, "sft", "bootstrap"):
        replay.write_records(sft_traces(sft_problems), Trace, str(out / SFT_FILE))
        with tempfile.TemporaryDirectory(dir=out, prefix=".init-") as init:  # the random weights the SFT starts from
            save(policy, tok, init)
            result = train(cfg, "policy", init, str(out / SFT_FILE), str(out / "policy"), rows=len(sft_problems))
        report.sft_examples, report.sft_final_loss = len(sft_problems), tail_mean(result)
        report.sft_ops = {str(n): sum(len(p.ops) == n for p in sft_problems)
                          for n in sorted({len(p.ops) for p in sft_problems})}
    with timed(report.timings_s, "mc_labels", "bootstrap"):
        questions = [Question(f"bootstrap-mc-{i}", p.text, str(p.answer)) for i, p in enumerate(mc_problems)]
        records = monte_carlo_values(cfg, fmt, task, questions, out / "policy", out / VALUES_FILE)
        report.prm_questions, report.prm_samples = len(mc_problems), len(records)
        report.prm_mean_label = sum(r.value for r in records) / max(1, len(records))
    with timed(report.timings_s, "train_prm", "bootstrap"):  # the SFT'd backbone, a fresh value head
        result = train(cfg, "prm", str(out / "policy"), str(out / VALUES_FILE), str(out / "prm"), rows=len(records))
        report.prm_final_loss = tail_mean(result)
    with timed(report.timings_s, "evaluate", "bootstrap"):
        evaluate(report, cfg, fmt, task, task.problems("test"), out)
    report.timings_s["total"] = round(time.perf_counter() - start, 2)
    write_text(str(out / "bootstrap.json"), report.to_json() + "\n")  # atomic: a kill leaves no half file
    return report


def bootstrap_problems(cfg: Config, train: Sequence[Problem]) -> tuple[list[Problem], list[Problem]]:
    """(SFT problems, Monte Carlo label problems): disjoint, and never a test or early search question.

    They come from the end of the train split `train`, or with `bootstrap.max_ops` from the
    bootstrap's own easier questions plus `bootstrap.longer_examples` from the end of `train`.
    """
    b = cfg.bootstrap
    if not b.max_ops:
        return split_train(train, b.sft_examples, b.prm_questions, "the train split")
    if b.max_ops >= cfg.data.arith_min_ops:
        raise ConfigError(f"bootstrap.max_ops: must be below data.arith_min_ops ({cfg.data.arith_min_ops}) "
                          f"so that no bootstrap question is also a search question; lower it, raise "
                          f"data.arith_min_ops, or set bootstrap.max_ops=0 to learn from the train split")
    easy = own_problems(cfg)
    longer = split_train(train, b.longer_examples, 0, "the train split")[0] if b.longer_examples else []
    sft, mc = split_train(easy, b.sft_examples - len(longer), b.prm_questions,
                          f"the bootstrap's {b.min_ops}..{b.max_ops}-operation questions")
    return sft + longer, mc


def own_problems(cfg: Config) -> list[Problem]:
    """The bootstrap's own easier questions (`bootstrap.min_ops`..`max_ops`; none when max_ops is 0).
    Evaluation excludes them from its held-out splits."""
    b = cfg.bootstrap
    if not b.max_ops:
        return []
    easy_data = dataclasses.replace(cfg.data, arith_min_ops=b.min_ops, arith_max_ops=b.max_ops,
                                    arith_train_size=b.sft_examples + b.prm_questions)
    return ArithTask(easy_data, seed=cfg.loop.seed).problems("train")


def split_train(pool: Sequence[Problem], sft_examples: int, prm_questions: int,
                name: str) -> tuple[list[Problem], list[Problem]]:
    """The last `sft_examples` of `pool` and the `prm_questions` before them."""
    need = sft_examples + prm_questions
    if need > len(pool):
        raise ValueError(
            f"bootstrap: needs {need} questions from {name}, which has {len(pool)}; raise data.arith_train_size "
            f"or lower bootstrap.sft_examples, bootstrap.prm_questions or bootstrap.longer_examples"
        )
    sft = list(pool[len(pool) - sft_examples:]) if sft_examples else []
    mc = list(pool[len(pool) - need: len(pool) - sft_examples])
    return sft, mc


# --------------------------------------------------------------------------- policy SFT


def sft_traces(problems: Sequence[Problem]) -> list[Trace]:
    """The task's own solutions as replay rows the policy learner trains on (all correct)."""
    return [Trace(f"bootstrap-sft-{i}", p.text, tuple(p.solution()), str(p.answer), True, 0, "reference", 0,
                  chosen=True) for i, p in enumerate(problems)]


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class _Tested:
    """One test question through the starting models."""

    greedy: Chain
    samples: list[Chain]
    values: list[list[float]]  # per sample: the PRM's value of each of its prefixes


def evaluate(report: BootstrapReport, cfg: Config, fmt: PromptFormat, task: ArithTask,
             problems: Sequence[Problem], out: Path) -> None:
    """Fill the report's accuracy and PRM-quality fields from the test split, with the policy
    and PRM saved under `out`."""
    b, k = cfg.bootstrap, cfg.bootstrap.eval_samples
    settings = chain_settings(cfg)
    seed = derive_seed(b.seed, "evaluate")
    with in_process_client(cfg, fmt, str(out / "policy"), prm=str(out / "prm")) as client:
        work = [_test(client, task, p, settings, derive_seed(seed, i)) for i, p in enumerate(problems)]
        tested = asyncio.run(concurrently(work, "bootstrap evaluate", "questions"))

    right = [task.check(t.greedy.answer, str(p.answer)) for p, t in zip(problems, tested, strict=True)]
    n_test = cfg.data.num_test or len(problems)
    report.test_questions = len(problems)
    report.greedy_accuracy = _mean(right)
    report.greedy_accuracy_num_test = _mean(right[:n_test])
    report.greedy_errors = error_kinds([(p, t.greedy.steps) for p, t, r in zip(problems, tested, right, strict=True)
                                        if not r])

    sample_right = [[task.check(c.answer, str(p.answer)) for c in t.samples] for p, t in zip(problems, tested, strict=True)]
    best = [highest_value([(j, min(v, default=0.0)) for j, v in enumerate(t.values)]) for t in tested]
    scores = [v for t in tested for values in t.values for v in values]
    labels = [ok for p, t in zip(problems, tested, strict=True) for c in t.samples for ok in step_labels(p, c.steps)]
    report.temperature, report.k = b.temperature, k
    report.sample_accuracy = _mean([r for rs in sample_right for r in rs])
    report.pass_at_k = _mean([any(rs) for rs in sample_right])
    report.prm_best_of_k_accuracy = _mean([rs[j] for rs, j in zip(sample_right, best, strict=True)])
    report.prm_auroc = round(auroc(scores, labels), 4)
    report.prm_eval_steps = len(labels)
    report.prm_eval_positive = _mean(labels)


async def _test(client: ModelClient, task: ArithTask, p: Problem, settings: SearchSettings, seed: int) -> _Tested:
    """A greedy chain and `settings.num_samples` sampled chains for `p`, each sample's prefixes scored."""
    models, answers = client.for_question(task)
    calls = Calls(models, p.text)
    greedy, samples = await asyncio.gather(sample_chain(calls, answers, settings, derive_seed(seed, "cot"), 0.0),
                                           sample_chains(calls, answers, settings, derive_seed(seed, "samples")))
    values = await asyncio.gather(*(calls.score([c.steps[:j] for j in range(1, len(c.steps) + 1)]) for c in samples))
    return _Tested(greedy, samples, list(values))


def _mean(xs: Sequence[float | bool]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0
