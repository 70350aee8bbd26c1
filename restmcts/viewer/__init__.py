"""Search-tree viewer: one exported tree (restmcts.extract.export_tree) as a self-contained HTML page.

    python -m restmcts.viewer runs/search/trees/<question_id>.json -o tree.html

The page needs no network: the template (template.html, shipped in this package) holds its own
CSS and JavaScript and draws the tree as inline SVG. Nodes are coloured by value (or prior, or
inferred value), sized by visits; the chosen answer's path and every path to a correct answer are
highlighted; clicking a node shows its steps, prior, v, n, inferred value and reasoning distance.
"""

from restmcts.viewer.render import page_for, render, render_file

__all__ = ["page_for", "render", "render_file"]
