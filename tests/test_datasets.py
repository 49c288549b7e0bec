"""Tests for skclust_ot.datasets: long-tailed subsampling of labelled data."""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from skclust_ot.datasets import (
    load_digits_long_tailed,
    long_tail_counts,
    make_long_tailed,
)


def _balanced_data(n_classes=5, n_per_class=60, n_features=3, labels=None):
    """Data whose first feature is the label index, so alignment can be checked."""
    labels = np.arange(n_classes) if labels is None else np.asarray(labels)
    y = np.repeat(labels, n_per_class)
    codes = np.repeat(np.arange(n_classes), n_per_class)
    X = np.column_stack(
        [codes, np.arange(len(y))] + [np.ones(len(y))] * (n_features - 2)
    ).astype(float)
    return X, y


def _formula(n_max, ratio, n_classes):
    if n_classes == 1:
        return [n_max]
    return [
        math.floor(n_max * ratio ** (-k / (n_classes - 1))) for k in range(n_classes)
    ]


def test_counts_hand_computed():
    assert long_tail_counts(5, n_max=100, imbalance_ratio=10).tolist() == [
        100,
        56,
        31,
        17,
        10,
    ]
    assert long_tail_counts(10, n_max=170, imbalance_ratio=10).tolist() == [
        170,
        131,
        101,
        78,
        61,
        47,
        36,
        28,
        21,
        17,
    ]
    assert long_tail_counts(1, n_max=7, imbalance_ratio=5).tolist() == [7]
    assert long_tail_counts(4, n_max=9, imbalance_ratio=1).tolist() == [9] * 4


@pytest.mark.parametrize("n_classes", [2, 3, 5, 10, 17])
@pytest.mark.parametrize("n_max, ratio", [(50, 10), (60, 2.5), (100, 50), (37, 1)])
def test_make_long_tailed_counts_follow_formula(n_classes, n_max, ratio):
    X, y = _balanced_data(n_classes=n_classes, n_per_class=n_max)
    X_lt, y_lt = make_long_tailed(
        X, y, n_max=n_max, imbalance_ratio=ratio, random_state=0
    )
    expected = _formula(n_max, ratio, n_classes)
    assert np.bincount(y_lt, minlength=n_classes).tolist() == expected
    assert long_tail_counts(n_classes, n_max=n_max, imbalance_ratio=ratio).tolist() == (
        expected
    )
    assert X_lt.shape == (sum(expected), X.shape[1])


def test_head_is_smallest_label_and_rows_stay_aligned():
    labels = ["zebra", "ant", "moose"]  # sorted: ant (head), moose, zebra (tail)
    X, y = _balanced_data(n_classes=3, n_per_class=40, labels=labels)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    X_lt, y_lt = make_long_tailed(X, y, n_max=40, imbalance_ratio=4, random_state=0)
    values, counts = np.unique(y_lt, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == {
        "ant": 40,
        "moose": 20,
        "zebra": 10,
    }
    # Each kept row is the original row of that sample, with its own label.
    original_rows = X_lt[:, 1].astype(int)
    np.testing.assert_array_equal(X[np.argsort(order)][original_rows], X_lt)
    np.testing.assert_array_equal(np.asarray(labels)[X_lt[:, 0].astype(int)], y_lt)


def test_samples_are_drawn_without_replacement():
    X, y = _balanced_data(n_classes=4, n_per_class=30)
    X_lt, _ = make_long_tailed(X, y, n_max=30, imbalance_ratio=3, random_state=5)
    assert len(np.unique(X_lt[:, 1])) == len(X_lt)


def test_deterministic_for_a_seed_and_different_across_seeds():
    X, y = _balanced_data()
    first = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=42)
    second = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=42)
    other = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=43)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], other[0])
    # The same samples are kept whether or not they are shuffled.
    unshuffled, _ = make_long_tailed(
        X, y, n_max=50, imbalance_ratio=5, random_state=42, shuffle=False
    )
    assert set(unshuffled[:, 1]) == set(first[0][:, 1])


