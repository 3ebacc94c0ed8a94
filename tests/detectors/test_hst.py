"""FlatHalfSpaceTrees: River's Half-Space Trees in arrays, the very same scores (pure)."""

from __future__ import annotations

import math
import pickle
import random

import pytest
from river import anomaly

from detectors.anomaly import FEATURES, MixAnomalyDetector
from detectors.hst import FlatHalfSpaceTrees
from tests.detectors.test_anomaly import ODD, replay, stream


def vectors(seed: int, n: int) -> list[dict[str, float]]:
    """Feature vectors as the call-mix detector makes them: mostly the dead zone's 0.5, some departures, some repeats."""
    rng = random.Random(seed)
    out: list[dict[str, float]] = []
    for _ in range(n):
        if out and rng.random() < 0.3:
            out.append(dict(rng.choice(out)))  # a vector seen before: its path comes from the cache
            continue
        out.append({name: 0.5 if rng.random() < 0.7 else rng.choice((0.0, 1.0, rng.random())) for name in FEATURES})
    return out


@pytest.mark.parametrize(("n_trees", "height", "window_size", "seed"), [(100, 6, 256, 42), (7, 3, 5, 1), (3, 1, 2, 7)])
def test_scores_equal_rivers_exactly_across_window_pivots(n_trees: int, height: int, window_size: int, seed: int) -> None:
    river_hst = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
    flat = FlatHalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed)
    xs = vectors(seed, 3 * window_size + 11)
    scores = []
    for x in xs:
        expected = river_hst.score_one(x)
        got = flat.score_one(x)
        assert got == expected, (got, expected)
        scores.append(got)
        river_hst.learn_one(x)
        flat.learn_one(x)
    assert len(set(scores)) > 2  # the vectors gave different scores: the comparison saw something


def test_a_nan_feature_goes_right_as_in_river() -> None:
    river_hst = anomaly.HalfSpaceTrees(n_trees=20, height=4, window_size=4, seed=3)
    flat = FlatHalfSpaceTrees(n_trees=20, height=4, window_size=4, seed=3)
    xs = vectors(3, 12)
    for x in xs:
        river_hst.learn_one(x)
        flat.learn_one(x)
    odd = {**xs[0], FEATURES[0]: math.nan, FEATURES[3]: math.nan}
    assert flat.score_one(odd) == river_hst.score_one(odd)


def test_a_river_forest_converts_with_its_masses_and_window_position() -> None:
    river_hst = anomaly.HalfSpaceTrees(n_trees=10, height=4, window_size=6, seed=5)
    xs = vectors(5, 40)
    for x in xs[:15]:
        river_hst.learn_one(x)
    flat = FlatHalfSpaceTrees.from_river(pickle.loads(pickle.dumps(river_hst)))
    for x in xs[15:]:
        assert flat.score_one(x) == river_hst.score_one(x)
        river_hst.learn_one(x)
        flat.learn_one(x)


def test_a_vector_without_a_feature_the_trees_split_on_is_refused_naming_it() -> None:
    flat = FlatHalfSpaceTrees(n_trees=5, height=3, window_size=2, seed=1)
    flat.learn_one({name: 0.5 for name in FEATURES})
    with pytest.raises(ValueError, match=r"lacks feature\(s\) \['count'\]"):
        flat.learn_one({name: 0.5 for name in FEATURES if name != "count"})


def test_a_mix_detector_checkpointed_with_rivers_forest_restores_and_alerts_the_same() -> None:
    points = stream(11, days=6, odd=ODD)
    whole = MixAnomalyDetector()
    expected = replay(whole, points)
    assert expected  # the odd hour alerts
    old = MixAnomalyDetector()
    half = len(points) // 2
    first = replay(old, points[:half])
    # as a checkpoint written before FlatHalfSpaceTrees held it: River's forest with the same state
    state = old.__dict__.copy()
    river_hst = anomaly.HalfSpaceTrees(n_trees=old.n_trees, height=old.height, window_size=old.window_size, seed=old.seed)
    _replay_forest(river_hst, old)
    state["_model"] = river_hst
    restored = MixAnomalyDetector.__new__(MixAnomalyDetector)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))
    assert isinstance(restored._model, FlatHalfSpaceTrees)
    assert first + replay(restored, points[half:]) == expected


def _replay_forest(river_hst: anomaly.HalfSpaceTrees, det: MixAnomalyDetector) -> None:
    """Give ``river_hst`` the masses and window position of ``det``'s flat forest (as if it had learnt the same vectors)."""
    flat = det._model
    assert isinstance(flat, FlatHalfSpaceTrees) and flat._river is None
    river_hst.learn_one({name: 0.5 for name in flat._names})  # builds the same trees (same seed)
    nodes = 2 ** (river_hst.height + 1) - 1
    for t, root in enumerate(river_hst.trees):
        layer, heap = [root], [root]
        for _ in range(river_hst.height):
            layer = [c for node in layer for c in node.children]
            heap += layer
        for i, node in enumerate(heap):
            node.l_mass = int(flat._l[t * nodes + i])
            node.r_mass = int(flat._r[t * nodes + i])
    river_hst.counter = flat.counter
    river_hst._first_window = flat._first_window
