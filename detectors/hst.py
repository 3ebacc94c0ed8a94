"""River's Half-Space Trees with the forest's masses in arrays: the same trees, the same scores, a fraction of the time (pure).

:class:`river.anomaly.HalfSpaceTrees` keeps each tree as linked node objects
and walks every tree in Python for each ``score_one`` and ``learn_one``: with
the call-mix detector's 100 trees of height 6, closing one area's window cost
about 200 µs, most of the detection stage's time on a county's calls
(``bench/detect_shards.py``). :class:`FlatHalfSpaceTrees` builds its trees with
River (the same seed gives the same splits), then keeps each node's feature,
threshold and masses in NumPy arrays laid out as a heap (node ``i``'s children
are ``2i + 1`` and ``2i + 2``) and walks all trees at once, one level at a time.

Why the scores are identical, not merely close: a tree's score is a sum of
masses (integers) times powers of two, so River's float accumulation is exact
(far below 2**53) and any order of summing gives the same integer; the split
test is the same comparison of the same doubles (``value < threshold`` goes
left, anything else, NaN included, goes right); and the final
``1 - score / max_score`` divides the same two numbers.
``tests/detectors/test_hst.py`` compares the two on random and repeated vectors
across several window pivots.

The path of a vector through the forest depends only on the vector (the splits
never change), so paths are kept for the last :data:`PATHS_KEPT` distinct
vectors: the call-mix features sit on the dead zone's 0.5 most of the time,
and most windows repeat a vector already seen.

Unlike River, every vector must hold the features the trees were built from
(River's fallback for a missing feature, the child with more mass, is not
needed by the call-mix detector, which always gives all of them): a
``ValueError`` names the missing ones.

Examples
--------
>>> from river import anomaly

from detectors.base import Detector
>>> river_hst = anomaly.HalfSpaceTrees(n_trees=5, height=3, window_size=3, seed=42)
>>> flat = FlatHalfSpaceTrees(n_trees=5, height=3, window_size=3, seed=42)
>>> for v in [0.5, 0.45, 0.43, 0.44, 0.445, 0.45, 0.0]:
...     for model in (river_hst, flat):
...         model.learn_one({"x": v})
...     assert flat.score_one({"x": v}) == river_hst.score_one({"x": v})
>>> round(flat.score_one({"x": 0.0}), 3)
0.853
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt
from river import anomaly

from detectors.base import Detector

#: Distinct feature vectors whose paths are kept (about 6 KiB each with 100 trees of height 6).
PATHS_KEPT = 4096

_IntArray = npt.NDArray[np.int64]


class FlatHalfSpaceTrees(Detector):
    """:class:`river.anomaly.HalfSpaceTrees` (``limits`` [0, 1] for every feature) with its masses in arrays.

    Same parameters, same trees for the same ``seed``, same ``learn_one`` and
    ``score_one`` results (see the module's text). The trees are built by River
    on the first ``learn_one``, from that vector's features, as River does.

    >>> FlatHalfSpaceTrees(n_trees=3, height=2, window_size=4, seed=1).clone()
    FlatHalfSpaceTrees(n_trees=3, height=2, window_size=4, seed=1)
    """

    def __init__(self, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int | None = None) -> None:
        if n_trees < 1 or height < 1 or window_size < 1:
            raise ValueError(f"n_trees, height and window_size must be at least 1, got {n_trees}, {height}, {window_size}")
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        #: River's forest until the first learn_one builds the trees (then its state moves into the arrays)
        self._river: anomaly.HalfSpaceTrees | None = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed
        )
        self._names: tuple[str, ...] = ()
        self._feature = np.zeros((0, 0), dtype=np.int64)  # (trees, inner nodes): index into _names
        self._threshold = np.zeros((0, 0), dtype=np.float64)  # (trees, inner nodes)
        self._l = np.zeros(0, dtype=np.int64)  # (trees * nodes,): mass of the window being learnt
        self._r = np.zeros(0, dtype=np.int64)  # (trees * nodes,): mass of the last full window (scored against)
        self.counter = 0
        self._first_window = True
        self._paths: dict[tuple[float, ...], _IntArray] = {}

    @classmethod
    def from_river(cls, hst: anomaly.HalfSpaceTrees) -> FlatHalfSpaceTrees:
        """The same forest, masses and window position as River's ``hst`` (which must have ``[0, 1]`` limits)."""
        if any(tuple(lim) != (0.0, 1.0) for lim in hst.limits.values()):
            raise ValueError(f"FlatHalfSpaceTrees assumes features in [0, 1]; the forest has limits {dict(hst.limits)}")
        flat = cls(n_trees=hst.n_trees, height=hst.height, window_size=hst.window_size, seed=hst.seed)
        if hst.trees:
            flat._adopt(hst)
        else:
            flat._river = hst
        return flat

    def _adopt(self, hst: anomaly.HalfSpaceTrees) -> None:
        """Move River's built forest into the arrays."""
        h = self.height
        inner, nodes = 2**h - 1, 2 ** (h + 1) - 1
        names: set[str] = set()
        layers: list[list[Any]] = []
        for root in hst.trees:
            layer, heap = [root], [root]
            for _ in range(h):
                layer = [child for node in layer for child in node.children]
                heap += layer
            layers.append(heap)
            names.update(node.feature for node in heap[:inner])
        self._names = tuple(sorted(names))
        index = {name: i for i, name in enumerate(self._names)}
        self._feature = np.array([[index[n.feature] for n in heap[:inner]] for heap in layers], dtype=np.int64)
        self._threshold = np.array([[float(n.threshold) for n in heap[:inner]] for heap in layers], dtype=np.float64)
        self._l = np.array([int(n.l_mass) for heap in layers for n in heap], dtype=np.int64)
        self._r = np.array([int(n.r_mass) for heap in layers for n in heap], dtype=np.int64)
        assert self._l.shape == (self.n_trees * nodes,)
        self.counter = int(hst.counter)
        self._first_window = bool(hst._first_window)
        self._paths = {}
        self._river = None

    # ------------------------------------------------------------------ paths

    def _path(self, x: dict[str, float]) -> _IntArray:
        """Flat indices (trees, height + 1) of the nodes ``x`` passes through, root to leaf, in every tree."""
        try:
            values = tuple(float(x[name]) for name in self._names)
        except KeyError:
            missing = sorted(set(self._names) - set(x))
            raise ValueError(f"the vector lacks feature(s) {missing} the trees split on; FlatHalfSpaceTrees needs every one") from None
        known = self._paths.get(values)
        if known is not None:
            return known
        v = np.array(values, dtype=np.float64)
        rows = np.arange(self.n_trees)
        node = np.zeros(self.n_trees, dtype=np.int64)
        steps = [node]
        for _ in range(self.height):
            go_left = v[self._feature[rows, node]] < self._threshold[rows, node]
            node = 2 * node + 2 - go_left  # left child 2i + 1 when value < threshold, else (NaN too) right child 2i + 2
            steps.append(node)
        path: _IntArray = np.stack(steps, axis=1) + (rows * (2 ** (self.height + 1) - 1))[:, None]
        if len(self._paths) >= PATHS_KEPT:
            self._paths.clear()
        self._paths[values] = path
        return path

    # ------------------------------------------------------------------ River's verbs

    def learn_one(self, x: dict[str, float]) -> None:
        """Count ``x`` in the window being learnt; every ``window_size`` vectors that window becomes the one scored against."""
        if self._river is not None:
            self._river.learn_one(x)  # builds the trees from x's features, as River does
            self._adopt(self._river)
            return
        self._l[self._path(x)] += 1  # a path holds each node once: no repeated index
        self.counter += 1
        if self.counter == self.window_size:
            self._r = self._l
            self._l = np.zeros_like(self._r)
            self._first_window = False
            self.counter = 0

    def score_one(self, x: dict[str, float]) -> float:
        """Anomaly score of ``x`` in [0, 1] (high: anomalous); 0 until the first window is full."""
        if self._first_window:
            return 0.0
        r = self._r[self._path(x)]
        # River stops a tree's walk after the first node whose mass is under the size limit (that node counted)
        deep = r >= 0.1 * self.window_size
        counted = np.ones_like(deep)
        counted[:, 1:] = np.logical_and.accumulate(deep[:, :-1], axis=1)
        score = int((r * _depth_weights(self.height) * counted).sum())
        return 1.0 - score / (self.n_trees * self.window_size * ((1 << (self.height + 1)) - 1))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_paths"] = {}  # a cache, rebuilt as vectors come
        return state


@functools.lru_cache(maxsize=8)
def _depth_weights(height: int) -> _IntArray:
    """2 ** depth for the depths 0..height of a tree's nodes: the weight of a node's mass in the score (read-only)."""
    weights: _IntArray = np.left_shift(1, np.arange(height + 1, dtype=np.int64))
    weights.flags.writeable = False
    return weights
