"""Files, local or remote: every write is atomic, every path may be a URI.

    storage.write_text("runs/x/config.json", text)      # or s3://bucket/x/config.json
    storage.write_table(table, "runs/x/iter_1/traces.parquet")

A write goes to a temporary name beside its target and is renamed into place, so a reader never
sees half a file and a killed writer leaves nothing behind under the target's name. Paths are
local or any URI pyarrow's filesystems understand (s3://, gs://, ...). Checkpoint folders are
written the same way by `restmcts.checkpoints.save`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any


def filesystem(path: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a local path or a URI."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(path) if "://" in path else (fs.LocalFileSystem(), path)


def exists(path: str) -> bool:
    from pyarrow import fs

    filesystem_, p = filesystem(path)
    return filesystem_.get_file_info(p).type != fs.FileType.NotFound


def _atomic(path: str, write: Callable[[Any, str], None]) -> None:
    """Run `write(filesystem, tmp)` for a temporary name beside `path`, then rename it over `path`."""
    filesystem_, p = filesystem(path)
    parent = p.rsplit("/", 1)[0] if "/" in p else "."
    filesystem_.create_dir(parent, recursive=True)
    tmp = f"{p}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(filesystem_, tmp)
        filesystem_.move(tmp, p)
    except BaseException:  # a full disk or a crash: no half file under either name
        try:
            filesystem_.delete_file(tmp)
        except Exception:  # never written, or already gone
            pass
        raise


def write_table(table: Any, path: str) -> None:
    """Write a Parquet file atomically."""
    import pyarrow.parquet as pq

    _atomic(path, lambda fs_, tmp: pq.write_table(table, tmp, filesystem=fs_))


def write_bytes(path: str, data: bytes) -> None:
    """Write a small file (text, a plot) atomically."""
    def write(fs_: Any, tmp: str) -> None:
        with fs_.open_output_stream(tmp) as f:
            f.write(data)

    _atomic(path, write)


def write_text(path: str, text: str) -> None:
    """Write a small text file (JSON markers, summaries) atomically."""
    write_bytes(path, text.encode())


def read_text(path: str) -> str:
    filesystem_, p = filesystem(path)
    with filesystem_.open_input_stream(p) as f:
        return f.read().decode()


def list_dir(path: str) -> list[str]:
    """Full paths of the files directly under `path` (empty when it does not exist)."""
    from pyarrow import fs

    filesystem_, p = filesystem(path)
    if filesystem_.get_file_info(p).type == fs.FileType.NotFound:
        return []
    infos = filesystem_.get_file_info(fs.FileSelector(p))
    prefix = path[: len(path) - len(p)] if "://" in path else ""
    return sorted(prefix + i.path for i in infos if i.type == fs.FileType.File)


def remove(path: str) -> None:
    """Delete a file or a whole directory; missing is fine."""
    from pyarrow import fs

    filesystem_, p = filesystem(path)
    kind = filesystem_.get_file_info(p).type
    if kind == fs.FileType.Directory:
        filesystem_.delete_dir(p)
    elif kind == fs.FileType.File:
        filesystem_.delete_file(p)
