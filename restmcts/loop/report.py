"""The run report: one self-contained HTML page for a self-training run, from its metrics.jsonl.

    python -m restmcts.loop.report runs/demo      # writes runs/demo/report.html

It shows held-out accuracy per iteration, the learners' loss curves, tokens and wall time per
phase, the search passes' numbers, and links to the trees each iteration's search exported
(`search.export_trees`), each turned into a viewer page beside its JSON (restmcts.viewer). Plots are
PNGs inlined as base64, so the page opens offline and can be mailed around whole. Everything is
read from `DIR/metrics.jsonl` (and `DIR/config.json`, `DIR/iter_<i>/trees*/`), so the report can be
regenerated at any time; the self-training job writes it when it ends.
"""

from __future__ import annotations

import base64
import html
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from restmcts.loop.state import PHASES, PhaseRecord, RunState

COLOURS = {"search": "#0969da", "extract": "#8250df", "train_prm": "#bf8700", "train_policy": "#cf222e",
           "sync": "#57606a", "evaluate": "#1a7f37"}


def read_records(out: str | Path) -> list[PhaseRecord]:
    """The finished phases logged in `out/metrics.jsonl` (a torn last line is left out)."""
    path = Path(out) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics.jsonl; is {out} a self-training run's output folder "
                                "(jobs/self_train.py --out DIR)?")
    return RunState.open(str(out)).records


def write_report(out: str | Path) -> Path:
    """Write `out/report.html` (and a viewer page beside each exported tree); return its path."""
    from restmcts import storage

    out = Path(out)
    records = read_records(out)
    page = render_report(out, records)
    path = out / "report.html"
    storage.write_text(str(path), page)
    return path


# --------------------------------------------------------------------------- the page


def render_report(out: Path, records: Sequence[PhaseRecord]) -> str:
    config = _read_json(out / "config.json") or {}
    evals = sorted((r for r in records if r.phase == "evaluate"), key=lambda r: r.iteration)
    searches = sorted((r for r in records if r.phase == "search"), key=lambda r: r.iteration)
    iterations = sorted({r.iteration for r in records})
    parts = [_HEAD.replace("__TITLE__", html.escape(f"Run report · {out.name}"))]
    parts.append(f"<h1>Run report · {html.escape(str(out))}</h1>")
    parts.append(_summary(config, records, evals))

    parts.append("<h2>Held-out accuracy per iteration</h2>")
    if evals:
        parts.append(_img(_accuracy_plot(evals), "held-out accuracy per iteration"))
        rows = [[str(r.iteration), _pct(r.stats.accuracy), _pct(r.stats.heldout_accuracy), str(r.stats.questions),
                 _num(r.stats.avg_tokens, 1)] for r in evals]
        parts.append(_table(["iteration", "accuracy", "independent check", "questions", "tokens / question"], rows))
    else:
        parts.append("<p>No evaluation finished yet.</p>")

    parts.append("<h2>Learner loss</h2>")
    learners = [r for r in records if r.phase in ("train_prm", "train_policy")]
    if learners:
        parts.append(_img(_loss_plot(learners), "learner loss per optimizer step"))
        rows = [[str(r.iteration), r.stats.role, str(r.stats.samples), str(r.stats.steps), _num(r.stats.final_loss, 4),
                 ", ".join(_num(x, 4) for x in r.stats.epoch_losses), _num(r.stats.samples_per_s, 1),
                 _num(r.stats.learner_seconds, 1)] for r in learners]
        parts.append(_table(["iteration", "role", "samples", "steps", "final loss", "epoch losses", "samples/s",
                             "seconds"], rows))
    else:
        parts.append("<p>No learner phase finished yet.</p>")

    parts.append("<h2>Wall time and tokens per phase</h2>")
    parts.append(_img(_time_plot(records, iterations), "wall time and tokens per phase"))
    rows = []
    for i in iterations:
        by = {r.phase: r for r in records if r.iteration == i}
        rows.append([str(i)] + [_num(by[p].seconds, 1) if p in by else "" for p in PHASES]
                    + [str(by[p].stats.tokens) if p in by else "" for p in ("search", "evaluate")])
    parts.append(_table(["iteration", *(f"{p} s" for p in PHASES), "search tokens", "evaluate tokens"], rows))

    parts.append("<h2>Search passes</h2>")
    if searches:
        rows = [[str(r.iteration), str(r.stats.questions), _pct(r.stats.accuracy), _pct(r.stats.solved_fraction),
                 str(r.stats.samples), str(r.stats.value_samples), _num(r.stats.avg_tokens, 1),
                 str(r.stats.prm_calls), str(r.stats.failures), str(r.stats.retries)] for r in searches]
        parts.append(_table(["iteration", "questions", "chosen correct", "solved", "traces", "value samples",
                             "tokens / question", "PRM calls", "failures", "retries"], rows))
    else:
        parts.append("<p>No search pass finished yet.</p>")

    parts.append("<h2>Search trees</h2>")
    parts.append(_trees(out, iterations))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _summary(config: dict[str, Any], records: Sequence[PhaseRecord], evals: Sequence[PhaseRecord]) -> str:
    data, search, loop = config.get("data", {}), config.get("search", {}), config.get("loop", {})
    facts = [
        ("task", data.get("task")), ("algorithm", loop.get("algorithm")), ("strategy", search.get("strategy")),
        ("iterations", f"{max((r.iteration for r in evals), default=0)} of {loop.get('iterations', '?')} done"),
        ("questions per pass", data.get("num_questions")), ("held-out questions", data.get("num_test")),
        ("wall time", _duration(sum(r.seconds for r in records))),
    ]
    if len(evals) >= 2:
        first, last = evals[0], evals[-1]
        facts.append(("held-out accuracy", f"{_pct(first.stats.accuracy)} (iteration {first.iteration}) → "
                                           f"{_pct(last.stats.accuracy)} (iteration {last.iteration})"))
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in facts if v is not None)
    return f"<ul class='facts'>{items}</ul>"


