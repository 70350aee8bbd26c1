"""The shared command line of the jobs: `--config FILE --out DIR [key.sub=value ...]`."""

from __future__ import annotations

import argparse
import sys

from restmcts.config import Config, ConfigError, add_config_args, load_config


def parse_job_args(description: str, argv: list[str] | None = None) -> tuple[Config, str]:
    """Parse the job's arguments; a config error exits with its message and status 2."""
    parser = argparse.ArgumentParser(description=description)
    add_config_args(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    return cfg, args.out.rstrip("/")
