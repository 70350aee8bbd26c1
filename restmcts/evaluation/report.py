"""What jobs/evaluate.py leaves in DIR: results.csv, the plots and report.md.

    results.csv               strategy, budget, accuracy, avg_tokens, prm_calls, n_questions,
                              seconds_per_question, ci_low, ci_high, models, difficulty
    accuracy_vs_tokens.png    accuracy (95% bands) against CoT-equivalents of tokens per question,
                              a line per strategy, a panel per model set and difficulty
    self_training.png         held-out accuracy per iteration (95% bars), a line per self-training
                              run, the mean and range per algorithm over seeds; the iteration curves
    prm_quality.csv           per PRM: labels, budget, SC + PRM and best-of-N at N = 4, 16, 64, AUROC
    report.md                 the claims with their paired tests, the tables, the command, the config
                              and the machine

Every claim compares two things on the same held-out questions and is decided by a paired test:
a paired bootstrap over questions (the difference, its 95% interval, a two-sided p-value) and,
for right/wrong scores, the exact McNemar p-value. A claim holds when one side is above at
p < 0.05 at some matched budget and never significantly below. Budgets are matched by pairing
each MCTS* point with the rival's point whose tokens per question are closest (both figures are
shown); no interpolation, so every pair stays a pair of answers to the same questions.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields

from restmcts import storage
from restmcts.config import Config
from restmcts.evaluation.grid import GridPoint, Measured
from restmcts.evaluation.prm_quality import HeldOut, PRMQuality
from restmcts.evaluation.runs import IterationPoint, RunCurve
from restmcts.evaluation.stats import PairedTest, paired_bootstrap, paired_bootstrap_strata

STRATEGY_NAMES = {"cot": "CoT", "sc": "Self-Consistency", "bon": "PRM Best-of-N", "sc_prm": "SC + PRM (weighted)",
                  "tot": "ToT (beam)", "mcts_star": "MCTS*"}
ALPHA = 0.05
PRMResult = tuple[list[PRMQuality], HeldOut, dict[tuple[str, str], list[float]]]


@dataclass(frozen=True)
class Claim:
    text: str
    holds: bool | None  # None: not measured in this run
    evidence: str
    below: bool = False  # significantly below at some matched budget (the opposite holds there)


@dataclass(frozen=True)
class Pairing:
    """Two grid points of one slice (same models, same questions) at the closest tokens per question."""

    a: GridPoint
    b: GridPoint
    test: PairedTest


def verdict(tests: Sequence[PairedTest]) -> bool | None:
    """Above at p < ALPHA somewhere and significantly below nowhere (None: nothing tested)."""
    if not tests:
        return None
    above = any(t.diff > 0 and t.p_value < ALPHA for t in tests)
    below = any(t.diff < 0 and t.p_value < ALPHA for t in tests)
    return above and not below


def matched_pairs(grid: Sequence[Measured], strategy: str, rival: str, resamples: int = 2000) -> list[Pairing]:
    """Each `strategy` point against the `rival` point of the same slice whose tokens per question
    are closest (on a log scale)."""
    out = []
    for m in grid:
        p = m.point
        if p.strategy != strategy:
            continue
        rivals = [r for r in grid if r.point.strategy == rival and r.point.models == p.models
                  and r.point.difficulty == p.difficulty and r.point.avg_tokens > 0]
        if not rivals or p.avg_tokens <= 0:
            continue
        r = min(rivals, key=lambda r: abs(math.log(p.avg_tokens / r.point.avg_tokens)))
        out.append(Pairing(p, r.point, paired_bootstrap(m.scores, r.scores, resamples)))
    return out


def slices(grid: Sequence[Measured]) -> list[tuple[str, str]]:
    """(models, difficulty) in the order the grid ran them."""
    return list(dict.fromkeys((m.point.models, m.point.difficulty) for m in grid))


def claims(grid: Sequence[Measured], runs: Sequence[RunCurve], prm: PRMResult | None,
           resamples: int = 2000, run_models: dict[str, str] | None = None) -> tuple[list[Claim], list[Pairing]]:
    out: list[Claim] = []
    pairings: list[Pairing] = []
    for models, difficulty in slices(grid):
        part = [m for m in grid if (m.point.models, m.point.difficulty) == (models, difficulty)]
        present = {m.point.strategy for m in part}
        for rival in ("sc", "bon", "sc_prm", "tot"):
            if rival not in present or "mcts_star" not in present:
                continue
            text = (f"MCTS* above {STRATEGY_NAMES[rival]} at matched tokens ({models} models, "
                    f"{_difficulty(difficulty)})")
            pairs = matched_pairs(part, "mcts_star", rival, resamples)
            pairings += pairs
            if not pairs:
                out.append(Claim(text, None, "no points with tokens to pair"))
                continue
            out.append(Claim(text, verdict([p.test for p in pairs]), _pairs_evidence(pairs), _below(p.test for p in pairs)))
    out.append(_self_training_claim(runs, resamples))
    out += _final_models_claims(grid, runs, run_models or {}, resamples)
    out += _prm_claims(prm, resamples)
    return out, pairings


def _below(tests: Iterable[PairedTest]) -> bool:
    return any(t.diff < 0 and t.p_value < ALPHA for t in tests)


def _pairs_evidence(pairs: Sequence[Pairing]) -> str:
    wins = sum(p.test.diff > 0 and p.test.p_value < ALPHA for p in pairs)
    losses = sum(p.test.diff < 0 and p.test.p_value < ALPHA for p in pairs)
    best = min(pairs, key=lambda p: p.test.p_value)
    return (f"above at p < {ALPHA} at {wins} of {len(pairs)} matched budgets, below at {losses}; "
            f"strongest: {_pair_text(best)}")


def _pair_text(p: Pairing) -> str:
    t = p.test
    return (f"{_budget(p.a)} ({p.a.avg_tokens:,.0f} tok) vs {_budget(p.b)} ({p.b.avg_tokens:,.0f} tok): "
            f"{p.a.accuracy:.3f} vs {p.b.accuracy:.3f}, difference {t.diff:+.3f} [{t.ci_low:+.3f}, {t.ci_high:+.3f}], "
            f"p = {_p(t.p_value)}, n = {t.n}")


def _self_training_claim(runs: Sequence[RunCurve], resamples: int) -> Claim:
    by_algo: dict[str, list[RunCurve]] = defaultdict(list)
    for r in runs:
        by_algo[r.algorithm].append(r)
    if not by_algo.get("rest_mcts") or not by_algo.get("rest_em"):
        return Claim("ReST-MCTS* above ReST-EM", None, "eval.self_train_runs lacks a rest_mcts or a rest_em run")
    last = min(r.points[-1].iteration for r in runs if r.algorithm in ("rest_mcts", "rest_em"))
    text = f"ReST-MCTS* above ReST-EM after {last} iterations"
    em = {r.seed: r for r in by_algo["rest_em"]}
    strata, seeds = [], []
    for r in by_algo["rest_mcts"]:
        other = em.get(r.seed)
        a, b = _at(r, last), _at(other, last) if other else None
        if a is not None and b is not None and a.scores and len(a.scores) == len(b.scores):
            strata.append((a.scores, b.scores))
            seeds.append(r.seed)
    summary = "; ".join(f"{RunCurve('', algo, ()).label} {_spread(rs, last)}" for algo, rs in
                        (("rest_mcts", by_algo["rest_mcts"]), ("rest_em", by_algo["rest_em"])))
    if not strata:
        return Claim(text, None, f"{summary}; no ReST-MCTS* and ReST-EM runs share a seed and held-out "
                                 "questions, so no paired test")
    t = paired_bootstrap_strata(strata, resamples)
    if len(strata) == 1:
        t = paired_bootstrap(*strata[0], resamples)
    return Claim(text, verdict([t]), below=_below([t]), evidence=f"{summary}; paired over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}): "
                                     f"difference {t.diff:+.3f} [{t.ci_low:+.3f}, {t.ci_high:+.3f}], "
                                     f"p = {_p(t.p_value)}, n = {t.n}")


def _final_models_claims(grid: Sequence[Measured], runs: Sequence[RunCurve], run_models: dict[str, str],
                         resamples: int) -> list[Claim]:
    """ReST-MCTS* against ReST-EM with each run's final models, greedy CoT on every held-out split
    of the grid (runs of the same seed paired question by question, seeds as strata)."""
    cot = {(m.point.models, m.point.difficulty): m for m in grid if m.point.strategy == "cot"}
    em = {r.seed: r for r in runs if r.algorithm == "rest_em" and r.path in run_models}
    pairs = [(r, em[r.seed]) for r in runs if r.algorithm == "rest_mcts" and r.path in run_models and r.seed in em]
    out = []
    for difficulty in dict.fromkeys(m.point.difficulty for m in grid):
        found = [(cot.get((run_models[a.path], difficulty)), cot.get((run_models[b.path], difficulty))) for a, b in pairs]
        found = [(a, b) for a, b in found if a is not None and b is not None]
        if not found:
            continue
        its = sorted({a.points[-1].iteration for a, _ in pairs} | {b.points[-1].iteration for _, b in pairs})
        text = (f"ReST-MCTS* above ReST-EM, final models ({'/'.join(map(str, its))} iterations), greedy CoT on "
                f"{_difficulty(difficulty)}")
        strata = [(a.scores, b.scores) for a, b in found]
        t = paired_bootstrap(*strata[0], resamples) if len(strata) == 1 else paired_bootstrap_strata(strata, resamples)
        mean_a = sum(a.point.accuracy for a, _ in found) / len(found)
        mean_b = sum(b.point.accuracy for _, b in found) / len(found)
        out.append(Claim(text, verdict([t]), below=_below([t]), evidence=f"{mean_a:.3f} vs {mean_b:.3f} (mean over {len(found)} seed(s)), "
                                             f"difference {t.diff:+.3f} [{t.ci_low:+.3f}, {t.ci_high:+.3f}], "
                                             f"p = {_p(t.p_value)}, n = {t.n}"))
    return out


def _at(run: RunCurve, iteration: int):  # -> IterationPoint | None
    return next((p for p in run.points if p.iteration == iteration), None)


def _spread(runs: Sequence[RunCurve], iteration: int) -> str:
    """Mean accuracy at `iteration` over runs, its range and the search tokens per question."""
    pts = [p for p in (_at(r, iteration) for r in runs) if p is not None]
    if not pts:
        return "-"
    accs = [p.accuracy for p in pts]
    tokens = [_at(r, iteration).search_tokens for r in runs if _at(r, iteration) is not None]  # type: ignore[union-attr]
    mean = sum(accs) / len(accs)
    text = f"{mean:.3f}" if len(accs) == 1 else f"{mean:.3f} (range {min(accs):.3f}-{max(accs):.3f}, {len(accs)} seeds)"
    return f"{text} at {sum(tokens) / len(tokens):,.0f} search tokens / question"


def _prm_claims(prm: PRMResult | None, resamples: int) -> list[Claim]:
    rows = {q.name: q for q in prm[0]} if prm else {}
    per_question = prm[2] if prm else {}
    out = []
    for pick, name in (("sc_prm", "SC + PRM"), ("bon", "PRM best-of-N")):
        text = f"{name} with the MCTS*-value PRM above the Monte Carlo PRM (same solutions, equal label tokens)"
        a, b = per_question.get(("mcts_values", pick)), per_question.get(("monte_carlo", pick))
        if a is None or b is None:
            out.append(Claim(text, None, "no PRM-quality run"))
            continue
        t = paired_bootstrap(a, b, resamples)
        m, c = rows["mcts_values"], rows["monte_carlo"]
        out.append(Claim(text, verdict([t]), below=_below([t]),
                         evidence=f"{_mean(a):.3f} vs {_mean(b):.3f} at N = all samples, difference {t.diff:+.3f} "
                         f"[{t.ci_low:+.3f}, {t.ci_high:+.3f}], p = {_p(t.p_value)}, n = {t.n}; "
                         f"{m.label_tokens:,} vs {c.label_tokens:,} label tokens; per-step AUROC "
                         f"{_num(m.auroc)} vs {_num(c.auroc)}, same depth {_num(m.depth_auroc)} vs {_num(c.depth_auroc)}"))
    return out


def write_report(out: str, cfg: Config, grid: Sequence[Measured], runs: Sequence[RunCurve],
                 prm: PRMResult | None, command: str, seconds: float, run_models: dict[str, str] | None = None) -> str:
    """`run_models`: each self-training run's path -> the grid's label for its final models."""
    points = [m.point for m in grid]
    storage.write_text(f"{out}/results.csv", _csv([asdict(p) for p in points], [f.name for f in fields(GridPoint)]))
    _plot_grid(points, f"{out}/accuracy_vs_tokens.png")
    if runs or any(p.models != "bootstrap" for p in points):
        _plot_runs(runs, points, f"{out}/self_training.png")
    if prm is not None and prm[0]:
        rows = [_prm_row(q) for q in prm[0]]
        storage.write_text(f"{out}/prm_quality.csv", _csv(rows, list(rows[0])))
    checked, pairings = claims(grid, runs, prm, cfg.eval.resamples, run_models)
    text = _markdown(cfg, points, runs, prm, checked, pairings, command, seconds)
    storage.write_text(f"{out}/report.md", text)
    storage.write_text(f"{out}/config.json", json.dumps(cfg.to_dict(), indent=2))
    return text


def _prm_row(q: PRMQuality) -> dict[str, object]:
    row = {k: v for k, v in asdict(q).items() if k != "by_n"}
    for n, sc_prm, bon in q.by_n:
        row[f"sc_prm_n{n}"], row[f"bon_n{n}"] = sc_prm, bon
    return row


def _csv(rows: Sequence[dict[str, object]], names: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def cot_equivalents(points: Sequence[GridPoint]) -> dict[tuple[str, str], float]:
    """Greedy CoT tokens per question of each (models, difficulty): the budget axis's unit."""
    return {(p.models, p.difficulty): p.avg_tokens for p in points if p.strategy == "cot" and p.avg_tokens > 0}


