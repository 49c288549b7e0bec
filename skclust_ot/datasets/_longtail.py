"""Long-tailed subsampling of labelled data sets, for imbalanced clustering."""

import math
import numbers

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import (
    Bunch,
    _safe_indexing,
    check_consistent_length,
    check_random_state,
    check_scalar,
    column_or_1d,
)

__all__ = ["long_tail_counts", "make_long_tailed", "load_digits_long_tailed"]


def _check_generator(random_state):
    """Turn ``random_state`` into a generator without touching the global RNG.

    Unlike :func:`sklearn.utils.check_random_state`, ``None`` gives a fresh
    ``np.random.default_rng()`` rather than NumPy's global ``RandomState``.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, bool
    ):
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state
    # Delegate the error message for anything else to scikit-learn.
    return check_random_state(random_state)


def long_tail_counts(n_classes, *, n_max, imbalance_ratio):
    """Per-class sample counts of an exponential long tail.

    Class ``k`` (``k = 0, ..., n_classes - 1``) gets
    ``n_k = floor(n_max * imbalance_ratio ** (-k / (n_classes - 1)))`` samples,
    so class 0 is the head with ``n_max`` samples and the last class the tail
    with ``floor(n_max / imbalance_ratio)``.

    Parameters
    ----------
    n_classes : int
        Number of classes, at least 1. A single class gets ``n_max`` samples.
    n_max : int
        Size of the head class, at least 1.
    imbalance_ratio : float
        Ratio of the head size to the tail size before flooring, at least 1.

    Returns
    -------
    counts : ndarray of shape (n_classes,), dtype int64
        Non-increasing class sizes.

    Notes
    -----
    A product that lies within 1e-9 of an integer is taken as that integer
    before flooring, so that floating-point round-off in
    ``imbalance_ratio ** (-k / (n_classes - 1))`` cannot remove a sample.

    Examples
    --------
    >>> from skclust_ot.datasets import long_tail_counts
    >>> long_tail_counts(5, n_max=100, imbalance_ratio=10).tolist()
    [100, 56, 31, 17, 10]
    """
    n_classes = check_scalar(n_classes, "n_classes", numbers.Integral, min_val=1)
    n_max = check_scalar(n_max, "n_max", numbers.Integral, min_val=1)
    imbalance_ratio = check_scalar(
        imbalance_ratio, "imbalance_ratio", numbers.Real, min_val=1
    )
    if not math.isfinite(imbalance_ratio):
        raise ValueError(f"imbalance_ratio must be finite; got {imbalance_ratio}.")
    if n_classes == 1:
        return np.array([n_max], dtype=np.int64)
    counts = [
        math.floor(n_max * imbalance_ratio ** (-k / (n_classes - 1)) + 1e-9)
        for k in range(n_classes)
    ]
    if counts[-1] < 1:
        raise ValueError(
            f"n_max={n_max} with imbalance_ratio={imbalance_ratio} leaves the tail "
            f"class with no sample (n_max / imbalance_ratio < 1); increase n_max to "
            f"at least {math.ceil(imbalance_ratio)} or lower imbalance_ratio."
        )
    return np.asarray(counts, dtype=np.int64)


def make_long_tailed(X, y, *, n_max, imbalance_ratio, random_state=None, shuffle=True):
    """Subsample a labelled data set so that its class sizes follow a long tail.

    The classes are taken in the order of ``np.unique(y)`` (sorted labels):
    the first class is the head and keeps ``n_max`` samples, class ``k`` keeps
    ``n_k = floor(n_max * imbalance_ratio ** (-k / (K - 1)))`` samples (see
    :func:`long_tail_counts`), drawn uniformly without replacement.

    Parameters
    ----------
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, ...)
        Samples. Rows are selected by position (``X.iloc`` for a DataFrame, so
        its index labels are kept); the input is not modified.
    y : array-like or Series of shape (n_samples,)
        Class labels of any sortable type.
    n_max : int
        Number of samples kept in the head class (the smallest label), >= 1.
    imbalance_ratio : float
        Head-to-tail size ratio, >= 1. ``1`` gives a balanced subsample.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, \
            default=None
        Source of randomness. An int seeds ``np.random.default_rng``; a
        Generator or RandomState is used (and advanced) as is; ``None`` uses a
        fresh, unseeded ``np.random.default_rng()``. NumPy's global RNG is
        never used.
    shuffle : bool, default=True
        If True, the kept samples are returned in random order; if False, in
        their original relative order.

    Returns
    -------
    X_lt : same type as X, of shape (sum(n_k), ...)
        The kept samples.
    y_lt : same type as y, of shape (sum(n_k),)
        Their labels.

    Raises
    ------
    ValueError
        If ``n_max < 1``, ``imbalance_ratio < 1``, the tail would get no sample,
        or a class has fewer samples than its target ``n_k``.

    See Also
    --------
    long_tail_counts : The class sizes alone.
    load_digits_long_tailed : This applied to scikit-learn's digits.

    Examples
    --------
    >>> import numpy as np
    >>> from skclust_ot.datasets import make_long_tailed
    >>> X = np.arange(60).reshape(30, 2)
    >>> y = np.repeat([0, 1, 2], 10)
    >>> X_lt, y_lt = make_long_tailed(X, y, n_max=9, imbalance_ratio=3,
    ...                               random_state=0)
    >>> X_lt.shape
    (17, 2)
    >>> np.bincount(y_lt).tolist()
    [9, 5, 3]
    """
    labels = column_or_1d(y, warn=True)
    check_consistent_length(X, labels)
    if labels.dtype.kind in "fc" and not np.all(np.isfinite(labels)):
        raise ValueError("y contains NaN or infinity; every sample needs a label.")
    try:
        classes, codes = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise ValueError(
            "y mixes label types that cannot be sorted together (e.g. strings and "
            "numbers, or None); use labels of one type."
        ) from exc
    codes = codes.reshape(-1)
    if len(classes) == 0:
        raise ValueError("y is empty; at least one labelled sample is needed.")
    counts = long_tail_counts(
        len(classes), n_max=n_max, imbalance_ratio=imbalance_ratio
    )
    available = np.bincount(codes, minlength=len(classes))
    short = np.flatnonzero(available < counts)
    if len(short):
        k = short[0]
        raise ValueError(
            f"Class {classes.tolist()[k]!r} (position {k} in sorted class order) has "
            f"{available[k]} samples but the long tail needs n_k={counts[k]}; "
            f"lower n_max or raise imbalance_ratio. Needed per class: "
            f"{counts.tolist()}, available: {available.tolist()}."
        )
    rng = _check_generator(random_state)
    kept = np.concatenate(
        [
            rng.choice(np.flatnonzero(codes == k), size=n_k, replace=False)
            for k, n_k in enumerate(counts)
        ]
    )
    kept = rng.permutation(kept) if shuffle else np.sort(kept)
    return _safe_indexing(X, kept), _safe_indexing(y, kept)


def load_digits_long_tailed(
    *, n_max=170, imbalance_ratio=10, random_state=0, return_X_y=True
):
    """Load a long-tailed subsample of scikit-learn's handwritten digits.

    The 1,797 8×8 digits of :func:`sklearn.datasets.load_digits` (shipped with
    scikit-learn, no download) are subsampled by :func:`make_long_tailed`:
    digit 0 is the head with ``n_max`` images, digit 9 the tail. Pixel values
    are divided by 16, so they lie in [0, 1].

    Parameters
    ----------
    n_max : int, default=170
        Number of images of digit 0, which has 178; every digit needs at
        least its ``n_k`` images (the smallest class, digit 8, has 174).
    imbalance_ratio : float, default=10
        Ratio between the sizes of digit 0 and digit 9, >= 1.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, \
            default=0
        Source of randomness for the subsample and its order; see
        :func:`make_long_tailed`.
    return_X_y : bool, default=True
        If True, return ``(X, y)``; otherwise a :class:`~sklearn.utils.Bunch`.

    Returns
    -------
    X : ndarray of shape (n_samples, 64), dtype float64
        Pixel intensities in [0, 1]. Returned when ``return_X_y=True``.
    y : ndarray of shape (n_samples,), dtype int64
        Digit labels 0-9. Returned when ``return_X_y=True``.
    data : Bunch
        Returned when ``return_X_y=False``, with ``data`` (X), ``target`` (y),
        ``images`` (n_samples, 8, 8), ``target_names``, ``feature_names``,
        ``class_counts`` (per digit) and ``DESCR``.

    See Also
    --------
    make_long_tailed : The subsampling applied.

    Examples
    --------
    >>> import numpy as np
    >>> from skclust_ot.datasets import load_digits_long_tailed
    >>> X, y = load_digits_long_tailed()
    >>> X.shape, X.dtype.name
    ((690, 64), 'float64')
    >>> np.bincount(y).tolist()
    [170, 131, 101, 78, 61, 47, 36, 28, 21, 17]
    >>> float(X.min()), float(X.max())
    (0.0, 1.0)
    """
    digits = load_digits()
    images, target = make_long_tailed(
        digits.images.astype(np.float64) / 16.0,
        digits.target.astype(np.int64),
        n_max=n_max,
        imbalance_ratio=imbalance_ratio,
        random_state=random_state,
    )
    data = images.reshape(len(images), -1)
    if return_X_y:
        return data, target
    counts = np.bincount(target, minlength=len(digits.target_names))
    return Bunch(
        data=data,
        target=target,
        images=images,
        target_names=digits.target_names.copy(),
        feature_names=list(digits.feature_names),
        class_counts=counts,
        DESCR=(
            "Long-tailed subsample of scikit-learn's handwritten digits "
            f"(n_max={n_max}, imbalance_ratio={imbalance_ratio}, "
            f"random_state={random_state!r}); pixels scaled to [0, 1]. "
            f"Images per digit 0-9: {counts.tolist()}.\n\n" + digits.DESCR
        ),
    )
