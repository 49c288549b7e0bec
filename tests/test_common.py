"""scikit-learn's own estimator checks, run centrally with fast parameters."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skclust_ot import SP2OTClustering

# Every check is expected to pass; if one ever has to be listed here, it
# comes with the reason, as {check_name: reason}.
EXPECTED_FAILED_CHECKS = {}


def _fast_estimators():
    return [
        SP2OTClustering(n_clusters=3, max_epochs=4, random_state=0),
        SP2OTClustering(n_clusters=3, encoder="identity", max_epochs=3, random_state=0),
    ]


@parametrize_with_checks(
    _fast_estimators(),
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
