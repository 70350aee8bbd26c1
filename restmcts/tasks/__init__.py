"""Tasks: question sources with answer extraction and checking.

    task = make_task(cfg.data, seed=cfg.loop.seed)

`arith` is the embedded synthetic task; `gsm8k` and `math` read JSONL/Parquet files from local
paths (or hub names on a cluster) and check answers with math-verify.
"""

from __future__ import annotations

from restmcts.config import DataConfig
from restmcts.tasks.base import DataError, LoadReport, MessageEnds, Question, Task

__all__ = ["DataError", "LoadReport", "MessageEnds", "Question", "Task", "make_task", "TASKS"]

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
