"""`fanren diff`: a drama at two git revisions, compiled and compared node by node, and a review page.

revisions.py reads a revision's drama folder out of git; compare.py compares two graphs with the
key fields `fanren explain` diffs; review.py ties them to the cache and groups changes by shot;
page.py writes the side-by-side HTML page; command.py is the click command. A series is compared
whole (every episode, one graph) and its differences grouped by episode.
"""

from .compare import Comparison, NodeDiff, compare
from .review import Review, build_changed, open_review, shots

__all__ = ["Comparison", "NodeDiff", "Review", "build_changed", "compare", "open_review", "shots"]