def test_int_seed_matches_default_rng_and_generators_are_accepted():
    X, y = _balanced_data()
    from_int = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=7)
    from_gen = make_long_tailed(
        X, y, n_max=50, imbalance_ratio=5, random_state=np.random.default_rng(7)
    )
    np.testing.assert_array_equal(from_int[0], from_gen[0])
    from_rs = make_long_tailed(
        X, y, n_max=50, imbalance_ratio=5, random_state=np.random.RandomState(7)
    )
    from_rs_again = make_long_tailed(
        X, y, n_max=50, imbalance_ratio=5, random_state=np.random.RandomState(7)
    )
    np.testing.assert_array_equal(from_rs[0], from_rs_again[0])
    assert np.bincount(from_rs[1]).tolist() == _formula(50, 5, 5)


def test_shuffle_false_keeps_original_order():
    X, y = _balanced_data()
    X_lt, y_lt = make_long_tailed(
        X, y, n_max=50, imbalance_ratio=5, random_state=0, shuffle=False
    )
    assert np.all(np.diff(X_lt[:, 1]) > 0)
    X_sh, _ = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=0)
    assert not np.all(np.diff(X_sh[:, 1]) > 0)


@pytest.mark.parametrize("random_state", [0, None, np.random.default_rng(3)])
def test_global_rng_untouched(random_state):
    X, y = _balanced_data()
    np.random.seed(12345)
    state_before = np.random.get_state()
    make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=random_state)
    load_digits_long_tailed(random_state=random_state)
    state_after = np.random.get_state()
    assert state_before[0] == state_after[0]
    np.testing.assert_array_equal(state_before[1], state_after[1])
    assert state_before[2:] == state_after[2:]


def test_inputs_not_modified():
    X, y = _balanced_data()
    X_copy, y_copy = X.copy(), y.copy()
    X_lt, y_lt = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=0)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(y, y_copy)
    # The output does not share memory with the input.
    X_lt[:] = -1
    np.testing.assert_array_equal(X, X_copy)


def test_pandas_dataframe_and_series():
    pd = pytest.importorskip("pandas")
    X, y = _balanced_data(labels=list("abcde"))
    index = np.arange(len(y))[::-1] * 10 + 7  # non-default, non-monotonic index
    df = pd.DataFrame(X, columns=["code", "row", "one"], index=index)
    series = pd.Series(y, index=index, name="label")
    df_copy, series_copy = df.copy(), series.copy()

    X_lt, y_lt = make_long_tailed(
        df, series, n_max=50, imbalance_ratio=5, random_state=0
    )
    assert isinstance(X_lt, pd.DataFrame) and isinstance(y_lt, pd.Series)
    assert list(X_lt.columns) == ["code", "row", "one"]
    assert y_lt.name == "label"
    assert X_lt.index.equals(y_lt.index)
    assert set(X_lt.index) <= set(index)
    # Index labels still point at the original rows.
    pd.testing.assert_frame_equal(X_lt, df.loc[X_lt.index])
    pd.testing.assert_series_equal(y_lt, series.loc[y_lt.index])
    assert y_lt.value_counts().sort_index().tolist() == _formula(50, 5, 5)
    pd.testing.assert_frame_equal(df, df_copy)
    pd.testing.assert_series_equal(series, series_copy)

    # Same selection as for the NumPy arrays.
    X_np, y_np = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=0)
    np.testing.assert_array_equal(X_lt.to_numpy(), X_np)
    np.testing.assert_array_equal(y_lt.to_numpy(), y_np)

    # Mixed types: a DataFrame with a NumPy y, and a list y.
    X_mixed, y_mixed = make_long_tailed(
        df, list(y), n_max=50, imbalance_ratio=5, random_state=0
    )
    assert isinstance(X_mixed, pd.DataFrame) and isinstance(y_mixed, list)


def test_sparse_input():
    X, y = _balanced_data()
    X_lt, y_lt = make_long_tailed(
        sp.csr_matrix(X), y, n_max=50, imbalance_ratio=5, random_state=0
    )
    X_dense, _ = make_long_tailed(X, y, n_max=50, imbalance_ratio=5, random_state=0)
    assert sp.issparse(X_lt)
    np.testing.assert_array_equal(X_lt.toarray(), X_dense)


