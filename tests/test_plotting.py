"""skclust_ot.plotting: what each picture draws, and the optional-extra error."""

import importlib.util
import sys

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skclust_ot import SP2OTClustering
from skclust_ot.plotting import (
    plot_cluster_sizes,
    plot_clusters_2d,
    plot_confusion,
    plot_training_history,
)

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


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


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


# ---------------------------------------------------------------------------
# issue #15: matched confusion heatmap, legends off the data, integer epochs,
# the learned embedding in 2-D, a palette that keeps -1 apart
# ---------------------------------------------------------------------------


def _display_boxes(ax):
    """Display-space boxes of what ax plots: bars, scatter points, line vertices."""
    from matplotlib.transforms import Bbox

    boxes = [patch.get_window_extent() for patch in ax.patches]
    for collection in ax.collections:
        for x, y in ax.transData.transform(collection.get_offsets()):
            boxes.append(Bbox.from_bounds(x - 1, y - 1, 2, 2))
    for line in ax.get_lines():
        xy = line.get_xydata()
        # the segments too, sampled densely
        dense = np.concatenate([np.linspace(a, b, 50) for a, b in zip(xy[:-1], xy[1:])]
                               or [xy])
        for x, y in line.get_transform().transform(dense):
            boxes.append(Bbox.from_bounds(x - 1, y - 1, 2, 2))
    return boxes


def _assert_legend_off_data(ax, data_axes=None):
    ax.figure.canvas.draw()
    legend = ax.get_legend()
    assert legend is not None
    box = legend.get_window_extent()
    for data_ax in data_axes or [ax]:
        # off the plotted area altogether, so it covers no data point
        assert not box.overlaps(data_ax.get_window_extent()), (box, data_ax.bbox)
        hits = [b for b in _display_boxes(data_ax) if box.overlaps(b)]
        assert not hits, hits[:3]


@needs_matplotlib
def test_cluster_sizes_legend_is_off_the_bars(pyplot):
    # equal sizes: the bars fill the axes, a legend inside must cover one
    labels = np.repeat(np.arange(4), 10)
    ax = plot_cluster_sizes(labels, y_true=labels[::-1])
    _assert_legend_off_data(ax)


@needs_matplotlib
def test_training_history_legend_is_off_the_curves(pyplot, fitted):
    ax = plot_training_history(fitted)
    _assert_legend_off_data(ax, data_axes=ax.figure.axes)


@needs_matplotlib
def test_clusters_2d_legend_is_off_the_points(pyplot):
    # a grid of points covering the whole axes
    grid = np.stack(np.meshgrid(np.linspace(0, 1, 15), np.linspace(0, 1, 15)), -1)
    grid = grid.reshape(-1, 2)
    ax = plot_clusters_2d(grid, (grid[:, 0] > 0.5).astype(int))
    _assert_legend_off_data(ax)


@needs_matplotlib
def test_training_history_epochs_are_whole_numbers(pyplot, fitted):
    assert len(fitted.history_) == 3
    ax = plot_training_history(fitted)
    ax.figure.canvas.draw()
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def _colours_by_label(ax):
    from matplotlib.colors import to_rgba

    return {c.get_label().split(" ")[0]: to_rgba(c.get_facecolor()[0])
            for c in ax.collections}


@needs_matplotlib
@pytest.mark.parametrize("n_clusters", [8, 15, 25])
def test_noise_stays_grey_and_clusters_distinct(pyplot, n_clusters):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(-1, n_clusters), 4)
    ax = plot_clusters_2d(rng.normal(size=(labels.size, 2)), labels)
    colours = _colours_by_label(ax)
    noise = colours.pop("-1")
    assert len(colours) == n_clusters
    r, g, b, _ = noise
    assert r == g == b and r >= 0.75  # light grey
    cluster_colours = list(colours.values())
    assert noise not in cluster_colours
    assert len(set(cluster_colours)) == n_clusters  # all distinct
    # and no cluster is grey, so none looks like noise
    assert not [c for c in cluster_colours if c[0] == c[1] == c[2]]


def _heatmap(ax):
    (image,) = ax.get_images()
    return np.asarray(image.get_array())


