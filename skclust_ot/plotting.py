"""Pictures of a clustering: cluster sizes, training curves and a 2-D view.

Needs matplotlib, an optional extra: ``pip install skclust_ot[plots]``. It is
imported only when a function is called, so ``import skclust_ot.plotting``
works without it. Every function draws into ``ax`` when given (so pictures
can be combined with ``plt.subplots``) and returns the Axes it drew on.
"""

import numpy as np

__all__ = ["plot_cluster_sizes", "plot_training_history", "plot_clusters_2d"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "skclust_ot.plotting needs matplotlib; install it with "
            "`pip install skclust_ot[plots]` (or `pip install matplotlib`)."
        ) from exc
    return plt


def _axes(ax, **subplot_kwargs):
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(**subplot_kwargs)
    return ax


def _final_step(est):
    """The clusterer itself, also when it ends a Pipeline."""
    return getattr(est, "_final_estimator", est)


def _fitted_attribute(est, name, what):
    """``est.name``; :class:`sklearn.exceptions.NotFittedError` when est is not fitted.

    (NotFittedError is a ValueError and an AttributeError, as scikit-learn's
    ``check_is_fitted`` raises.)
    """
    est = _final_step(est)
    if not hasattr(est, name):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(
            f"This {type(est).__name__} instance is not fitted yet (it has no "
            f"{name!r}): {what} needs a fitted estimator; call fit(X) first."
        )
    return getattr(est, name)


def _sizes_descending(labels):
    """Sizes of the groups in ``labels``, largest first; -1 (unassigned) ignored."""
    labels = np.asarray(labels).ravel()
    if labels.dtype.kind in "iu":
        labels = labels[labels >= 0]
    _, counts = np.unique(labels, return_counts=True)
    return np.sort(counts)[::-1]


def plot_cluster_sizes(est_or_labels, y_true=None, ax=None):
    """Bar chart of the cluster sizes, largest first, beside the true class sizes.

    Imbalanced clustering is about getting these sizes right: k-means and
    balanced OT flatten a long tail, SP²OT should follow it.

    Parameters
    ----------
    est_or_labels : fitted estimator or array-like of shape (n_samples,)
        A fitted clusterer (its ``labels_``; a Pipeline ending in one works
        too) or predicted labels. Label ``-1`` (unassigned) is not counted.
    y_true : array-like of shape (n_samples,), default=None
        True classes; when given, their sizes are drawn beside the clusters'.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When given an estimator that is not fitted.

    Examples
    --------
    Skipped as a doctest because matplotlib is optional:

    >>> from skclust_ot.plotting import plot_cluster_sizes
    >>> ax = plot_cluster_sizes(est, y_true=y)  # doctest: +SKIP
    >>> ax.figure.savefig("cluster_sizes.png")  # doctest: +SKIP
    """
    if hasattr(est_or_labels, "fit"):
        labels = _fitted_attribute(est_or_labels, "labels_", "plot_cluster_sizes")
    else:
        labels = est_or_labels
    found = _sizes_descending(labels)
    ax = _axes(ax)
    if y_true is None:
        ax.bar(np.arange(found.size), found, color="C0", label="clusters")
    else:
        true = _sizes_descending(y_true)
        width = 0.4
        ax.bar(np.arange(true.size) - width / 2, true, width, color="0.6",
               label="true classes")
        ax.bar(np.arange(found.size) + width / 2, found, width, color="C0",
               label="clusters")
    n_bars = max(found.size, 0 if y_true is None else true.size)
    ax.set_xticks(np.arange(n_bars), [str(i + 1) for i in range(n_bars)])
    ax.set_xlabel("rank (largest first)")
    ax.set_ylabel("samples")
    ax.set_title("Cluster sizes")
    ax.legend()
    return ax


def plot_training_history(est, ax=None):
    """Training loss and the transported fraction ρ per epoch.

    The loss is drawn on ``ax`` (left axis), ρ on a twin right axis: ρ rises
    from ``rho0`` to 1 as more samples are trusted with pseudo-labels, so the
    loss usually rises with it rather than falling as in supervised training.

    Parameters
    ----------
    est : fitted SP2OTClustering (or a Pipeline ending in one)
        Reads ``est.history_`` (keys ``"train_loss"`` and ``"rho"``).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The loss axis; the ρ axis is its twin (``ax.figure.axes``).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When ``est`` is not fitted.
    """
    history = _fitted_attribute(est, "history_", "plot_training_history")
    epochs = np.arange(1, len(history) + 1)
    loss = [row.get("train_loss", np.nan) for row in history]
    rho = [row.get("rho", np.nan) for row in history]
    ax = _axes(ax)
    (loss_line,) = ax.plot(epochs, loss, color="C0", marker=".", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    rho_ax = ax.twinx()
    (rho_line,) = rho_ax.plot(epochs, rho, color="C1", marker=".", label="ρ (mass)")
    rho_ax.set_ylabel("ρ, fraction of mass transported")
    rho_ax.set_ylim(0, 1.05)
    ax.legend(handles=[loss_line, rho_line], loc="center right")
    ax.set_title("Training")
    return ax


def plot_clusters_2d(X, labels, ax=None):
    """Scatter of the data projected on its first two principal components.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...)
        Data (flattened per sample); two features are drawn as they are.
    labels : array-like of shape (n_samples,)
        Cluster (or class) of each sample; ``-1`` is drawn in grey.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The axes drawn on.
    """
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(X.shape[0], -1)
    labels = np.asarray(labels).ravel()
    if labels.shape[0] != X.shape[0]:
        raise ValueError(
            f"X has {X.shape[0]} samples but labels has {labels.shape[0]}; pass one "
            "label per sample."
        )
    if X.shape[1] > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2)
        points = pca.fit_transform(X)
        share = pca.explained_variance_ratio_ * 100
        axis_names = [f"PC {i + 1} ({share[i]:.0f}% of variance)" for i in range(2)]
    else:
        points = np.column_stack([X, np.zeros((X.shape[0], 2 - X.shape[1]))])
        axis_names = ["feature 0", "feature 1"]
    ax = _axes(ax)
    groups, counts = np.unique(labels, return_counts=True)
    colours = _pyplot().get_cmap("tab10" if groups.size <= 10 else "tab20")
    colour_index = 0
    for group, count in zip(groups, counts):
        members = labels == group
        if group == -1:
            colour = "0.7"
        else:
            colour = colours(colour_index % colours.N)
            colour_index += 1
        ax.scatter(points[members, 0], points[members, 1], s=12, color=colour,
                   label=f"{group} ({count})")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title("Clusters, 2-D view")
    if groups.size <= 20:
        ax.legend(title="cluster (size)", fontsize="small", markerscale=1.5)
    return ax
