"""Tests for skclust_ot.metrics: Hungarian-matched clustering scores."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score

from skclust_ot.metrics import (
    balanced_clustering_accuracy,
    clustering_accuracy,
    clustering_report,
    head_medium_tail_accuracy,
    match_labels,
    matched_f1_score,
)
from skclust_ot.metrics._clustering import _group_sizes

# A known confusion: class 0 has 8 samples (6 in cluster "a", 2 in "b"), class 1
# has 2 samples (both in "b"). Best matching: a -> 0, b -> 1.
KNOWN_TRUE = [0] * 8 + [1] * 2
KNOWN_PRED = ["a"] * 6 + ["b"] * 2 + ["b"] * 2


def _brute_force_best(y_true, y_pred):
    """Matched hits per class, maximising total hits over all injective maps."""
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    best_total, best_hits = -1, None
    n_slots = max(len(classes), len(clusters))
    # Pad classes with "no class" slots so every cluster gets a (maybe empty) class.
    slots = list(classes) + [None] * (n_slots - len(classes))
    for assignment in itertools.permutations(slots, len(clusters)):
        hits = {c: 0 for c in classes}
        for cluster, cls in zip(clusters, assignment):
            if cls is not None:
                hits[cls] += int(np.sum((y_pred == cluster) & (y_true == cls)))
        total = sum(hits.values())
        if total > best_total:
            best_total, best_hits = total, hits
    return best_total, best_hits


def test_permuted_labels_score_one():
    y_true = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    permutation = np.array([2, 0, 1])
    y_pred = permutation[y_true] + 10
    assert clustering_accuracy(y_true, y_pred) == 1.0
    assert balanced_clustering_accuracy(y_true, y_pred) == 1.0
    assert matched_f1_score(y_true, y_pred) == 1.0
    assert match_labels(y_true, y_pred) == {12: 0, 10: 1, 11: 2}
    report = clustering_report(y_true, y_pred)
    for key in ("balanced_accuracy", "accuracy", "macro_f1", "head", "medium", "tail"):
        assert report[key] == 1.0
    assert report["nmi"] == pytest.approx(1.0)
    assert report["ari"] == pytest.approx(1.0)


def test_known_confusion_values():
    assert match_labels(KNOWN_TRUE, KNOWN_PRED) == {"a": 0, "b": 1}
    assert clustering_accuracy(KNOWN_TRUE, KNOWN_PRED) == pytest.approx(0.8)
    assert balanced_clustering_accuracy(KNOWN_TRUE, KNOWN_PRED) == pytest.approx(
        (6 / 8 + 2 / 2) / 2
    )
    # F1 class 0: 2*6 / (8 + 6); class 1: 2*2 / (2 + 4).
    f1_per_class = matched_f1_score(KNOWN_TRUE, KNOWN_PRED, average=None)
    np.testing.assert_allclose(f1_per_class, [12 / 14, 4 / 6])
    assert matched_f1_score(KNOWN_TRUE, KNOWN_PRED) == pytest.approx(
        (12 / 14 + 4 / 6) / 2
    )
    assert matched_f1_score(KNOWN_TRUE, KNOWN_PRED, average="weighted") == (
        pytest.approx(0.8 * 12 / 14 + 0.2 * 4 / 6)
    )
    assert matched_f1_score(KNOWN_TRUE, KNOWN_PRED, average="micro") == (
        pytest.approx(0.8)
    )


def test_balanced_accuracy_differs_from_accuracy_on_imbalanced_data():
    y_true = [0] * 90 + [1] * 10
    y_pred = [0] * 100
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(0.9)
    assert balanced_clustering_accuracy(y_true, y_pred) == pytest.approx(0.5)


def test_matching_maximises_correct_samples_not_balanced_accuracy():
    # Cluster "A" holds 7 of class 0 and both of class 1; "B" holds 3 of class 0.
    # A -> 0, B -> 1 gets 7 samples right (balanced accuracy 0.35); A -> 1, B -> 0
    # would get only 5 right but a balanced accuracy of 0.65. The standard
    # matching maximises the number of correct samples.
    y_true = [0] * 10 + [1] * 2
    y_pred = ["A"] * 7 + ["B"] * 3 + ["A"] * 2
    assert match_labels(y_true, y_pred) == {"A": 0, "B": 1}
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(7 / 12)
    assert balanced_clustering_accuracy(y_true, y_pred) == pytest.approx(0.35)


def test_string_labels():
    y_true = np.array(["cat", "cat", "dog", "dog", "eel"])
    y_pred = np.array(["x", "x", "y", "y", "y"])
    assert match_labels(y_true, y_pred) == {"x": "cat", "y": "dog"}
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(0.8)
    assert balanced_clustering_accuracy(y_true, y_pred) == pytest.approx(2 / 3)
    report = clustering_report(list(y_true), list(y_pred))
    assert report["n_clusters_found"] == 2


def test_more_clusters_than_classes():
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 1, 2, 2, 3]
    mapping = match_labels(y_true, y_pred)
    assert mapping == {0: 0, 2: 1}
    # Samples in unmatched clusters 1 and 3 are errors.
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    assert balanced_clustering_accuracy(y_true, y_pred) == pytest.approx(2 / 3)
    np.testing.assert_allclose(
        matched_f1_score(y_true, y_pred, average=None), [2 * 2 / (3 + 2)] * 2
    )
    assert clustering_report(y_true, y_pred)["n_clusters_found"] == 4


def test_one_cluster_per_sample_is_not_perfect():
    y_true = [0, 0, 1, 1]
    y_pred = [0, 1, 2, 3]
    assert clustering_accuracy(y_true, y_pred) == 0.5
    assert balanced_clustering_accuracy(y_true, y_pred) == 0.5


def test_fewer_clusters_than_classes():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [5, 5, 5, 5, 5, 5]
    assert len(match_labels(y_true, y_pred)) == 1
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(1 / 3)
    assert balanced_clustering_accuracy(y_true, y_pred) == pytest.approx(1 / 3)
    f1 = matched_f1_score(y_true, y_pred, average=None)
    assert sorted(f1.tolist()) == pytest.approx([0.0, 0.0, 2 * 2 / (2 + 6)])


@pytest.mark.parametrize("seed", range(20))
def test_matching_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_classes, n_clusters = rng.integers(1, 5), rng.integers(1, 5)
    y_true = rng.integers(0, n_classes, size=25)
    y_pred = rng.integers(0, n_clusters, size=25)
    best_total, best_hits = _brute_force_best(y_true, y_pred)
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(best_total / 25)

    mapping = match_labels(y_true, y_pred)
    assert len(set(mapping.values())) == len(mapping)  # one-to-one
    hits = sum(np.sum((y_pred == k) & (y_true == c)) for k, c in mapping.items())
    assert hits == best_total

    # F1 equals sklearn's on the explicitly relabelled prediction.
    relabelled = np.array([mapping.get(k, -1) for k in y_pred.tolist()])
    classes = np.unique(y_true)
    expected = f1_score(
        y_true, relabelled, labels=classes, average="macro", zero_division=0.0
    )
    assert matched_f1_score(y_true, y_pred) == pytest.approx(expected)
    recalls = [np.mean(relabelled[y_true == c] == c) for c in classes]
    assert balanced_clustering_accuracy(y_true, y_pred) == pytest.approx(
        np.mean(recalls)
    )


def test_inputs_accept_pandas_and_lists_and_are_not_modified():
    pd = pytest.importorskip("pandas")
    y_true = pd.Series([1, 1, 2, 2], index=[10, 11, 12, 13])
    y_pred = np.array([7, 7, 3, 3])
    y_pred_copy = y_pred.copy()
    assert clustering_accuracy(y_true, y_pred) == 1.0
    assert clustering_accuracy([1, 1, 2, 2], (7, 7, 3, 3)) == 1.0
    np.testing.assert_array_equal(y_pred, y_pred_copy)


def test_column_vector_is_accepted_with_warning():
    from sklearn.exceptions import DataConversionWarning

    with pytest.warns(DataConversionWarning):
        assert clustering_accuracy(np.array([[0], [1]]), [1, 0]) == 1.0


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        ([0, 1, 1], [0, 1], "inconsistent numbers of samples"),
        ([], [], "y_true is empty"),
        ([0, np.nan], [0, 1], "y_true contains NaN"),
        ([0, 1], [0.0, np.inf], "y_pred contains NaN or infinity"),
        (np.array(["a", 1, None], dtype=object), [0, 1, 1], "y_true mixes label"),
        (np.zeros((3, 2)), [0, 1, 1], "y should be a 1d array"),
    ],
)
def test_invalid_labels_raise(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        clustering_accuracy(y_true, y_pred)


def test_invalid_average_raises():
    with pytest.raises(ValueError, match="average must be one of"):
        matched_f1_score([0, 1], [0, 1], average="binary")


@pytest.mark.parametrize(
    "fractions", [(0.5, 0.5), (0.3, 0.3, 0.3), (0.0, 0.7, 0.3), (-0.1, 0.8, 0.3), 3]
)
def test_invalid_fractions_raise(fractions):
    with pytest.raises(ValueError, match="fractions must be"):
        head_medium_tail_accuracy([0, 1, 2], [0, 1, 2], fractions=fractions)


@pytest.mark.parametrize(
    "n_classes, expected",
    [
        (1, (1, 0, 0)),
        (2, (1, 0, 1)),
        (3, (1, 1, 1)),
        (4, (1, 2, 1)),
        (5, (2, 1, 2)),
        (6, (2, 2, 2)),
        (7, (2, 3, 2)),
        (10, (3, 4, 3)),
        (15, (5, 5, 5)),
        (100, (30, 40, 30)),
    ],
)
def test_group_sizes_documented_values(n_classes, expected):
    assert _group_sizes(n_classes, (0.3, 0.4, 0.3)) == expected


@pytest.mark.parametrize(
    "fractions", [(0.3, 0.4, 0.3), (0.1, 0.8, 0.1), (0.45, 0.1, 0.45), (0.8, 0.1, 0.1)]
)
@pytest.mark.parametrize("n_classes", range(3, 40))
def test_group_sizes_all_non_empty_from_three_classes(n_classes, fractions):
    sizes = _group_sizes(n_classes, fractions)
    assert sum(sizes) == n_classes
    assert min(sizes) >= 1


def test_head_medium_tail_sorts_classes_by_size():
    # Labels are not in size order: class "c" is the biggest, "a" the smallest.
    sizes = {"a": 2, "b": 4, "c": 8}
    y_true = np.repeat(list(sizes), list(sizes.values()))
    y_pred = y_true.copy()
    y_pred[y_true == "a"] = "c"  # the tail class is swallowed by the head
    y_pred[np.flatnonzero(y_true == "b")[:1]] = "c"  # a quarter of medium is lost
    scores = head_medium_tail_accuracy(y_true, y_pred)
    assert scores == pytest.approx({"head": 1.0, "medium": 0.75, "tail": 0.0})


def test_head_medium_tail_ten_classes_against_hand_computation():
    sizes = np.array([50, 40, 35, 30, 25, 20, 15, 12, 10, 8])
    y_true = np.repeat(np.arange(10), sizes)
    y_pred = y_true.copy()
    # Move class k's first k // 2 samples into singleton clusters, which stay
    # unmatched: class k's recall is (n_k - k // 2) / n_k.
    lost = np.arange(10) // 2
    for k in range(10):
        moved = np.flatnonzero(y_true == k)[: lost[k]]
        y_pred[moved] = 100 + moved
    recall = (sizes - lost) / sizes
    scores = head_medium_tail_accuracy(y_true, y_pred)
    assert scores["head"] == pytest.approx(recall[:3].mean())
    assert scores["medium"] == pytest.approx(recall[3:7].mean())
    assert scores["tail"] == pytest.approx(recall[7:].mean())
    assert balanced_clustering_accuracy(y_true, y_pred) == pytest.approx(recall.mean())


def test_head_medium_tail_ties_keep_label_order():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 1, 1]
    # Equal sizes: head is class 0, medium class 1, tail class 2 (unmatched).
    assert head_medium_tail_accuracy(y_true, y_pred) == {
        "head": 1.0,
        "medium": 1.0,
        "tail": 0.0,
    }


def test_head_medium_tail_two_classes_has_nan_medium():
    scores = head_medium_tail_accuracy([0, 0, 0, 1], [0, 0, 0, 1])
    assert scores["head"] == 1.0 and scores["tail"] == 1.0
    assert np.isnan(scores["medium"])


def test_clustering_report_keys_and_values():
    rng = np.random.default_rng(3)
    y_true = np.repeat(np.arange(5), [40, 20, 10, 6, 4])
    y_pred = np.where(rng.random(len(y_true)) < 0.3, rng.integers(0, 6, 80), y_true)
    report = clustering_report(y_true, y_pred)
    assert list(report) == [
        "balanced_accuracy",
        "accuracy",
        "macro_f1",
        "nmi",
        "ari",
        "head",
        "medium",
        "tail",
        "n_clusters_found",
    ]
    assert report["balanced_accuracy"] == balanced_clustering_accuracy(y_true, y_pred)
    assert report["accuracy"] == clustering_accuracy(y_true, y_pred)
    assert report["macro_f1"] == matched_f1_score(y_true, y_pred)
    assert report["nmi"] == pytest.approx(normalized_mutual_info_score(y_true, y_pred))
    assert report["ari"] == pytest.approx(adjusted_rand_score(y_true, y_pred))
    groups = head_medium_tail_accuracy(y_true, y_pred)
    assert {k: report[k] for k in ("head", "medium", "tail")} == groups
    assert report["n_clusters_found"] == len(np.unique(y_pred))
    assert isinstance(report["n_clusters_found"], int)
    for key, value in report.items():
        if key != "n_clusters_found":
            assert type(value) is float


def test_public_api():
    import skclust_ot.metrics as metrics

    assert sorted(metrics.__all__) == sorted(
        [
            "match_labels",
            "clustering_accuracy",
            "balanced_clustering_accuracy",
            "matched_f1_score",
            "head_medium_tail_accuracy",
            "clustering_report",
            "embedding_silhouette_score",
        ]
    )
    for name in metrics.__all__:
        assert callable(getattr(metrics, name))