@needs_matplotlib
def test_confusion_rows_by_class_size_columns_matched(pyplot):
    # class sizes 40 / 15 / 5 given as 2 / 0 / 1; clusters named so that the
    # matched column of each class is not its label
    y = np.repeat([2, 0, 1], [40, 15, 5])
    labels = np.repeat([7, 5, 9, 7], [36, 4, 15, 5])
    # cluster 7: 36 of class 2 and all 5 of class 1; 5: 4 of class 2; 9: class 0
    ax = plot_confusion(labels, y, normalize=None)
    np.testing.assert_array_equal(_heatmap(ax), [[36, 0, 4], [0, 15, 0], [5, 0, 0]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["2 (40)", "0 (15)", "1 (5)"]
    # class 1 gets the spare cluster 5: 36 + 15 + 0 matched beats 5 + 4 + 15
    assert [t.get_text() for t in ax.get_xticklabels()] == ["7", "9", "5"]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and "36" in texts and texts.count("0") == 5
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    outlined = sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in ax.patches)
    assert outlined == [(0, 0), (1, 1), (2, 2)]


@needs_matplotlib
def test_confusion_shows_mixing_that_sorted_bars_hide(pyplot):
    # the sizes are right (40 / 15 / 5) but the members are shuffled
    y = np.repeat(np.arange(3), [40, 15, 5])
    labels = np.random.default_rng(0).permutation(y)
    bars = plot_cluster_sizes(labels, y_true=y)
    assert [b.get_height() for b in bars.containers[0]] == [
        b.get_height() for b in bars.containers[1]]
    ax = plot_confusion(labels, y)
    values = _heatmap(ax)
    np.testing.assert_allclose(values.sum(axis=1), 1.0)  # fractions of each class
    assert np.diag(values).mean() < 0.7  # far from a clean diagonal
    assert all(len(t.get_text()) == 4 for t in ax.texts)  # "0.62"


@needs_matplotlib
def test_confusion_of_estimator_pipeline_and_noise(pyplot, fitted, long_tailed):
    X, y = long_tailed
    ax = plot_confusion(fitted, y, normalize="all")
    assert _heatmap(ax).sum() == pytest.approx(1.0)
    pipe = make_pipeline(StandardScaler(),
                         SP2OTClustering(n_clusters=3, max_epochs=2, random_state=0)).fit(X)
    ax = plot_confusion(pipe, y, normalize="pred")
    np.testing.assert_allclose(_heatmap(ax).sum(axis=0), 1.0)
    # -1 is no cluster: not matched, drawn last
    labels = y.copy()
    labels[:30] = -1
    ax = plot_confusion(labels, y, normalize=None)
    assert ax.get_xticklabels()[-1].get_text() == "-1 (noise)"
    np.testing.assert_array_equal(_heatmap(ax)[:, -1], [30, 0, 0])
    assert [t.get_text() for t in ax.get_xticklabels()[:3]] == ["0", "1", "2"]


@needs_matplotlib
def test_confusion_rejects_bad_input(pyplot):
    with pytest.raises(ValueError, match="normalize"):
        plot_confusion([0, 1], [0, 1], normalize="rows")
    with pytest.raises(ValueError, match="one true class per sample"):
        plot_confusion([0, 1, 1], [0, 1])


@needs_matplotlib
def test_clusters_2d_of_the_learned_embedding(pyplot, fitted, long_tailed):
    from sklearn.decomposition import PCA

    X, _ = long_tailed
    ax = plot_clusters_2d(X, fitted, space="embedding")
    assert ax.get_xlabel().startswith("embedding PC 1")
    z = fitted.embed(X)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    expected = PCA(n_components=2).fit_transform(z)
    drawn = np.vstack([c.get_offsets() for c in ax.collections])
    order = np.concatenate([np.flatnonzero(fitted.labels_ == g)
                            for g in np.unique(fitted.labels_)])
    np.testing.assert_allclose(drawn, expected[order], atol=1e-8)
    with pytest.raises(ValueError, match="fitted estimator"):
        plot_clusters_2d(X, fitted.labels_, space="embedding")


@needs_matplotlib
def test_clusters_2d_of_a_given_projection_beside_true_classes(pyplot, long_tailed):
    _, y = long_tailed
    projection = np.random.default_rng(0).normal(size=(len(y), 2))
    labels = np.where(y == 0, 5, np.where(y == 1, 3, 4))  # 0 -> 5, 1 -> 3, 2 -> 4
    clusters_ax, classes_ax = plot_clusters_2d(None, labels, space=projection, y_true=y)
    for panel in (clusters_ax, classes_ax):
        drawn = np.vstack([c.get_offsets() for c in panel.collections])
        assert sorted(map(tuple, drawn)) == sorted(map(tuple, projection))
    assert classes_ax.get_legend().get_title().get_text() == "class (size)"
    cluster_colours, class_colours = _colours_by_label(clusters_ax), _colours_by_label(classes_ax)
    # each class in the colour of the cluster matched to it
    assert [class_colours[c] for c in "012"] == [cluster_colours[c] for c in "534"]
    with pytest.raises(ValueError, match="two Axes"):
        plot_clusters_2d(None, labels, space=projection, y_true=y, ax=clusters_ax)


@needs_matplotlib
def test_clusters_2d_embedding_of_a_pipeline(pyplot, long_tailed):
    X, y = long_tailed
    pipe = make_pipeline(StandardScaler(),
                         SP2OTClustering(n_clusters=3, max_epochs=2, random_state=0)).fit(X)
    _, axes = pyplot.subplots(1, 2)
    returned = plot_clusters_2d(X, pipe, space="embedding", y_true=y, ax=axes)
    assert list(returned) == list(axes)
    assert sum(len(c.get_offsets()) for c in axes[1].collections) == len(X)


@pytest.mark.parametrize("pipeline", [False, True])
def test_unfitted_estimator_raises_not_fitted_error_in_new_plots(pipeline, pyplot, long_tailed):
    from sklearn.exceptions import NotFittedError

    X, y = long_tailed
    est = SP2OTClustering()
    if pipeline:
        est = make_pipeline(StandardScaler(), est)
    with pytest.raises(NotFittedError, match="not fitted yet.*call fit"):
        plot_confusion(est, y)
    with pytest.raises(NotFittedError, match="not fitted yet.*call fit"):
        plot_clusters_2d(X, est, space="embedding")
