"""Turn an exported tree into the viewer's HTML page (no dependencies beyond the standard library)."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

REQUIRED = ("question_id", "question", "root")


def template() -> str:
    return resources.files("restmcts.viewer").joinpath("template.html").read_text(encoding="utf-8")


def render(tree: dict[str, Any]) -> str:
    """The page for one tree dict (FORMAT in restmcts.replay.extract)."""
    missing = [k for k in REQUIRED if k not in tree]
    if missing:
        raise ValueError(f"not an exported search tree: keys {missing} are missing (expected the JSON that "
                         "search.export_trees writes under OUT/trees/)")
    # JSON inside <script>: escape "<" so no string in it can close the element.
    data = json.dumps(tree, ensure_ascii=False).replace("<", "\\u003c")
    title = html.escape(f"Search tree {tree['question_id']}")
    return template().replace("__TITLE__", title, 1).replace("__TREE_JSON__", data, 1)


def render_file(tree_json: str | Path, out_html: str | Path) -> Path:
    """Read `tree_json`, write its page to `out_html` (atomically), return the page's path."""
    from restmcts import storage

    src = Path(tree_json)
    if not src.is_file():
        raise FileNotFoundError(f"no tree file at {src}; a pass with search.export_trees=N writes OUT/trees/*.json")
    try:
        tree = json.loads(src.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{src}: not JSON ({err})") from err
    out = Path(out_html)
    storage.write_text(str(out), render(tree))
    return out


def page_for(tree_json: str | Path) -> Path:
    """The page beside a tree file: `trees/<id>.json` -> `trees/<id>.html`."""
    return Path(tree_json).with_suffix(".html")
