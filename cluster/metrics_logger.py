"""Copy the restmcts_* series of a running Ray cluster into TensorBoard and/or Weights & Biases.

    python cluster/metrics_logger.py --dashboard http://127.0.0.1:8265 --tensorboard runs/tb
    python cluster/metrics_logger.py --dashboard http://HEAD:8265 --wandb-project restmcts --interval 15

Ray serves every node's metrics in Prometheus text on that node's --metrics-export-port, for the
processes running there; the dashboard lists those endpoints at /api/prometheus/sd (the list a
Prometheus server scrapes too). Every `--interval` seconds this logger scrapes them all, keeps the
`ray_restmcts_*` series and sums each over the processes and nodes that report it, keeping only
the role tags (worker, server, role): counters give cluster totals, gauges the sum of their
reporters (one reporter per tag value, so the value itself), histograms their mean (sum / count).
Each value is logged as a scalar named after the metric and its tags, e.g.
`restmcts_server_batch_size/server=policy-0`, at step = seconds since the logger started.

TensorBoard needs `pip install tensorboard` and W&B `pip install wandb`; neither is a project
dependency. Without either it prints the values (`--print`), which is also how to check it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections import defaultdict

PREFIX = "ray_restmcts_"
# Tags Ray adds to every series; the logger sums over them.
RAY_TAGS = {"Component", "NodeAddress", "SessionName", "Version", "WorkerId", "JobId", "le",
            "otel_scope_name", "otel_scope_schema_url", "otel_scope_version"}


def _get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def endpoints(dashboard: str) -> list[str]:
    """host:port of every node's metrics endpoint, as the dashboard lists them."""
    groups = json.loads(_get(f"{dashboard.rstrip('/')}/api/prometheus/sd"))
    return sorted({target for group in groups for target in group["targets"]})


def parse(text: str) -> dict[str, float]:
    """`restmcts_*` series in one Prometheus text page -> {name/tag=value...: summed value}."""
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(PREFIX) or sample.name.endswith(("_bucket", "_created")):
                continue
            tags = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in RAY_TAGS)
            name = sample.name.removeprefix("ray_").removesuffix("_total")
            sums[f"{name}/{tags}" if tags else name] += sample.value
    return dict(sums)


def collect(dashboard: str) -> dict[str, float]:
    """The cluster's restmcts_* values: every endpoint scraped, summed; histograms as means."""
    sums: dict[str, float] = defaultdict(float)
    for target in endpoints(dashboard):
        try:
            page = _get(f"http://{target}")
        except OSError:
            continue  # a node that left the cluster
        for key, value in parse(page).items():
            sums[key] += value
    values = {}
    for key, value in sums.items():
        name, _, tags = key.partition("/")
        if name.endswith("_count"):
            continue
        if name.endswith("_sum"):
            base = name.removesuffix("_sum")
            count = sums.get(f"{base}_count/{tags}" if tags else f"{base}_count", 0.0)
            if count:
                values[f"{base}/{tags}" if tags else base] = value / count
            continue
        values[key] = value
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard", default="http://127.0.0.1:8265", help="Ray dashboard URL of the cluster")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between scrapes")
    parser.add_argument("--tensorboard", default="", help="TensorBoard log directory")
    parser.add_argument("--wandb-project", default="", help="W&B project (run name: --wandb-name)")
    parser.add_argument("--wandb-name", default=None)
    parser.add_argument("--print", action="store_true", help="print each scrape as JSON")
    parser.add_argument("--once", action="store_true", help="scrape once and exit")
    args = parser.parse_args(argv)

    writers = []
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter  # needs `pip install tensorboard`

        tb = SummaryWriter(args.tensorboard)

        def to_tensorboard(values: dict[str, float], step: int) -> None:
            for key, value in values.items():
                tb.add_scalar(key, value, step)
            tb.flush()

        writers.append(to_tensorboard)
    if args.wandb_project:
        import wandb  # needs `pip install wandb`

        wandb.init(project=args.wandb_project, name=args.wandb_name)
        writers.append(lambda values, step: wandb.log(values, step=step))
    if args.print or not writers:
        writers.append(lambda values, step: print(json.dumps({"step": step, **values}, sort_keys=True), flush=True))

    start = time.time()
    while True:
        step = int(time.time() - start)
        try:
            values = collect(args.dashboard)
        except OSError as err:
            print(f"metrics_logger: {args.dashboard} unreachable ({err})", file=sys.stderr)
            values = {}
        for write in writers if values else []:
            write(values, step)
        if args.once:
            return 0
        time.sleep(args.interval)


if __name__ == "__main__":
    raise SystemExit(main())
