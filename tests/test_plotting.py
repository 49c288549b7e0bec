"""skclust_ot.plotting: what each picture draws, and the optional-extra error."""

import importlib.util
import sys

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skclust_ot import SP2OTClustering
from skclust_ot.plotting import plot_cluster_sizes, plot_clusters_2d, plot_training_history

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib is optional (pip install skclust_ot[plots])",
)


@pytest.fixture(scope="module")
def pyplot():
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is optional (pip install skclust_ot[plots])")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture(scope="module")
def long_tailed():
    rng = np.random.default_rng(0)
    sizes = [40, 15, 5]
    # centres not on one ray from the mean: the cosine head tells them apart
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 3.0], [0.0, 6.0, -3.0]])
    X = np.vstack([rng.normal(c, 0.5, (n, 3)) for c, n in zip(centres, sizes)])
    y = np.repeat(np.arange(3), sizes)
    return X, y


@pytest.fixture(scope="module")
def fitted(long_tailed):
    X, _ = long_tailed
    return SP2OTClustering(n_clusters=3, max_epochs=3, random_state=0).fit(X)


@needs_matplotlib
def test_cluster_sizes_beside_true_sizes(pyplot, fitted, long_tailed):
    _, y = long_tailed
    ax = plot_cluster_sizes(fitted, y_true=y)
    bars = ax.patches
    assert len(bars) == 6  # 3 true classes + 3 clusters
    true_heights = [bar.get_height() for bar in ax.containers[0]]
    found_heights = [bar.get_height() for bar in ax.containers[1]]
    assert true_heights == [40, 15, 5]
    assert found_heights == sorted(found_heights, reverse=True)
    assert sum(found_heights) == len(y)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["true classes", "clusters"]


@needs_matplotlib
def test_cluster_sizes_from_labels_on_given_axes(pyplot):
    _, ax = pyplot.subplots()
    returned = plot_cluster_sizes(np.array([2, 2, 2, 0, -1, 1, 1]), ax=ax)
    assert returned is ax
    # -1 (unassigned) is not a cluster
    assert [bar.get_height() for bar in ax.patches] == [3, 2, 1]


@needs_matplotlib
def test_cluster_sizes_of_a_pipeline(pyplot, long_tailed):
    X, _ = long_tailed
    pipe = make_pipeline(StandardScaler(),
                         SP2OTClustering(n_clusters=3, max_epochs=2, random_state=0)).fit(X)
    ax = plot_cluster_sizes(pipe)
    assert sum(bar.get_height() for bar in ax.patches) == len(X)


@needs_matplotlib
def test_training_history_draws_loss_and_rho(pyplot, fitted):
    ax = plot_training_history(fitted)
    (loss_line,) = ax.get_lines()
    np.testing.assert_allclose(loss_line.get_ydata(), fitted.history_[:, "train_loss"])
    np.testing.assert_array_equal(loss_line.get_xdata(), [1, 2, 3])
    rho_axes = [other for other in ax.figure.axes if other is not ax]
    assert len(rho_axes) == 1
    (rho_line,) = rho_axes[0].get_lines()
    rho = rho_line.get_ydata()
    np.testing.assert_allclose(rho, fitted.history_[:, "rho"])
    assert np.all(np.diff(rho) >= 0) and rho[-1] <= 1


@needs_matplotlib
def test_clusters_2d_projects_and_colours_each_cluster(pyplot, fitted, long_tailed):
    X, _ = long_tailed
    labels = fitted.labels_.copy()
    labels[0] = -1
    ax = plot_clusters_2d(X, labels)
    collections = ax.collections
    assert len(collections) == np.unique(labels).size
    assert sum(len(c.get_offsets()) for c in collections) == len(X)
    assert ax.get_xlabel().startswith("PC 1")


@needs_matplotlib
def test_clusters_2d_accepts_images_and_rejects_mismatch(pyplot):
    images = np.random.default_rng(0).random((20, 1, 4, 4))
    ax = plot_clusters_2d(images, np.arange(20) % 2)
    assert len(ax.collections) == 2
    with pytest.raises(ValueError, match="one label per sample"):
        plot_clusters_2d(images, np.zeros(5))


@needs_matplotlib
def test_unfitted_estimator_says_fit_first(pyplot):
    with pytest.raises(ValueError, match="fit"):
        plot_training_history(SP2OTClustering())
    with pytest.raises(ValueError, match="fit"):
        plot_cluster_sizes(SP2OTClustering())


@pytest.mark.parametrize("plot", [plot_training_history, plot_cluster_sizes])
@pytest.mark.parametrize("pipeline", [False, True])
def test_unfitted_estimator_raises_not_fitted_error(plot, pipeline, pyplot):
    from sklearn.exceptions import NotFittedError

    est = SP2OTClustering()
    if pipeline:
        est = make_pipeline(StandardScaler(), est)
    with pytest.raises(NotFittedError, match="not fitted yet.*call fit"):
        plot(est)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install skclust_ot\[plots\]"):
        plot_cluster_sizes([0, 1, 1])