def test_class_with_too_few_samples_is_named():
    X, y = _balanced_data(n_classes=3, n_per_class=40, labels=["a", "b", "c"])
    keep = np.flatnonzero(y != "b")
    keep = np.concatenate([keep, np.flatnonzero(y == "b")[:5]])
    with pytest.raises(ValueError, match=r"Class 'b' .* has 5 samples .* n_k=20"):
        make_long_tailed(X[keep], y[keep], n_max=40, imbalance_ratio=4)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_max": 0, "imbalance_ratio": 2}, ValueError, "n_max == 0, must be >= 1"),
        ({"n_max": 10.5, "imbalance_ratio": 2}, TypeError, "n_max must be an instance"),
        ({"n_max": 10, "imbalance_ratio": 0.5}, ValueError, "imbalance_ratio == 0.5"),
        ({"n_max": 10, "imbalance_ratio": np.inf}, ValueError, "must be finite"),
        ({"n_max": 10, "imbalance_ratio": 20}, ValueError, "tail class with no sample"),
        (
            {"n_max": 10, "imbalance_ratio": 2, "random_state": "seed"},
            ValueError,
            "cannot be used to seed",
        ),
    ],
)
def test_invalid_parameters(kwargs, error, match):
    X, y = _balanced_data()
    with pytest.raises(error, match=match):
        make_long_tailed(X, y, **kwargs)


def test_invalid_labels():
    X, y = _balanced_data()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        make_long_tailed(X[:-1], y, n_max=10, imbalance_ratio=2)
    y_nan = y.astype(float)
    y_nan[0] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        make_long_tailed(X, y_nan, n_max=10, imbalance_ratio=2)
    with pytest.raises(ValueError, match="y is empty"):
        make_long_tailed(X[:0], y[:0], n_max=10, imbalance_ratio=2)


def test_load_digits_long_tailed():
    X, y = load_digits_long_tailed()
    assert X.dtype == np.float64 and X.shape == (690, 64)
    assert y.dtype == np.int64 and y.shape == (690,)
    assert np.bincount(y).tolist() == _formula(170, 10, 10)
    assert X.min() == 0.0 and X.max() == 1.0

    X_again, y_again = load_digits_long_tailed(random_state=0)
    np.testing.assert_array_equal(X, X_again)
    np.testing.assert_array_equal(y, y_again)
    X_other, _ = load_digits_long_tailed(random_state=1)
    assert not np.array_equal(X, X_other)

    X_small, y_small = load_digits_long_tailed(n_max=50, imbalance_ratio=2)
    assert np.bincount(y_small).tolist() == _formula(50, 2, 10)


def test_load_digits_long_tailed_bunch():
    from sklearn.datasets import load_digits

    bunch = load_digits_long_tailed(return_X_y=False)
    X, y = load_digits_long_tailed()
    np.testing.assert_array_equal(bunch.data, X)
    np.testing.assert_array_equal(bunch.target, y)
    np.testing.assert_array_equal(bunch.images.reshape(len(X), -1), X)
    assert bunch.class_counts.tolist() == _formula(170, 10, 10)
    assert len(bunch.feature_names) == 64
    assert "Long-tailed" in bunch.DESCR
    # Each kept image is one of the original digits, scaled by 1/16, with its label.
    digits = load_digits()
    originals = {
        (tuple(row), label) for row, label in zip(digits.data / 16, digits.target)
    }
    assert all((tuple(row), label) in originals for row, label in zip(X, y))


def test_load_digits_long_tailed_too_many_samples():
    with pytest.raises(ValueError, match="Class 0 .* has 178 samples .* n_k=180"):
        load_digits_long_tailed(n_max=180)
    with pytest.raises(ValueError, match="Class 8 .* has 174 samples .* n_k=175"):
        load_digits_long_tailed(n_max=175, imbalance_ratio=1)


def test_public_api():
    import skclust_ot.datasets as datasets

    assert set(datasets.__all__) >= {"make_long_tailed", "load_digits_long_tailed"}
    for name in datasets.__all__:
        assert callable(getattr(datasets, name))
