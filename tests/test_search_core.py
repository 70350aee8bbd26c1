"""The search core stays pure (stdlib + restmcts.config) and its overhead probe runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from restmcts.search.overhead import measure_overhead

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