def _plot_grid(points: Sequence[GridPoint], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(p.models for p in points if p.strategy != "cot")) or ["bootstrap"]
    levels = list(dict.fromkeys(p.difficulty for p in points)) or ["test"]
    unit = cot_equivalents(points)
    fig, axes = plt.subplots(len(models), len(levels), figsize=(5.5 * len(levels), 4 * len(models)),
                             squeeze=False, sharey=True)
    for i, m in enumerate(models):
        for j, d in enumerate(levels):
            ax = axes[i][j]
            scale = unit.get((m, d), 1.0)
            for k, (s, name) in enumerate(STRATEGY_NAMES.items()):
                pts = sorted((p for p in points if (p.strategy, p.models, p.difficulty) == (s, m, d)),
                             key=lambda p: p.avg_tokens)
                if not pts:
                    continue
                x = [max(p.avg_tokens, 1e-9) / scale for p in pts]
                line, = ax.plot(x, [p.accuracy for p in pts], marker="o", label=name, color=f"C{k}")
                if all(p.ci_low is not None for p in pts):
                    if len(pts) > 1:
                        ax.fill_between(x, [p.ci_low for p in pts], [p.ci_high for p in pts],  # type: ignore[misc]
                                        color=line.get_color(), alpha=0.15)
                    else:
                        ax.errorbar(x, [pts[0].accuracy], yerr=_yerr(pts), color=line.get_color(), capsize=3)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("CoT-equivalents of tokens per question (log2)" if (m, d) in unit
                          else "policy tokens per question (log2)")
            ax.set_title(f"{m} models, {_difficulty(d)}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("held-out accuracy (95% band)")
    for row in axes:
        for ax in row:
            ax.legend(fontsize=7)
    _save(fig, path)


def _plot_runs(runs: Sequence[RunCurve], points: Sequence[GridPoint], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [p for p in points if p.models == "bootstrap" or p.models.startswith("iter_")]
    has_curves = any(p.models.startswith("iter_") for p in curves)
    fig, axes = plt.subplots(1, 2 if has_curves else 1, figsize=(12 if has_curves else 6, 4), squeeze=False)
    ax = axes[0][0]
    for r in runs:
        xs = [p.iteration for p in r.points]
        ys = [p.accuracy for p in r.points]
        ax.errorbar(xs, ys, yerr=_yerr(r.points), marker="o", capsize=3, alpha=0.6, label=f"{r.label} (seed {r.seed})")
    for algo in dict.fromkeys(r.algorithm for r in runs):
        group = [r for r in runs if r.algorithm == algo]
        if len(group) < 2:
            continue
        its = sorted({p.iteration for r in group for p in r.points})
        accs = [[p.accuracy for p in (_at(r, i) for r in group) if p is not None] for i in its]
        ax.plot(its, [sum(a) / len(a) for a in accs], linewidth=3, label=f"{group[0].label}: mean of {len(group)}")
        ax.fill_between(its, [min(a) for a in accs], [max(a) for a in accs], alpha=0.15)
    ax.set_xlabel("self-training iteration")
    ax.set_ylabel("held-out greedy accuracy (loop's test split)")
    if runs:
        ax.set_xticks(sorted({p.iteration for r in runs for p in r.points}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if has_curves:
        ax = axes[0][1]
        for d in dict.fromkeys(p.difficulty for p in curves):
            for s in ("sc", "mcts_star", "cot"):
                pts = [p for p in curves if p.strategy == s and p.difficulty == d]
                if not pts:
                    continue
                top = max(p.budget for p in pts)  # the largest budget: the curve's right end
                pts = sorted((p for p in pts if p.budget == top), key=lambda p: _iteration(p.models))
                ax.errorbar([_iteration(p.models) for p in pts], [p.accuracy for p in pts],
                            yerr=_yerr(pts),
                            marker="o", capsize=3, label=f"{STRATEGY_NAMES[s]} ({top}), {_difficulty(d)}")
        ax.set_xticks(sorted({_iteration(p.models) for p in curves}))
        ax.set_xlabel("models of iteration (0: bootstrap)")
        ax.set_ylabel("accuracy (95% interval)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)


def _yerr(points: Sequence[GridPoint | IterationPoint]) -> list[list[float]]:
    """Error bar lengths below and above each accuracy (0 where no interval was measured)."""
    below = [max(0.0, p.accuracy - p.ci_low) if p.ci_low is not None else 0.0 for p in points]
    above = [max(0.0, p.ci_high - p.accuracy) if p.ci_high is not None else 0.0 for p in points]
    return [below, above]


def _iteration(models: str) -> int:
    return 0 if models == "bootstrap" else int(models.removeprefix("iter_"))


def _save(fig: object, path: str) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(buf, format="png", dpi=110)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    storage.write_bytes(path, buf.getvalue())


def _markdown(cfg: Config, grid: Sequence[GridPoint], runs: Sequence[RunCurve], prm: PRMResult | None,
              checked: Sequence[Claim], pairings: Sequence[Pairing], command: str, seconds: float) -> str:
    n = sorted({p.n_questions for p in grid})
    lines = ["# restmcts evaluation", "", f"Task `{cfg.data.task}`, policy `{cfg.model.policy}`, PRM `{cfg.model.prm}`, "
             f"{'/'.join(map(str, n)) or 0} held-out questions per difficulty. Wall time {seconds / 60:.1f} min "
             "(this invocation: a rerun reads finished passes back).", "",
             "## Claims", "",
             f"Each claim is decided by a paired test on the same held-out questions (paired bootstrap over "
             f"questions, {cfg.eval.resamples:,} resamples, two-sided): it holds when one side is above at "
             f"p < {ALPHA} at some matched budget and significantly below at none. No correction for the number "
             "of claims is applied: read single p-values near 0.05 with that in mind.", "",
             "| claim | holds | evidence |", "|---|---|---|"]
    def mark(c: Claim) -> str:
        if c.holds is None:
            return "not measured"
        return "yes" if c.holds else "**no**: significantly below" if c.below else "**no**: no significant difference"

    lines += [f"| {c.text} | {mark(c)} | {c.evidence} |" for c in checked]
    if pairings:
        lines += ["", "## Paired tests at matched tokens", "",
                  "Each MCTS* point against the rival's point with the closest tokens per question (no "
                  "interpolation: both are answers to the same questions).", "",
                  "| models | difficulty | MCTS* | rival | accuracy | difference [95% CI] | p (bootstrap) | "
                  "p (McNemar) | n |", "|---|---|---|---|---|---|---|---|---|"]
        for p in pairings:
            t = p.test
            lines.append(f"| {p.a.models} | {_difficulty(p.a.difficulty)} | {_budget(p.a)}, {p.a.avg_tokens:,.0f} tok | "
                         f"{STRATEGY_NAMES[p.b.strategy]} {_budget(p.b)}, {p.b.avg_tokens:,.0f} tok | "
                         f"{p.a.accuracy:.3f} vs {p.b.accuracy:.3f} | {t.diff:+.3f} [{t.ci_low:+.3f}, {t.ci_high:+.3f}] | "
                         f"{_p(t.p_value)} | {_p(t.mcnemar_p)} | {t.n} |")
    unit = cot_equivalents(grid)
    lines += ["", "## Equal-budget comparison (results.csv)", "", "![accuracy vs tokens](accuracy_vs_tokens.png)", "",
              f"SC, PRM best-of-N and SC + PRM at N are the first N of {cfg.eval.max_samples} chains sampled once per "
              "question (one pass, PRM-scored with search.bon_aggregate); their tokens, PRM calls and seconds per "
              f"question are that pass's times N / {cfg.eval.max_samples} (the pass records spend per question, "
              "not per chain). CoT-eq: tokens per question over greedy CoT's on the same questions and models.", "",
              "| models | difficulty | strategy | budget | accuracy [95% CI] | tokens / question | CoT-eq | "
              "PRM calls / question | seconds / question |", "|---|---|---|---|---|---|---|---|---|"]
    for p in grid:
        eq = unit.get((p.models, p.difficulty))
        lines.append(f"| {p.models} | {_difficulty(p.difficulty)} | {STRATEGY_NAMES[p.strategy]} | {p.budget} | "
                     f"{p.accuracy:.3f} [{_num(p.ci_low)}, {_num(p.ci_high)}] | {p.avg_tokens:,.0f} | "
                     f"{_num(p.avg_tokens / eq if eq else None, '.1f')} | {p.prm_calls:.1f} | "
                     f"{_num(p.seconds_per_question, '.2f')} |")
    if runs:
        lines += ["", "## Self-training", "", "![self-training](self_training.png)", "",
                  "Held-out accuracy is the loop's own greedy evaluation on its test split (`data.num_test` questions).", "",
                  "| algorithm | iteration | runs | mean accuracy | range over seeds | search tokens / question |",
                  "|---|---|---|---|---|---|"]
        for algo in dict.fromkeys(r.algorithm for r in runs):
            group = [r for r in runs if r.algorithm == algo]
            for i in sorted({p.iteration for r in group for p in r.points}):
                pts = [p for p in (_at(r, i) for r in group) if p is not None]
                accs = [p.accuracy for p in pts]
                lines.append(f"| {group[0].label} | {i} | {len(pts)} | {sum(accs) / len(accs):.3f} | "
                             f"{min(accs):.3f}-{max(accs):.3f} | {sum(p.search_tokens for p in pts) / len(pts):,.0f} |")
        lines += ["", "| run | seed | iteration | held-out accuracy [95% CI] | independent check | search tokens / question | "
                  "policy traces | traces with a wrong step |", "|---|---|---|---|---|---|---|---|"]
        for r in runs:
            for p in r.points:
                lines.append(f"| {r.label} (`{r.path}`) | {r.seed} | {p.iteration} | {p.accuracy:.3f} "
                             f"[{_num(p.ci_low)}, {_num(p.ci_high)}] | {_num(p.heldout_accuracy)} | "
                             f"{p.search_tokens:.0f} | {p.policy_samples} | {_num(p.false_positive_rate)} |")
    if prm is not None and prm[0]:
        prms, held, _ = prm
        sizes = [n for n, _, _ in prms[0].by_n]
        lines += ["", "## PRM quality (prm_quality.csv)", "",
                  f"Judged on {held.solutions} sampled solutions to {held.questions} held-out questions "
                  f"({held.steps} labelled steps, {_num(held.positive_fraction)} of them right). Plain self-consistency over the same "
                  f"solutions: {held.sc_accuracy:.3f}. At N, each question's first N solutions; solutions scored by their "
                  "minimum prefix value (the last prefix's value in the `last` columns).", "",
                  "| PRM | labels | questions | samples | label tokens | "
                  + " | ".join(f"SC + PRM @{k}" for k in sizes) + " | " + " | ".join(f"best-of-N @{k}" for k in sizes)
                  + " | SC + PRM / best-of-N (last) | per-step AUROC | same-depth AUROC |",
                  "|" + "---|" * (8 + 2 * len(sizes))]
        for q in prms:
            lines.append(f"| {q.name} | {q.labels} | {q.train_questions} | {q.train_samples} | {q.label_tokens:,} | "
                         + " | ".join(f"{a:.3f}" for _, a, _ in q.by_n) + " | "
                         + " | ".join(f"{b:.3f}" for _, _, b in q.by_n)
                         + f" | {_num(q.weighted_sc_last_accuracy)} / {_num(q.best_of_n_last_accuracy)} | "
                         f"{_num(q.auroc)} | {_num(q.depth_auroc)} |")
    lines += ["", "## How this was made", "", "```", command, "```", "", f"Machine: {_machine()}", "",
              "Config (resolved):", "", "```json", json.dumps(cfg.to_dict(), indent=1), "```", ""]
    return "\n".join(lines)


def _budget(p: GridPoint) -> str:
    return {"mcts_star": f"{p.budget} sims", "tot": f"beam {p.budget}", "cot": "greedy"}.get(p.strategy, f"N={p.budget}")


def _difficulty(d: str) -> str:
    return "test split" if d == "test" else f"{d} ops"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2g}" if p >= 0.001 else "< 0.001"


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _num(x: float | None, spec: str = ".3f") -> str:
    """`x` formatted with `spec`, or "-" when it was not measured."""
    return "-" if x is None else format(x, spec)


def _machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, {gpu}, Python {sys.version.split()[0]}, "
            f"torch {torch.__version__}")