def _trees(out: Path, iterations: Sequence[int]) -> str:
    """Links to every exported tree, by iteration, with a viewer page written beside each."""
    from restmcts.viewer import page_for, render_file

    blocks = []
    for i in iterations:
        files = sorted(p for d in sorted((out / f"iter_{i}").glob("trees*")) if d.is_dir() for p in d.glob("*.json"))
        if not files:
            continue
        items = []
        for f in files:
            tree = _read_json(f)
            if tree is None or "root" not in tree:
                continue
            page = page_for(f)
            render_file(f, page)
            chosen = tree.get("chosen") or {}
            verdict = "no answer" if not chosen else ("correct" if chosen.get("correct") else "wrong")
            href = html.escape(page.relative_to(out).as_posix())
            items.append(f"<li><a href='{href}'>{html.escape(str(tree.get('question_id', f.stem)))}</a> "
                         f"({f.parent.name}): {tree.get('num_nodes', '?')} nodes, chosen answer "
                         f"{html.escape(str(chosen.get('answer')))} ({verdict})</li>")
        if items:
            blocks.append(f"<h3>Iteration {i}</h3><ul class='trees'>{''.join(items)}</ul>")
    if not blocks:
        return ("<p>No trees exported. Set <code>search.export_trees=N</code> to keep the trees of each "
                "search pass's first N questions (viewer: <code>python -m restmcts.viewer TREE.json</code>).</p>")
    return "\n".join(blocks)


# --------------------------------------------------------------------------- plots


