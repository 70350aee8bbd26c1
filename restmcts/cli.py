"""The shared command line of the jobs: `--config FILE --out DIR [key.sub=value ...]`.

Jobs that load checkpoints (`checkpoints=True`) check `model.policy` and `model.prm` before they
start Ray or any actor (`missing_checkpoints`): a local path that does not hold a checkpoint fails
in one line naming the key, the path and the command that creates it. Which strings are local
paths (they must exist) and which are hub names (passed on to transformers):
- local: starts with `/`, `.` or `~`; starts with `runs/`; has two or more `/`; or its first
  component is an existing local folder (`checkpoints/policy` when `checkpoints/` exists);
- hub name: anything else, e.g. `Qwen/Qwen2.5-Math-1.5B-Instruct` or `gpt2`;
- `pkg://...` and other URIs are checked where they are read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from restmcts.config import Config, ConfigError, add_config_args, load_config


def parse_job_args(description: str, argv: list[str] | None = None,
                   checkpoints: bool = False) -> tuple[Config, str]:
    """Parse the job's arguments; a config error exits with its message and status 2, and so
    (with `checkpoints`) does a missing `model.policy` / `model.prm` checkpoint."""
    parser = argparse.ArgumentParser(description=description)
    add_config_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if checkpoints:
        problems = missing_checkpoints(cfg, args.config)
        if problems:
            print(f"checkpoint error: {problems[0]}", file=sys.stderr)
            raise SystemExit(2)
    return cfg, args.out.rstrip("/")


def is_local_path(path: str) -> bool:
    """Whether a model string names a local path (see the module docstring for the rule)."""
    if "://" in path:
        return False
    if path.startswith(("/", ".", "~")) or path.startswith("runs/") or path.count("/") >= 2:
        return True
    first, slash, _ = path.partition("/")
    return bool(slash) and Path(first).is_dir()


def missing_checkpoints(cfg: Config, config_path: str | None = None) -> list[str]:
    """One line per `model.policy` / `model.prm` that names a local path without a checkpoint."""
    problems = []
    for key, path in (("model.policy", cfg.model.policy), ("model.prm", cfg.model.prm)):
        if not is_local_path(path):
            continue
        folder = Path(path).expanduser()
        if not folder.exists():
            what = "does not exist"
        elif not (folder / "config.json").is_file():
            what = "is not a checkpoint (no config.json)"
        else:
            continue
        problems.append(f"{key}: {path} {what}. {_how_to_create(cfg, key, path, config_path)}")
    return problems


def _how_to_create(cfg: Config, key: str, path: str, config_path: str | None) -> str:
    role = key.split(".")[1]
    folder = Path(path)
    out = str(folder.parent) if folder.name == role else "DIR"
    config = f" --config {config_path}" if config_path else ""
    tail = f" (then set {key}=DIR/{role})" if out == "DIR" else ""
    if cfg.data.task == "arith":
        return f"Create it with: python jobs/bootstrap.py{config} --out {out}{tail}"
    return (f"Create it with: python jobs/prepare_model.py{config} --out {out} "
            f"--base <hub name, folder or GGUF>{tail}")
