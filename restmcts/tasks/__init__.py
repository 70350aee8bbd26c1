"""Tasks: question sources with answer extraction and checking.

    task = task_for(cfg)                # a run's task: cfg.data, drawn with cfg.loop.seed
    task = make_task(cfg.data, seed=3)  # any data section and seed

`arith` is the embedded synthetic task; `gsm8k` and `math` read JSONL/Parquet files from local
paths (or hub names on a cluster) and check answers with math-verify.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from restmcts.config import DataConfig
from restmcts.tasks.base import DataError, LoadReport, MessageEnds, Question, Task

if TYPE_CHECKING:
    from restmcts.config import Config

__all__ = ["DataError", "LoadReport", "MessageEnds", "Question", "Task", "make_task", "task_for", "TASKS"]

TASKS = ("arith", "gsm8k", "math")


def make_task(cfg: DataConfig, seed: int = 0) -> Task:
    if cfg.task == "arith":
        from restmcts.tasks.arith import ArithTask

        return ArithTask(cfg, seed)
    if cfg.task == "gsm8k":
        from restmcts.tasks.gsm8k import GSM8KTask

        return GSM8KTask(cfg)
    if cfg.task == "math":
        from restmcts.tasks.math import MathTask

        return MathTask(cfg)
    raise ValueError(f"data.task: unknown task {cfg.task!r}; allowed: {', '.join(TASKS)}")


def task_for(cfg: Config) -> Task:
    """The run's task: `cfg.data`'s questions, drawn with the run's seed (`loop.seed`)."""
    return make_task(cfg.data, seed=cfg.loop.seed)
