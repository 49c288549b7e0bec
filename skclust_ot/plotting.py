"""Pictures of a clustering: cluster sizes, what went where, training curves and a 2-D view.

Needs matplotlib, an optional extra: ``pip install skclust_ot[plots]``. It is
imported only when a function is called, so ``import skclust_ot.plotting``
works without it. Every function draws into ``ax`` when given (so pictures
can be combined with ``plt.subplots``) and returns the Axes it drew on
(:func:`plot_clusters_2d` with ``y_true``: the two it drew on).
Legends are placed outside the plotted area, so they never cover data.

Colours: clusters get distinct qualitative colours (``tab10``, then
``tab20``, ``tab20b`` and ``tab20c`` without their greys as the number of
clusters grows); label ``-1`` (noise or unassigned, as HDBSCAN or DBSCAN
labels have it) is always light grey, a colour no cluster gets.
"""

import numpy as np

__all__ = [
    "plot_cluster_sizes",
    "plot_confusion",
    "plot_training_history",
    "plot_clusters_2d",
]

# Label -1 (noise / unassigned): light grey, never a cluster's colour.
_NOISE_COLOUR = (0.8, 0.8, 0.8, 1.0)
# Grey entries of the qualitative maps, left out so no cluster looks like noise.
_GREYS = {"tab10": (7,), "tab20": (14, 15), "tab20b": (), "tab20c": (16, 17, 18, 19)}
# A legend outside the axes, to their right.
_OUTSIDE_RIGHT = {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}
# A legend above the axes, at their right end (the title goes to the left).
_ABOVE = {"loc": "lower right", "bbox_to_anchor": (1.0, 1.0), "borderaxespad": 0.3,
          "ncols": 2, "frameon": False}


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


def _labels_of(est_or_labels, what):
    """``labels_`` of a fitted estimator (or Pipeline), or the labels given, as 1-D."""
    if hasattr(est_or_labels, "fit"):
        return np.asarray(_fitted_attribute(est_or_labels, "labels_", what)).ravel()
    return np.asarray(est_or_labels).ravel()