def _figure(width: float = 7.0, height: float = 3.2) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _accuracy_plot(evals: Sequence[PhaseRecord]) -> bytes:
    fig, ax = _figure()
    xs = [r.iteration for r in evals]
    ax.plot(xs, [r.stats.accuracy for r in evals], marker="o", label="held-out accuracy")
    independent = [(r.iteration, r.stats.heldout_accuracy) for r in evals if r.stats.heldout_accuracy is not None]
    if independent:
        ax.plot(*zip(*independent, strict=True), marker="x", linestyle="--", label="independent check")
    for x, r in zip(xs, evals, strict=True):
        ax.annotate(f"{r.stats.accuracy:.3f}", (x, r.stats.accuracy), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8)
    ax.set_xlabel("iteration (0 = the starting models)")
    ax.set_ylabel("accuracy")
    ax.set_xticks(xs)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def _loss_plot(learners: Sequence[PhaseRecord]) -> bytes:
    roles = [p for p in ("train_prm", "train_policy") if any(r.phase == p for r in learners)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(roles), figsize=(7.0 if len(roles) == 1 else 10.0, 3.2), dpi=100, squeeze=False)
    for ax, phase in zip(axes[0], roles, strict=True):
        for r in (r for r in learners if r.phase == phase):
            losses, epochs = r.stats.step_losses, r.stats.epoch_losses
            if losses:
                ax.plot(range(1, len(losses) + 1), losses, label=f"iteration {r.iteration}", linewidth=1)
            elif epochs:  # an older log: one point per epoch
                per = max(1, (r.stats.steps or len(epochs)) // len(epochs))
                ax.plot([per * (e + 1) for e in range(len(epochs))], epochs, marker="o",
                        label=f"iteration {r.iteration} (epoch means)")
        ax.set_title(f"{phase.removeprefix('train_')} learner" + (" (MSE)" if phase == "train_prm" else " (SFT)"),
                     fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("loss")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _png(fig)


def _time_plot(records: Sequence[PhaseRecord], iterations: Sequence[int]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.2), dpi=100)
    bottom = [0.0] * len(iterations)
    for phase in PHASES:
        secs = [sum(r.seconds for r in records if r.iteration == i and r.phase == phase) for i in iterations]
        if any(secs):
            left.bar([str(i) for i in iterations], secs, bottom=bottom, label=phase, color=COLOURS[phase])
            bottom = [b + s for b, s in zip(bottom, secs, strict=True)]
    left.set_title("wall time per phase", fontsize=10)
    left.set_xlabel("iteration")
    left.set_ylabel("seconds")
    left.legend(fontsize=7)
    width = 0.4
    for k, phase in enumerate(("search", "evaluate")):
        tokens = [sum(r.stats.tokens for r in records if r.iteration == i and r.phase == phase) for i in iterations]
        right.bar([i + (k - 0.5) * width for i in range(len(iterations))], tokens, width, label=phase,
                  color=COLOURS[phase])
    right.set_xticks(range(len(iterations)), [str(i) for i in iterations])
    right.set_title("policy tokens generated", fontsize=10)
    right.set_xlabel("iteration")
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(True, alpha=0.3, axis="y")
    return _png(fig)


# --------------------------------------------------------------------------- helpers


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _pct(x: Any) -> str:
    return "" if x is None else f"{100 * float(x):.1f}%"


def _num(x: Any, digits: int) -> str:
    return "" if x is None else f"{float(x):,.{digits}f}"


def _duration(seconds: float) -> str:
    from restmcts.progress import format_duration

    return format_duration(seconds)


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2328; margin: 18px 28px; max-width: 1100px; }
  h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 26px; border-bottom: 1px solid #d0d7de; padding-bottom: 3px; }
  h3 { font-size: 14px; margin-bottom: 4px; }
  table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
  th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: right; }
  th { background: #f6f8fa; } td:first-child, th:first-child { text-align: left; }
  img { max-width: 100%; display: block; margin: 6px 0; }
  ul.facts { list-style: none; padding: 0; } ul.facts li { display: inline-block; margin-right: 18px; }
</style></head><body>"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m restmcts.loop.report DIR   (a jobs/self_train.py output folder)", file=sys.stderr)
        return 2
    try:
        path = write_report(args[0])
    except FileNotFoundError as err:
        print(f"restmcts.loop.report: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
