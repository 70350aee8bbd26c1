"""What jobs/evaluate.py leaves in DIR: results.csv, the plots and report.md.

    results.csv               strategy, budget, accuracy, avg_tokens, prm_calls, n_questions, seconds_per_question
    accuracy_vs_tokens.png    held-out accuracy against policy tokens per question, a line per strategy
    self_training.png         held-out accuracy per iteration, a line per self-training run
    prm_quality.csv           per PRM: labels, budget, per-step AUROC, verifier-guided accuracy
    report.md                 the tables, the claims checked, the command, the config and the machine
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from restmcts import replay
from restmcts.config import Config
from restmcts.evaluation.grid import GridPoint
from restmcts.evaluation.prm_quality import HeldOut, PRMQuality
from restmcts.evaluation.runs import RunCurve

STRATEGY_NAMES = {"cot": "CoT", "sc": "Self-Consistency", "bon": "PRM Best-of-N", "tot": "ToT (beam)",
                  "mcts_star": "MCTS*"}


@dataclass(frozen=True)
class Claim:
    text: str
    holds: bool | None  # None: not measured in this run
    evidence: str


def accuracy_at(points: Sequence[GridPoint], tokens: float) -> float | None:
    """A strategy's accuracy at `tokens` per question, linear between its measured budgets;
    None outside the range it was measured over."""
    pts = sorted(points, key=lambda p: p.avg_tokens)
    for a, b in zip(pts, pts[1:], strict=False):
        if a.avg_tokens <= tokens <= b.avg_tokens:
            w = (tokens - a.avg_tokens) / max(b.avg_tokens - a.avg_tokens, 1e-9)
            return a.accuracy + w * (b.accuracy - a.accuracy)
    if len(pts) == 1 and abs(pts[0].avg_tokens - tokens) <= 1e-9:
        return pts[0].accuracy
    return None


def claims(grid: Sequence[GridPoint], runs: Sequence[RunCurve], prms: Sequence[PRMQuality]) -> list[Claim]:
    out = []
    by = {s: [p for p in grid if p.strategy == s] for s in STRATEGY_NAMES}
    for rival in ("sc", "bon"):
        matched = [(p, accuracy_at(by[rival], p.avg_tokens)) for p in by["mcts_star"]]
        matched = [(p, acc) for p, acc in matched if acc is not None]
        text = f"MCTS* accuracy above {STRATEGY_NAMES[rival]} at a matched token budget"
        if not matched:
            out.append(Claim(text, None, "no MCTS* budget falls inside the token range measured for "
                             f"{STRATEGY_NAMES[rival]}"))
            continue
        wins = sum(p.accuracy > acc for p, acc in matched)
        detail = "; ".join(f"{p.budget} sims, {p.avg_tokens:.0f} tok: {p.accuracy:.3f} vs {acc:.3f}" for p, acc in matched)
        out.append(Claim(text, wins == len(matched), f"{wins} of {len(matched)} matched budgets ({detail})"))
    by_algo = {r.algorithm: r for r in runs}
    if "rest_mcts" in by_algo and "rest_em" in by_algo:
        a, b = by_algo["rest_mcts"].points[-1], by_algo["rest_em"].points[-1]
        out.append(Claim(f"ReST-MCTS* above ReST-EM after {a.iteration} iterations", a.accuracy > b.accuracy,
                         f"{a.accuracy:.3f} vs {b.accuracy:.3f} held-out accuracy"))
    else:
        out.append(Claim("ReST-MCTS* above ReST-EM", None, "eval.self_train_runs lacks a rest_mcts or a rest_em run"))
    q = {p.name: p for p in prms}
    if "mcts_values" in q and "monte_carlo" in q and q["mcts_values"].auroc is not None:
        m, c = q["mcts_values"], q["monte_carlo"]
        out.append(Claim("The MCTS*-value PRM's per-step AUROC above the Monte Carlo-label PRM's",
                         m.auroc > c.auroc,  # type: ignore[operator]
                         f"{m.auroc:.3f} vs {c.auroc:.3f} ({m.label_tokens:,} vs {c.label_tokens:,} label tokens; "
                         f"among steps at the same depth {_num(m.depth_auroc)} vs {_num(c.depth_auroc)})"))
    else:
        out.append(Claim("MCTS*-value PRM AUROC above the Monte Carlo PRM's", None,
                         "no PRM-quality run, or the task has no true step labels"))
    return out


def write_report(out: str, cfg: Config, grid: Sequence[GridPoint], runs: Sequence[RunCurve],
                 prm: tuple[list[PRMQuality], HeldOut] | None, command: str, seconds: float) -> str:
    replay.write_text(f"{out}/results.csv", _csv(grid, GridPoint))
    _plot_grid(grid, f"{out}/accuracy_vs_tokens.png")
    if runs:
        _plot_runs(runs, f"{out}/self_training.png")
    prms, held = prm if prm is not None else ([], None)
    if prms:
        replay.write_text(f"{out}/prm_quality.csv", _csv(prms, PRMQuality))
    text = _markdown(cfg, grid, runs, prms, held, claims(grid, runs, prms), command, seconds)
    replay.write_text(f"{out}/report.md", text)
    replay.write_text(f"{out}/config.json", json.dumps(cfg.to_dict(), indent=2))
    return text


def _csv(rows: Sequence[object], cls: type) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(cls)], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(row).items()})
    return buf.getvalue()


def _plot_grid(grid: Sequence[GridPoint], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, name in STRATEGY_NAMES.items():
        pts = sorted((p for p in grid if p.strategy == s), key=lambda p: p.avg_tokens)
        if pts:
            ax.plot([p.avg_tokens for p in pts], [p.accuracy for p in pts], marker="o", label=name)
            for p in pts:
                ax.annotate(str(p.budget), (p.avg_tokens, p.accuracy), textcoords="offset points",
                            xytext=(3, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("policy tokens generated per question (log)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Accuracy at equal budget (labels: N, beam width or simulations)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def _plot_runs(runs: Sequence[RunCurve], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        ax.plot([p.iteration for p in r.points], [p.accuracy for p in r.points], marker="o", label=r.label)
    ax.set_xlabel("self-training iteration")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_xticks(sorted({p.iteration for r in runs for p in r.points}))
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def _save(fig: object, path: str) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(buf, format="png", dpi=120)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    replay.write_bytes(path, buf.getvalue())


def _markdown(cfg: Config, grid: Sequence[GridPoint], runs: Sequence[RunCurve], prms: Sequence[PRMQuality],
              held: HeldOut | None, checked: Sequence[Claim], command: str, seconds: float) -> str:
    lines = ["# restmcts evaluation", "", f"Task `{cfg.data.task}`, policy `{cfg.model.policy}`, PRM `{cfg.model.prm}`, "
             f"{grid[0].n_questions if grid else 0} held-out questions. Wall time {seconds / 60:.1f} min.", "",
             "## Claims", "", "| claim | holds | evidence |", "|---|---|---|"]
    mark = {True: "yes", False: "**no**", None: "not measured"}
    lines += [f"| {c.text} | {mark[c.holds]} | {c.evidence} |" for c in checked]
    lines += ["", "## Equal-budget comparison (results.csv)", "", "![accuracy vs tokens](accuracy_vs_tokens.png)", "",
              "| strategy | budget | accuracy | tokens / question | PRM calls / question | seconds / question |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {STRATEGY_NAMES[p.strategy]} | {p.budget} | {p.accuracy:.3f} | {p.avg_tokens:.0f} | {p.prm_calls:.1f} | "
              f"{_num(p.seconds_per_question, '.2f')} |" for p in grid]
    if runs:
        lines += ["", "## Self-training", "", "![self-training](self_training.png)", "",
                  "| run | iteration | held-out accuracy | independent check | search tokens / question | "
                  "policy traces | traces with a wrong step |", "|---|---|---|---|---|---|---|"]
        for r in runs:
            for p in r.points:
                lines.append(f"| {r.label} (`{r.path}`) | {p.iteration} | {p.accuracy:.3f} | "
                             f"{_num(p.heldout_accuracy)} | {p.search_tokens:.0f} | {p.policy_samples} | "
                             f"{_num(p.false_positive_rate)} |")
    if prms and held is not None:
        lines += ["", "## PRM quality (prm_quality.csv)", "",
                  f"Judged on {held.solutions} sampled solutions to {held.questions} held-out questions "
                  f"({held.steps} labelled steps, {_num(held.positive_fraction)} of them right). Plain self-consistency over the same "
                  f"solutions: {held.sc_accuracy:.3f}.", "",
                  "Solutions are scored by their minimum prefix value (min) or their last prefix's value (last).", "",
                  "| PRM | labels | questions | samples | label tokens | per-step AUROC | same-depth AUROC | "
                  "SC + PRM weights (min / last) | best-of-N (min / last) |", "|---|---|---|---|---|---|---|---|---|"]
        for q in prms:
            lines.append(f"| {q.name} | {q.labels} | {q.train_questions} | {q.train_samples} | {q.label_tokens:,} | "
                         f"{_num(q.auroc)} | {_num(q.depth_auroc)} | {q.weighted_sc_accuracy:.3f} / "
                         f"{_num(q.weighted_sc_last_accuracy)} | {q.best_of_n_accuracy:.3f} / {_num(q.best_of_n_last_accuracy)} |")
    lines += ["", "## How this was made", "", "```", command, "```", "", f"Machine: {_machine()}", "",
              "Config (resolved):", "", "```json", json.dumps(cfg.to_dict(), indent=1), "```", ""]
    return "\n".join(lines)


def _num(x: float | None, spec: str = ".3f") -> str:
    """`x` formatted with `spec`, or "-" when it was not measured."""
    return "-" if x is None else format(x, spec)


def _machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, {gpu}, Python {sys.version.split()[0]}, "
            f"torch {torch.__version__}")
