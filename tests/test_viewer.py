"""What people see: tree export from a real pass, the viewer page in a real headless Chromium,
and the run report rebuilt from metrics.jsonl alone.

The browser tests need Chromium from the system's packages (`make setup-browser`) and playwright
(the dev extra); without them they fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fakes import ARITH, ArithPolicy, ArithPRM, arith_problem

from restmcts import replay, storage
from restmcts.config import SearchConfig, load_config
from restmcts.replay.extract import FORMAT, export_tree, judge, to_records
from restmcts.search import Models, SearchResult, Tree, mcts_star
from restmcts.search.tree import to_solution
from restmcts.tasks import Question
from restmcts.tasks.arith import check_answer

ROOT = Path(__file__).resolve().parents[1]


def _nodes(tree: dict) -> list[dict]:
    """Every node of an exported tree, each with its full `path` of steps."""
    out, stack = [], [(tree["root"], ())]
    while stack:
        node, path = stack.pop()
        out.append({**node, "path": path})
        stack += [(c, (*path, c["step"])) for c in node["children"]]
    return sorted(out, key=lambda n: n["id"])


# --------------------------------------------------------------------------- export from a real pass


def _cfg(ckpt, *overrides):
    return load_config(ROOT / "configs/arith-tiny.yaml", [
        f"model.policy={ckpt}/policy", f"model.prm={ckpt}/prm",
        "search.num_simulations=4", "search.max_depth=2", "search.max_step_tokens=8",
        "search.num_workers=2", "search.trees_per_worker=4", "data.arith_min_ops=1", "data.arith_max_ops=2",
        *overrides,
    ])


def test_a_real_pass_exports_the_trees_of_its_first_questions(ray_local, tiny_ckpt, tmp_path, capfd, monkeypatch):
    from restmcts.actors import search_pass
    from restmcts.actors.search_pass import run_pass
    from restmcts.actors.servers import start_servers
    from restmcts.tasks import make_task

    cfg = _cfg(tiny_ckpt, "search.export_trees=2")
    questions = make_task(cfg.data).questions("train", 6)
    servers = start_servers(cfg, cfg.model.policy, cfg.model.prm)
    try:
        summary = run_pass(cfg, servers, questions, cfg.search, 1, str(tmp_path / "a"))
        log = capfd.readouterr().err
        with monkeypatch.context() as m:  # a second pass dies before its merge, then resumes
            m.setattr(search_pass._Shards, "merge", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
            with pytest.raises(KeyboardInterrupt):
                run_pass(cfg, servers, questions, cfg.search, 1, str(tmp_path / "b"))
        resumed = run_pass(cfg, servers, questions, cfg.search, 1, str(tmp_path / "b"))
    finally:
        servers.shutdown()

    # The pass's progress in a log (not a terminal): complete lines, the last one the whole pass.
    assert "\r" not in log
    lines = [x for x in log.splitlines() if x.startswith("[search] ")]
    assert lines[0].startswith("[search] 0/6 questions (0%)")
    assert lines[-1].startswith("[search] 6/6 questions (100%) | done in ") and "tok/s" in lines[-1]

    trees = tmp_path / "a" / "trees"
    assert sorted(p.name for p in trees.iterdir()) == sorted(f"{q.id}.json" for q in questions[:2])
    values = replay.read_values(str(tmp_path / "a" / "values.parquet"))
    for q in questions[:2]:
        tree = json.loads((trees / f"{q.id}.json").read_text())
        assert (tree["format"], tree["question_id"], tree["question"], tree["gold_answer"]) == \
            (FORMAT, q.id, q.question, q.answer)
        assert tree["strategy"] == "mcts_star" and tree["iteration"] == 1
        nodes = _nodes(tree)
        assert [n["id"] for n in nodes] == list(range(tree["num_nodes"])) and len(nodes) > 1
        for n in nodes:
            assert {"step", "n", "v", "prior", "terminal", "answer", "correct", "dead_end", "tokens"} <= n.keys()
        # The inferred targets are exactly the value rows the pass wrote for this question.
        targets = sorted((n["path"], n["target"]["value"], n["target"]["distance"]) for n in nodes if n["target"])
        rows = sorted((v.steps, round(v.value, 6), v.distance) for v in values if v.question_id == q.id)
        assert targets == rows
        if tree["chosen"] is not None:
            chosen = [n for n in nodes if n["on_chosen_path"]]
            assert chosen[-1]["path"] == tuple(tree["chosen"]["steps"]) and chosen[-1]["terminal"]
    assert summary.questions == 6
    # The resumed pass found every question done; the trees written before the crash are all there.
    assert resumed.resumed == 6
    assert sorted(p.name for p in (tmp_path / "b" / "trees").iterdir()) == sorted(p.name for p in trees.iterdir())


# --------------------------------------------------------------------------- trees for the browser


def _mcts_result() -> tuple[Question, SearchResult]:
    """A real, judged MCTS* tree grown against the scripted fake models (the viewer's tests only)."""
    p = arith_problem(3, 4)
    q = Question("arith-train-3", p.text, str(p.answer))
    cfg = SearchConfig(num_simulations=400, branch=5, max_depth=8)
    search = mcts_star(q.question, Models(ArithPolicy(p=0.5), ArithPRM(noise=0.1)), ARITH, cfg, seed=1)
    with ThreadPoolExecutor(1) as pool:  # its own thread: playwright's event loop may run in this one
        result = pool.submit(asyncio.run, search).result()
    return q, judge(result, lambda a: check_answer(a, q.answer))


def _mcts_tree() -> dict:
    q, result = _mcts_result()
    return export_tree(q, result, iteration=2)


def test_export_holds_the_value_targets_and_the_chosen_path():
    q, result = _mcts_result()
    assert to_records(q, result, 2).tree is None, "only the questions a pass exports carry a tree"
    outcome = to_records(q, result, 2, export=True)
    nodes = _nodes(outcome.tree)
    assert len(nodes) == outcome.tree["num_nodes"] == len(result.tree.nodes)
    for n, node in zip(nodes, result.tree.nodes, strict=True):
        assert (n["path"], n["n"], n["v"], n["prior"], n["terminal"]) == \
            (node.steps, node.n, node.v, node.prior, node.terminal)
    # Each inferred target sits on the node whose steps it was inferred for: exactly the value rows.
    targets = sorted((n["path"], n["target"]["value"], n["target"]["distance"], n["target"]["on_correct_path"])
                     for n in nodes if n["target"])
    rows = sorted((v.steps, round(v.value, 6), v.distance, v.on_correct_path) for v in outcome.values)
    assert targets == rows and len(rows) > 10 and any(not r[3] for r in rows) and any(r[3] for r in rows)
    assert [n["id"] for n in nodes if n["on_correct_path"] and n["id"]] == \
        [n["id"] for n in nodes if n["target"] and n["target"]["on_correct_path"]]
    # The chosen path runs from the root to the terminal node of the chosen trace.
    chosen = [n for n in nodes if n["on_chosen_path"]]
    assert [len(n["path"]) for n in chosen] == list(range(len(chosen)))
    trace = next(t for t in outcome.traces if t.chosen)
    assert chosen[-1]["path"] == trace.steps == tuple(outcome.tree["chosen"]["steps"]) and chosen[-1]["terminal"]


def _wide_tree(branch: int = 3, depth: int = 5) -> dict:
    """A hand-built tree of a few hundred nodes (1 + 3 + ... + 3^5 = 364), one correct leaf per branch."""
    tree = Tree("Start with 1. Add 1. What is the result?")
    frontier = [tree.root]
    for d in range(1, depth + 1):
        nxt = []
        for parent in frontier:
            for b in range(branch):
                last = d == depth
                child = tree.add_child(parent, f"step {d}.{b} <b>&", v=b / branch, terminal=last,
                                       answer=str(b) if last else None)
                child.n = branch - b
                nxt.append(child)
        frontier = nxt
    for node in tree.terminals():
        node.correct = node.answer == "0"
    best = to_solution(max(tree.terminals(), key=lambda n: (n.correct, n.v)))
    result = SearchResult("mcts_star", best, tree.solutions(), tree=tree)
    return export_tree(Question("wide-1", tree.question, "0"), result, iteration=1)


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium from the system's packages, driven by playwright."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("Chromium is not installed: run `make setup-browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield browser
        browser.close()


def _open(browser, path: Path):
    """A page on `path`; requests that leave the file system are recorded and refused."""
    page = browser.new_page(viewport={"width": 1400, "height": 850})
    page.outside, page.errors = [], []

    def route(r):
        if r.request.url.startswith("file:") or r.request.url.startswith("data:"):
            r.continue_()
        else:
            page.outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(path.as_uri())
    return page


def _viewer(tree: dict, tmp_path: Path) -> Path:
    src = tmp_path / f"{tree['question_id']}.json"
    src.write_text(json.dumps(tree))
    out = tmp_path / "page" / "tree.html"
    run = subprocess.run([sys.executable, "-m", "restmcts.viewer", str(src), "-o", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return out


def test_viewer_draws_every_node_and_a_click_shows_the_steps(chromium, tmp_path):
    tree = _mcts_tree()
    nodes = _nodes(tree)
    assert len(nodes) == tree["num_nodes"] > 50 and any(n["target"] for n in nodes)
    page = _open(chromium, _viewer(tree, tmp_path))
    assert page.locator("circle.node").count() == tree["num_nodes"]
    assert page.locator("path.edge").count() == tree["num_nodes"] - 1
    assert page.locator("path.edge.chosen").count() == sum(n["on_chosen_path"] for n in nodes) - 1

    # Click the node where the chosen answer ends: the panel shows its steps, v, n and target.
    end = next(n for n in nodes if n["on_chosen_path"] and n["terminal"])
    page.locator(f"circle.node[data-id='{end['id']}']").click()
    assert page.locator("#steps li").all_inner_texts() == list(end["path"])
    details = page.locator("#details").inner_text()
    assert f"Node {end['id']} · depth {len(end['path'])}" in details
    assert f"visits n\t{end['n']}" in details and f"value v\t{end['v']:.3f}" in details
    if end["target"]:
        assert f"inferred value\t{end['target']['value']:.3f}" in details
        assert f"reasoning distance m\t{end['target']['distance']}" in details

    # A node off every correct path, chosen by a click on another circle.
    other = next(n for n in reversed(nodes) if not n["on_correct_path"] and n["path"])
    page.locator(f"circle.node[data-id='{other['id']}']").click()
    assert page.locator("#steps li").all_inner_texts() == list(other["path"])
    assert page.outside == [] and page.errors == []


def test_viewer_stays_whole_for_a_few_hundred_nodes(chromium, tmp_path):
    tree = _wide_tree()
    assert tree["num_nodes"] == 364
    page = _open(chromium, _viewer(tree, tmp_path))
    assert page.locator("circle.node").count() == 364
    assert page.locator("path.edge.correct, path.edge.chosen").count() > 0
    # Step text is shown as text, never parsed as markup.
    leaf = _nodes(tree)[-1]
    page.locator(f"circle.node[data-id='{leaf['id']}']").click()
    assert page.locator("#steps li").all_inner_texts() == list(leaf["path"])
    assert page.outside == [] and page.errors == []


def test_viewer_rejects_a_file_that_is_not_a_tree(tmp_path):
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps({"questions": 3}))
    run = subprocess.run([sys.executable, "-m", "restmcts.viewer", str(bad)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "not an exported search tree" in run.stderr and "root" in run.stderr


# --------------------------------------------------------------------------- the run report


def _run_dir(tmp_path: Path) -> tuple[Path, dict]:
    """A finished one-iteration run's files: config.json, metrics.jsonl and one exported tree."""
    from restmcts.loop import state as log

    out = tmp_path / "run"
    cfg = load_config(ROOT / "configs/arith-tiny.yaml", ["loop.iterations=1", "search.export_trees=1"])
    storage.write_text(str(out / "config.json"), json.dumps(cfg.to_dict()))
    run = log.RunState.open(str(out))

    def passed(kind: type, **figures) -> log.PassStats:
        return kind(**{"solved_fraction": 0.7, "samples": 3000, "value_samples": 0, "prm_calls": 0, "failures": 0,
                       "retries": 0, "resumed": 0, "wall_seconds": 30.0, **figures})

    run.record(0, "evaluate", 30.0, passed(log.EvaluationStats, accuracy=0.41, heldout_accuracy=0.41, questions=100,
                                           tokens=9000, avg_tokens=90.0))
    run.record(1, "search", 400.0, passed(log.PassStats, accuracy=0.5, questions=1024, value_samples=20000,
                                          tokens=2_000_000, avg_tokens=1953.1, prm_calls=50000, failures=3))
    run.record(1, "extract", 2.0, log.ExtractStats(samples=900, traces=3000, prm_samples=20000, questions_with_data=700))
    for role, losses in (("prm", (0.09, 0.07, 0.05, 0.04)), ("policy", (0.8, 0.6, 0.5, 0.45))):
        run.record(1, f"train_{role}", 120.0, log.LearnerStats(
            role=role, init_path="a", out_path="b", samples=900, world_size=1, epochs=2, steps=len(losses),
            epoch_losses=(0.07, 0.045), final_loss=losses[-1], train_seconds=110.0, samples_per_s=55.0,
            tokens_per_s=900.0, truncated=0, weights_digests=("d",), step_losses=losses, learner_seconds=118.0))
    run.record(1, "sync", 3.0, log.SyncStats(policy="a", prm="b"))
    run.record(1, "evaluate", 31.0, passed(log.EvaluationStats, accuracy=0.523, heldout_accuracy=0.52, questions=100,
                                           tokens=9100, avg_tokens=91.0))
    tree = _mcts_tree()
    storage.write_text(str(out / "iter_1" / "trees" / f"{tree['question_id']}.json"), json.dumps(tree))
    return out, tree


def test_run_report_is_rebuilt_from_metrics_alone(chromium, tmp_path):
    out, tree = _run_dir(tmp_path)
    run = subprocess.run([sys.executable, "-m", "restmcts.loop.report", str(out)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = out / "report.html"
    assert run.stdout.strip() == str(report)
    text = report.read_text()
    assert text.count("data:image/png;base64,") == 3  # accuracy, losses, time and tokens
    assert "52.3%" in text and "41.0%" in text  # held-out accuracy of iterations 1 and 0
    link = f"iter_1/trees/{tree['question_id']}.html"
    assert f"href='{link}'" in text and (out / link).is_file()

    page = _open(chromium, report)
    sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(sizes) == 3 and all(w > 0 for w in sizes)
    page.locator(f"a[href='{link}']").click()
    page.wait_for_url("**/" + link)
    assert page.locator("circle.node").count() == tree["num_nodes"]
    assert page.outside == [] and page.errors == []


def test_run_report_names_a_folder_without_metrics(tmp_path):
    run = subprocess.run([sys.executable, "-m", "restmcts.loop.report", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "metrics.jsonl" in run.stderr
