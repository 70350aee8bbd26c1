"""The search core stays pure (stdlib + the tree settings from restmcts.config) and its overhead probe runs."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from restmcts.config import SearchSettings
from restmcts.search import Models
from restmcts.search.overhead import measure_overhead
from restmcts.search.strategies import STRATEGIES, run_strategy

SEARCH = Path(__file__).resolve().parents[1] / "restmcts" / "search"
HEAVY = ("ray", "torch", "vllm", "transformers", "pyarrow", "deepspeed", "numpy")


def test_search_imports_no_heavy_modules():
    code = ("import sys, restmcts.search, restmcts.search.overhead; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=SEARCH.parents[1])
    assert out.stdout.strip() == "[]"


def test_search_sources_import_only_stdlib_and_config_and_do_no_file_io():
    for path in SEARCH.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                root = node.module.split(".")[0]
                assert root in sys.stdlib_module_names or node.module == "restmcts.config" \
                    or node.module.startswith("restmcts.search"), (path.name, node.module)
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names), path.name
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", path.name


def test_measure_overhead_reports_per_simulation_cost():
    stats = measure_overhead(num_trees=20, num_simulations=5)
    assert stats["trees"] == 20
    assert 0 < stats["simulations"] <= 100
    assert stats["us_per_simulation"] > 0
    assert stats["policy_calls"] >= stats["simulations"]


def test_search_core_takes_only_the_tree_settings():
    """restmcts.search imports SearchSettings alone from the config (no pass settings)."""
    for path in SEARCH.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "restmcts.config":
                assert [a.name for a in node.names] == ["SearchSettings"], (path.name, [a.name for a in node.names])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_on_the_tree_settings_alone(name):
    """A strategy given exactly a SearchSettings (no workers, resources or call schedule) runs; one
    reading a pass setting would fail here."""
    from fakes import ARITH, ArithPolicy, ArithPRM, arith_problem  # tests/ is on sys.path

    settings = SearchSettings(num_simulations=6, num_samples=3, beam_width=2)
    result = asyncio.run(run_strategy(name, arith_problem(1).text, Models(ArithPolicy(p=0.8), ArithPRM()), ARITH,
                                      settings, 0))
    assert result.strategy == name and result.budget.policy_calls > 0


def test_every_budget_names_a_tree_setting():
    fields = {f.name for f in dataclasses.fields(SearchSettings)}
    assert {s.budget for s in STRATEGIES.values()} - {None} <= fields
    assert all(s.name == name for name, s in STRATEGIES.items())
