"""Config loading: the shipped YAML, dotted overrides, and errors that say what to change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from restmcts.config import Config, ConfigError, from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "arith-tiny.yaml"


def test_arith_tiny_loads_every_key_it_sets():
    cfg = load_config(TINY)
    assert cfg.data.task == "arith"
    for section, values in yaml.safe_load(TINY.read_text()).items():
        for key, value in values.items():
            assert getattr(getattr(cfg, section), key) == value, f"{section}.{key}"


def test_no_path_gives_defaults_and_round_trips():
    cfg = load_config(None)
    assert cfg == Config()
    assert from_dict(cfg.to_dict()) == cfg


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        load_config(None).search.branch = 5  # type: ignore[misc]


def test_dotted_overrides():
    cfg = load_config(TINY, ["search.num_simulations=32", "data.task=gsm8k", "search.early_stop=true",
                             "data.system_prompt=a=b", "ray.address=", "servers.max_wait_ms=2"])
    assert cfg.search.num_simulations == 32
    assert cfg.data.task == "gsm8k"
    assert cfg.search.early_stop is True
    assert cfg.data.system_prompt == "a=b"
    assert cfg.ray.address == ""
    assert cfg.servers.max_wait_ms == 2.0 and isinstance(cfg.servers.max_wait_ms, float)
    assert cfg.search.branch == load_config(TINY).search.branch  # untouched keys keep the file's value


def test_replace_applies_overrides_to_a_loaded_config():
    cfg = load_config(TINY).replace("search.branch=5")
    assert cfg.search.branch == 5 and cfg.data.task == "arith"


@pytest.mark.parametrize("text", ["1e-3", "1E-3", "1.0e-3", "0.001", ".001"])
def test_float_spellings(text):
    # YAML 1.1 reads "1e-3" (no dot) as a string; a float field still takes it.
    assert load_config(None, [f"learners.policy_lr={text}"]).learners.policy_lr == pytest.approx(1e-3)


def test_float_spellings_in_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learners:\n  policy_lr: 1e-4\n")
    assert load_config(path).learners.policy_lr == pytest.approx(1e-4)


@pytest.mark.parametrize(("override", "message"), [
    ("search.num_simulation=3", "search.num_simulation: unknown key. Did you mean 'num_simulations'?"),
    ("serch.branch=3", "serch: unknown key. Did you mean 'search'?"),
    ("search.zzz=3", "search.zzz: unknown key. Allowed keys here: strategy"),
])
def test_unknown_keys_suggest_the_nearest(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


@pytest.mark.parametrize(("override", "message"), [
    ("search.num_simulations=abc", "search.num_simulations: got 'abc'; expected an integer"),
    ("search.num_simulations=2.5", "expected an integer"),
    ("search.num_simulations=true", "expected an integer"),
    ("search.early_stop=3", "search.early_stop: got 3; expected true or false"),
    ("search.exploration=yes", "search.exploration: got True; expected a number"),
    ("learners.policy_lr=1e-3x", "expected a number"),
    ("data.train_path=3", "data.train_path: got 3; expected a string"),
    ("data.system_prompt=null", "expected a string"),
    ("search=3", "search: got 3; expected a mapping"),
])
def test_bad_value_types(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


@pytest.mark.parametrize(("override", "allowed"), [
    ("search.strategy=beam", ["'mcts_star'", "'cot'", "'sc'", "'bon'", "'tot'"]),
    ("data.task=svamp", ["'arith'", "'gsm8k'", "'math'"]),
    ("data.on_bad_row=drop", ["'skip'", "'error'"]),
    ("servers.engine=sglang", ["'hf'", "'vllm'"]),
])
def test_literal_values_list_what_is_allowed(override, allowed):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    key, _ = override.split("=")
    text = str(err.value)
    assert text.startswith(f"{key}: got") and "allowed:" in text
    assert all(a in text for a in allowed)


@pytest.mark.parametrize(("override", "message"), [
    ("search.alpha=1.5", "search.alpha: must be in [0, 1]"),
    ("search.num_simulations=0", "search.num_simulations: must be >= 1"),
    ("search.temperature=-1", "search.temperature: must be >= 0"),
    ("data.num_questions=-1", "data.num_questions: must be >= 0"),
    ("data.check_timeout_s=0", "data.check_timeout_s: must be > 0"),
    ("data.arith_min_ops=5", "data.arith_min_ops: need 1 <= arith_min_ops <= arith_max_ops"),
    ("learners.zero_stage=4", "learners.zero_stage: allowed: 0, 1, 2, 3"),
    ("loop.trace_min_value=2", "loop.trace_min_value: must be in [0, 1]"),
])
def test_range_checks(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_step_delimiter_accepts_both_spellings():
    assert load_config(None, ['data.step_delimiter="\\n\\n"']).data.step_delimiter == "\n\n"
    with pytest.raises(ConfigError, match="data.step_delimiter"):
        load_config(None, ["data.step_delimiter=;"])


def test_malformed_overrides():
    with pytest.raises(ConfigError, match="written key.sub=value"):
        load_config(None, ["search.branch"])
    with pytest.raises(ConfigError, match="search.branch: is a value, not a section"):
        load_config(TINY, ["search.branch.x=1"])
    with pytest.raises(ConfigError, match="search.num_samples: got {'x': 1}; expected an integer"):
        load_config(TINY, ["search.num_samples.x=1"])  # a key the file does not set


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no file at .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == Config()


@pytest.mark.parametrize("override", ["search.strategy=beam", "loop.eval_strategy=beam", "eval.strategies=[cot,beam]"])
def test_unknown_strategies_name_the_key_and_every_valid_name(override):
    from restmcts.evaluation.grid import grid_strategies
    from restmcts.search.strategies import STRATEGIES

    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    text = str(err.value)
    assert text.startswith(override.split("=")[0] + ": ") and "'beam'" in text
    valid = grid_strategies() if override.startswith("eval.") else STRATEGIES
    assert all(name in text for name in valid) and ("sc_prm" in text) == override.startswith("eval.")


def test_the_strategy_registry_drives_validation_and_budgets(monkeypatch):
    """A strategy added to the registry alone is accepted by every strategy key and gets the grid
    budgets of the setting it names."""
    from restmcts.evaluation.grid import budget_points, pass_search_config
    from restmcts.search import strategies

    greedy = strategies.Strategy("greedy_beam", strategies.STRATEGIES["cot"].run, budget="beam_width")
    monkeypatch.setitem(strategies.STRATEGIES, "greedy_beam", greedy)
    cfg = load_config(None, ["search.strategy=greedy_beam", "loop.eval_strategy=greedy_beam",
                             "eval.strategies=[cot,greedy_beam]", "eval.beam_budgets=[2,5]"])
    assert budget_points(cfg.eval) == [("cot", 1), ("greedy_beam", 2), ("greedy_beam", 5)]
    point = pass_search_config(cfg, "greedy_beam", 5)
    assert point.strategy == "greedy_beam" and point.beam_width == 5
