"""Pictures of what pruning keeps: pure drawing functions on plain arrays (no model, no CLI).

cells.py (a clip's cells, thumbnails and patches), strips.py (a strip per method, the paper's Figure 5b),
trees.py (ForestPrune's deepest trees, Figure 5a), report.py (the self-contained HTML page), output.py (writing
a file by its suffix).

The constants the CLI checks options against live here, so that checking them imports no numpy or PIL.
"""

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # one image, the figures stacked
REPORT_SUFFIX = ".html"  # the self-contained report page
SUFFIXES = (*PICTURE_SUFFIXES, REPORT_SUFFIX)
MAX_TREES = 10  # trees one picture draws, each in its own colour (fpcli.viz.trees.TREE_COLOURS)
