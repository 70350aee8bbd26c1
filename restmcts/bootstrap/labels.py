"""Monte Carlo value labels for an initial PRM, as replay rows (used by arith.py and pretrained.py).

    records = monte_carlo_values(cfg, fmt, task, questions, "OUT/policy", "OUT/values.parquet")

Math-Shepherd-style labels (ALGORITHM.md, Self-training, `D_V0`) from
restmcts.search.montecarlo: for one sampled solution per question, every prefix gets
`bootstrap.prm_rollouts` chains continuing it, and its label is the fraction whose answer the
task's `check` accepts; a prefix that already ends the solution is labelled by checking it. The
policy is the in-process engine (restmcts.bootstrap.inprocess), all questions at once. Each label
is a ValueRecord row of OUT/values.parquet, the file the PRM learner trains from: `distance` 0
(Monte Carlo measures no distance), `on_correct_path` when some rollout reached the gold answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from restmcts import replay
from restmcts.bootstrap.inprocess import chain_settings, concurrently, in_process_client
from restmcts.config import Config, SearchSettings
from restmcts.prompt import PromptFormat
from restmcts.replay import ValueRecord
from restmcts.tasks import Question, Task

if TYPE_CHECKING:
    from restmcts.actors.client import ModelClient


def monte_carlo_values(cfg: Config, fmt: PromptFormat, task: Task, questions: Sequence[Question], policy: str | Path,
                       out: str | Path) -> list[ValueRecord]:
    """Label `questions` with the policy checkpoint `policy`; write the rows to `out` and return them."""
    with in_process_client(cfg, fmt, str(policy)) as client:
        records = asyncio.run(label_questions(client, task, questions, cfg))
    replay.write_records(records, ValueRecord, str(out))
    return records


async def label_questions(client: ModelClient, task: Task, questions: Sequence[Question], cfg: Config) -> list[ValueRecord]:
    from restmcts.search import derive_seed

    settings, seed = chain_settings(cfg), derive_seed(cfg.bootstrap.seed, "mc-labels")

    async def one(q: Question) -> list[ValueRecord]:
        rows, _ = await label_question(client, task, q, settings, derive_seed(seed, q.id), cfg.bootstrap.prm_rollouts)
        return rows

    rows = await concurrently([one(q) for q in questions], "Monte Carlo labels", "questions")
    return [r for question_rows in rows for r in question_rows]


async def label_question(client: ModelClient, task: Task, q: Question, settings: SearchSettings, seed: int,
                         rollouts: int) -> tuple[list[ValueRecord], int]:
    """One question's Monte Carlo labels as ValueRecord rows, and the policy tokens they cost.
    A solution ends where the task says or where the policy ended its message, as in the search."""
    from restmcts.search.montecarlo import monte_carlo_labels

    models, answers = client.for_question(task, settings)
    labels, budget = await monte_carlo_labels(q.question, models, answers, settings, seed,
                                              lambda a: task.check(a, q.answer), rollouts)
    return [ValueRecord(q.id, q.question, steps, value, 0, value > 0, 0) for steps, value in labels], budget.tokens
