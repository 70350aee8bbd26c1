"""python -m restmcts.viewer TREE.json [-o tree.html]: write the tree's self-contained HTML page."""

from __future__ import annotations

import argparse
import sys

from restmcts.viewer.render import page_for, render_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m restmcts.viewer", description=__doc__.split(":")[1].strip())
    parser.add_argument("tree", nargs="+", help="tree JSON files (OUT/trees/<question_id>.json)")
    parser.add_argument("-o", "--out", help="the page to write (one tree only; default: beside each tree, .html)")
    args = parser.parse_args(argv)
    if args.out and len(args.tree) > 1:
        parser.error("-o/--out takes one tree; leave it out to write each page beside its tree")
    for tree in args.tree:
        try:
            out = render_file(tree, args.out or page_for(tree))
        except (OSError, ValueError) as err:
            print(f"restmcts.viewer: {err}", file=sys.stderr)
            return 2
        print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
