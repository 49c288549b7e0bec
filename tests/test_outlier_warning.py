"""The outlier warning has its own class, which users can filter (#15)."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from skclust_ot import SP2OTClustering
from skclust_ot.exceptions import OutlierWarning


def _with_far_outliers():
    X, _ = make_blobs(300, n_features=4, centers=10, random_state=0)
    return np.vstack([X, np.full((3, 4), 1e4)])


def test_outlier_warning_is_a_user_warning():
    assert issubclass(OutlierWarning, UserWarning)


@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
def test_far_outliers_warn_with_the_named_class():
    est = SP2OTClustering(n_clusters=10, max_epochs=1, random_state=0)
    with pytest.warns(OutlierWarning, match="standardize='robust'"):
        est.fit(_with_far_outliers())


def test_the_outlier_warning_can_be_filtered_by_class():
    est = SP2OTClustering(n_clusters=3, max_epochs=1, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", OutlierWarning)
        est.fit(_with_far_outliers())
    assert not [w for w in caught if "dominated by a few far values" in str(w.message)]