def _is_noise(labels):
    """Mask of the samples labelled -1 (numeric labels only)."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iuf":
        return labels == -1
    return np.zeros(labels.shape, dtype=bool)


def _palette(n_colours):
    """``n_colours`` distinct RGBA colours, none of them grey."""
    from matplotlib import colormaps

    names = ["tab10"] if n_colours <= 9 else ["tab20"] if n_colours <= 18 else [
        "tab20", "tab20b", "tab20c"]
    colours = [colormaps[name](i) for name in names
               for i in range(colormaps[name].N) if i not in _GREYS[name]]
    if n_colours > len(colours):
        # More clusters than the qualitative maps hold: evenly spaced hues
        # (distinct, though neighbours look alike).
        colours = [colormaps["hsv"](i / n_colours) for i in range(n_colours)]
    return colours[:n_colours]


def _sizes_descending(labels):
    """Sizes of the groups in ``labels``, largest first; -1 (unassigned) ignored."""
    labels = np.asarray(labels).ravel()
    labels = labels[~_is_noise(labels)]
    _, counts = np.unique(labels, return_counts=True)
    return np.sort(counts)[::-1]


def plot_cluster_sizes(est_or_labels, y_true=None, ax=None):
    """Bar chart of the cluster sizes, largest first, beside the true class sizes.

    Imbalanced clustering is about getting these sizes right: k-means and
    balanced OT flatten a long tail, SP²OT should follow it. The bars are
    sorted by size, so they do not say which samples went where: draw
    :func:`plot_confusion` beside them for that.

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
        The axes drawn on; the legend is above them, off the bars.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When given an estimator that is not fitted.

    See Also
    --------
    plot_confusion : Which class's samples went into which cluster.

    Examples
    --------
    Skipped as a doctest because matplotlib is optional:

    >>> import matplotlib.pyplot as plt
    >>> from skclust_ot.plotting import plot_cluster_sizes, plot_confusion
    >>> fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4),
    ...                                   layout="constrained")  # doctest: +SKIP
    >>> plot_cluster_sizes(est, y_true=y, ax=left)  # doctest: +SKIP
    >>> plot_confusion(est, y, ax=right)  # doctest: +SKIP
    >>> fig.savefig("cluster_sizes.png")  # doctest: +SKIP
    """
    labels = _labels_of(est_or_labels, "plot_cluster_sizes")
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
    ax.set_title("Cluster sizes", loc="left")
    ax.legend(**_ABOVE)
    return ax


_NORMALIZE = {
    "true": "fraction of the true class",
    "pred": "fraction of the cluster",
    "all": "fraction of all samples",
    None: "samples",
}


def _matched_table(y_true, labels):
    """The contingency table, rows and columns ordered for :func:`plot_confusion`.

    Returns ``(table, classes, columns, matched)``: ``table[i, j]`` counts the
    samples of ``classes[i]`` in cluster ``columns[j]``; ``matched`` lists the
    ``(i, j)`` cells of the Hungarian matching.
    """
    from skclust_ot.metrics import match_labels

    noise = _is_noise(labels)
    row_labels, row_codes = np.unique(y_true, return_inverse=True)
    col_labels, col_codes = np.unique(labels, return_inverse=True)
    n_rows, n_cols = len(row_labels), len(col_labels)
    table = np.bincount(row_codes.ravel() * n_cols + col_codes.ravel(),
                        minlength=n_rows * n_cols).reshape(n_rows, n_cols)
    rows = np.argsort(-table.sum(axis=1), kind="stable")  # largest class first
    # Hungarian matching of the clusters (not -1, which is no cluster) to classes
    mapping = match_labels(y_true[~noise], labels[~noise]) if (~noise).any() else {}
    class_to_cluster = {cls: cluster for cluster, cls in mapping.items()}
    col_index = {label: j for j, label in enumerate(col_labels.tolist())}
    row_list = row_labels.tolist()
    cols = [col_index[class_to_cluster[row_list[i]]] for i in rows
            if row_list[i] in class_to_cluster]
    noise_cols = np.flatnonzero(_is_noise(col_labels)).tolist()
    rest = [j for j in np.argsort(-table.sum(axis=0), kind="stable")
            if j not in cols and j not in noise_cols]
    cols = cols + rest + noise_cols
    table = table[np.ix_(rows, cols)]
    classes, columns = row_labels[rows], col_labels[cols]
    row_of = {row_list[i]: r for r, i in enumerate(rows)}
    col_list = col_labels.tolist()
    col_of = {col_list[j]: c for c, j in enumerate(cols)}
    matched = sorted((row_of[cls], col_of[cluster]) for cluster, cls in mapping.items())
    return table, classes, columns, matched


def plot_confusion(est_or_labels, y_true, ax=None, normalize="true"):
    """Heatmap of the true classes against the clusters matched to them.

    Rows are the true classes, largest first; columns are the clusters, the
    one matched to each class (Hungarian matching,
    :func:`skclust_ot.metrics.match_labels`) in its row's order, so a good
    clustering shows a strong diagonal. Clusters matched to no class follow,
    largest first, then ``-1`` (noise / unassigned) last. Matched cells are
    outlined; every cell is annotated. Sorted size bars
    (:func:`plot_cluster_sizes`) can look right while the samples are
    mixed up; this picture shows what went where, so draw the two side by side.

    Parameters
    ----------
    est_or_labels : fitted estimator or array-like of shape (n_samples,)
        A fitted clusterer (its ``labels_``; a Pipeline ending in one works
        too) or predicted labels.
    y_true : array-like of shape (n_samples,)
        True classes.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None. The colour bar takes room from
        this axes.
    normalize : {"true", "pred", "all"} or None, default="true"
        What the cells show: the fraction of each true class (rows sum to 1)
        with ``"true"``, of each cluster (columns sum to 1) with ``"pred"``,
        of all samples with ``"all"``, sample counts with None.

    Returns
    -------
    ax : matplotlib Axes
        The axes of the heatmap; the colour bar is another axes of
        ``ax.figure``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When given an estimator that is not fitted.
    ValueError
        When ``normalize`` is not one of the above, or the labels and
        ``y_true`` differ in length.

    See Also
    --------
    plot_cluster_sizes : The cluster sizes beside the true class sizes.
    skclust_ot.metrics.match_labels : The matching used for the columns.

    Notes
    -----
    Label ``-1`` is left out of the matching (it is noise, not a cluster),
    whereas :func:`skclust_ot.metrics.match_labels` and the scores of
    :mod:`skclust_ot.metrics` count it as one more cluster.

    Examples
    --------
    Skipped as a doctest because matplotlib is optional:

    >>> from skclust_ot.plotting import plot_confusion
    >>> ax = plot_confusion(est, y)  # doctest: +SKIP
    >>> ax.figure.savefig("confusion.png")  # doctest: +SKIP
    """
    if normalize not in _NORMALIZE:
        raise ValueError(
            f"normalize={normalize!r} is not one of 'true', 'pred', 'all' or None."
        )
    labels = _labels_of(est_or_labels, "plot_confusion")
    y_true = np.asarray(y_true).ravel()
    if labels.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"The clustering has {labels.shape[0]} labels but y_true has "
            f"{y_true.shape[0]}; pass one true class per sample."
        )
    table, classes, columns, matched = _matched_table(y_true, labels)
    if normalize is None:
        values = table.astype(np.float64)
    else:
        total = {"true": table.sum(axis=1, keepdims=True),
                 "pred": table.sum(axis=0, keepdims=True),
                 "all": table.sum()}[normalize]
        values = table / np.maximum(total, 1)

    from matplotlib.patches import Rectangle

    ax = _axes(ax)
    vmax = 1.0 if normalize is not None else max(values.max(), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label=_NORMALIZE[normalize])
    n_rows, n_cols = values.shape
    if n_rows * n_cols <= 400:
        for i in range(n_rows):
            for j in range(n_cols):
                text = f"{table[i, j]:d}" if normalize is None else f"{values[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize="small",
                        color="white" if values[i, j] > 0.6 * vmax else "black")
    for i, j in matched:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False,
                               edgecolor="C3", linewidth=1.5))
    sizes = table.sum(axis=1)
    ax.set_yticks(np.arange(n_rows), [f"{c} ({n})" for c, n in zip(classes.tolist(), sizes)])
    noise = _is_noise(columns)
    ax.set_xticks(np.arange(n_cols),
                  ["-1 (noise)" if is_noise else str(c)
                   for c, is_noise in zip(columns.tolist(), noise)])
    ax.set_ylabel("true class (size), largest first")
    ax.set_xlabel("cluster, matched to the class in its row (outlined)")
    ax.set_title("What went where")
    return ax


def plot_training_history(est, ax=None):
    """Training loss and the transported fraction ρ per epoch.

    The loss is drawn on ``ax`` (left axis), ρ on a twin right axis: ρ rises
    from ``rho0`` to 1 as more samples are trusted with pseudo-labels, so the
    loss usually rises with it rather than falling as in supervised training.
    Epochs are ticked at whole numbers.

    Parameters
    ----------
    est : fitted SP2OTClustering (or a Pipeline ending in one)
        Reads ``est.history_`` (keys ``"train_loss"`` and ``"rho"``).
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The loss axis; the ρ axis is its twin (``ax.figure.axes``). The
        legend is above them, off the curves.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When ``est`` is not fitted.
    """
    from matplotlib.ticker import MaxNLocator

    history = _fitted_attribute(est, "history_", "plot_training_history")
    epochs = np.arange(1, len(history) + 1)
    loss = [row.get("train_loss", np.nan) for row in history]
    rho = [row.get("rho", np.nan) for row in history]
    ax = _axes(ax)
    (loss_line,) = ax.plot(epochs, loss, color="C0", marker=".", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    rho_ax = ax.twinx()
    (rho_line,) = rho_ax.plot(epochs, rho, color="C1", marker=".", label="ρ (mass)")
    rho_ax.set_ylabel("ρ, fraction of mass transported")
    rho_ax.set_ylim(0, 1.05)
    ax.legend(handles=[loss_line, rho_line], **_ABOVE)
    ax.set_title("Training", loc="left")
    return ax


def _project(points):
    """First two principal components of ``points`` (as is when 2 columns or fewer)."""
    if points.shape[1] > 2:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2)
        projected = pca.fit_transform(points)
        return projected, pca.explained_variance_ratio_ * 100
    return np.column_stack([points, np.zeros((points.shape[0], 2 - points.shape[1]))]), None


def _embedding(est, X):
    """The learned embedding of X by ``est`` (or a Pipeline ending in it), unit rows."""
    final = _final_step(est)
    if not hasattr(final, "embed"):
        raise ValueError(
            f"space='embedding' needs an estimator with an embed(X) method, such as "
            f"SP2OTClustering; {type(final).__name__} has none. Pass the 2-D "
            "projection you want as space=... instead."
        )
    if final is not est:  # a Pipeline: the earlier steps transform X first
        X = est[:-1].transform(X)
    z = np.asarray(final.embed(X), dtype=np.float64)
    z = z.reshape(z.shape[0], -1)
    # the cosine head compares directions only
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def _scatter_groups(ax, points, labels, colour_of, legend_title):
    groups, counts = np.unique(labels, return_counts=True)
    noise = _is_noise(groups)
    # noise first, so the clusters are drawn over it
    for group, count, is_noise in sorted(zip(groups.tolist(), counts, noise),
                                         key=lambda item: not item[2]):
        members = labels == group
        ax.scatter(points[members, 0], points[members, 1], s=12,
                   color=_NOISE_COLOUR if is_noise else colour_of[group],
                   label=f"{group} ({count})", zorder=1 if is_noise else 2)
    if groups.size <= 20:
        ax.legend(title=legend_title, fontsize="small", markerscale=1.5, **_OUTSIDE_RIGHT)


def _coordinates(X, space, estimator):
    """2-D points, axis names and a title for ``space`` "input" or "embedding"."""
    if space == "embedding":
        if estimator is None:
            raise ValueError(
                "space='embedding' needs the fitted estimator as labels "
                "(e.g. plot_clusters_2d(X, est, space='embedding'))."
            )
        points, share = _project(_embedding(estimator, X))
        prefix, title = "embedding PC", "learned embedding"
    else:
        points, share = _project(X)
        prefix, title = "PC", "2-D view"
    if share is not None:
        axis_names = [f"{prefix} {i + 1} ({share[i]:.0f}% of variance)" for i in range(2)]
    else:  # two columns or fewer, drawn as they are
        axis_names = [f"{'feature' if space == 'input' else 'embedding'} {i}" for i in range(2)]
    return points, axis_names, title


def _group_colours(labels, y_true):
    """Colours of the clusters and, with ``y_true``, of the classes (each its cluster's)."""
    noise = _is_noise(labels)
    clusters = np.unique(labels[~noise]).tolist()
    if y_true is None:
        return dict(zip(clusters, _palette(len(clusters)))), None
    from skclust_ot.metrics import match_labels

    # each class in the colour of the cluster matched to it (-1 is no cluster)
    mapping = match_labels(y_true[~noise], labels[~noise]) if (~noise).any() else {}
    unmatched = [c for c in np.unique(y_true).tolist() if c not in mapping.values()]
    colours = _palette(len(clusters) + len(unmatched))
    colour_of = dict(zip(clusters, colours))
    class_colour = {cls: colour_of[cluster] for cluster, cls in mapping.items()}
    class_colour.update(zip(unmatched, colours[len(clusters):]))
    return colour_of, class_colour


def plot_clusters_2d(X, labels, ax=None, *, space="input", y_true=None):
    """Scatter of the data, or of its learned embedding, on two axes.

    By default the data are projected on their first two principal
    components. With ``space="embedding"`` and a fitted estimator as
    ``labels``, its learned embedding (``embed(X)``, scaled to unit length as
    the cosine head sees it) is projected instead; or pass any 2-D
    projection (t-SNE, UMAP, ...) as ``space``. With ``y_true`` a second
    panel, in the same coordinates, is coloured by the true classes, each
    class in the colour of the cluster matched to it.

    Parameters
    ----------
    X : array-like of shape (n_samples, ...) or None
        Data (flattened per sample); two features are drawn as they are. May
        be None when ``space`` is a projection.
    labels : array-like of shape (n_samples,) or fitted estimator
        Cluster (or class) of each sample, or a fitted clusterer (its
        ``labels_``, so ``X`` must be the data it was fitted on; a Pipeline
        ending in one works too). ``-1`` (noise / unassigned) is drawn in
        light grey, a colour no cluster gets.
    ax : matplotlib Axes or sequence of two Axes, default=None
        Where to draw; a new figure when None. Two Axes when ``y_true`` is
        given (clusters, then true classes).
    space : {"input", "embedding"} or array-like of shape (n_samples, 2), default="input"
        What is drawn: the principal components of ``X`` (``"input"``), of
        the estimator's learned embedding of ``X`` (``"embedding"``; needs an
        estimator with ``embed``, such as SP2OTClustering, as ``labels``), or
        the given 2-D coordinates as they are.
    y_true : array-like of shape (n_samples,), default=None
        True classes; when given, a second panel is coloured by them.

    Returns
    -------
    ax : matplotlib Axes or ndarray of two Axes
        The axes drawn on: one, or (clusters, true classes) when ``y_true``
        is given. Legends are to the right of each, off the points.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        When given an estimator that is not fitted.
    ValueError
        When the numbers of samples differ, ``space`` is not understood, or
        ``ax`` is not two Axes when ``y_true`` is given.

    Examples
    --------
    Skipped as a doctest because matplotlib is optional:

    >>> from skclust_ot.plotting import plot_clusters_2d
    >>> ax = plot_clusters_2d(X, est.labels_)  # doctest: +SKIP
    >>> cluster_ax, class_ax = plot_clusters_2d(
    ...     X, est, space="embedding", y_true=y)  # doctest: +SKIP
    """
    estimator = labels if hasattr(labels, "fit") else None
    labels = _labels_of(labels, "plot_clusters_2d")
    if isinstance(space, str):
        if space not in ("input", "embedding"):
            raise ValueError(
                f"space={space!r} is not 'input', 'embedding' or an array of shape "
                "(n_samples, 2)."
            )
        if X is None:
            raise ValueError(f"space={space!r} needs X; pass the data.")
        X = np.asarray(X, dtype=np.float64)
        X = X.reshape(X.shape[0], -1)
        n_samples = X.shape[0]
    else:
        projection = np.asarray(space, dtype=np.float64)
        if projection.ndim != 2 or projection.shape[1] != 2:
            raise ValueError(
                f"space as coordinates must have shape (n_samples, 2); got "
                f"{projection.shape}."
            )
        n_samples = projection.shape[0]
    if labels.shape[0] != n_samples:
        raise ValueError(
            f"X has {n_samples} samples but labels has {labels.shape[0]}; pass one "
            "label per sample."
        )
    if y_true is not None:
        y_true = np.asarray(y_true).ravel()
        if y_true.shape[0] != n_samples:
            raise ValueError(
                f"X has {n_samples} samples but y_true has {y_true.shape[0]}; pass "
                "one true class per sample."
            )

    if isinstance(space, str):
        points, axis_names, title = _coordinates(X, space, estimator)
    else:
        points, axis_names, title = projection, ["dimension 1", "dimension 2"], "2-D view"

    if y_true is None:
        panels = [_axes(ax)]
    elif ax is None:
        _, panels = _pyplot().subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    else:
        panels = list(np.ravel(np.asarray(ax, dtype=object)))
        if len(panels) != 2:
            raise ValueError(
                "With y_true, pass two Axes as ax (clusters, then true classes); "
                f"got {len(panels)}."
            )

    colour_of, class_colour = _group_colours(labels, y_true)
    _scatter_groups(panels[0], points, labels, colour_of, "cluster (size)")
    panels[0].set_title(f"Clusters, {title}")
    if y_true is not None:
        _scatter_groups(panels[1], points, y_true, class_colour, "class (size)")
        panels[1].set_title(f"True classes, {title}")
    for panel in panels:
        panel.set_xlabel(axis_names[0])
        panel.set_ylabel(axis_names[1])
    return panels[0] if y_true is None else np.array(panels, dtype=object)
