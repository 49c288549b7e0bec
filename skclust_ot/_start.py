"""The start: the partition training begins from, and the network fitted to it.

A start strategy looks at the preprocessed data (and, if it needs one, the kNN
graph) and returns a :class:`StartPartition`: one label per sample and,
optionally, a target embedding the encoder should learn. Every strategy has
the same signature, ``strategy(data, n_clusters, seed) -> StartPartition or
None``, and is picked from :data:`STARTS` by the name the ``init`` parameter
resolves to. :func:`fit_module_to_start` then makes the network reproduce the
partition: the encoder regresses the target embedding (when there is one),
BatchNorm statistics are set from the data, and the cosine head's prototypes
are fitted so that its argmax gives the start's labels.

Nothing here trains on pseudo-labels; each function can be tested alone.
"""

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.manifold import spectral_embedding as _sk_spectral_embedding
from sklearn.metrics import adjusted_rand_score, silhouette_score
from torch import nn

from . import _defaults as defaults
from ._stats import _init_rows, _torch_index

__all__ = [
    "GRAPH_STARTS",
    "STARTS",
    "StartData",
    "StartPartition",
    "consensus_start",
    "fit_module_to_start",
    "graph_adjacency",
    "kmeans_start",
    "landmark_rows",
    "merge_by_edge_density",
    "overcluster_size",
    "random_start",
    "ratio_cut",
    "restrict_graph",
    "silhouette",
    "spectral_kway_start",
    "spectral_start",
]


@dataclass(frozen=True)
class StartData:
    """What a start strategy may look at.

    Attributes
    ----------
    features : torch.Tensor of shape (n_samples, n_features)
        The preprocessed, flattened training rows (the space k-means and the
        kNN graph see).
    graph : torch.Tensor or None
        The kNN graph over the same rows (a coalesced sparse tensor), or None
        when the strategy does not need one (see :data:`GRAPH_STARTS`).
    """

    features: torch.Tensor
    graph: torch.Tensor = None


@dataclass(frozen=True)
class StartPartition:
    """A start strategy's result.

    Attributes
    ----------
    labels : ndarray of shape (n_samples,)
        The start's cluster of every sample, in ``range(n_clusters)``.
    embedding : ndarray of shape (n_samples, n_components) or None
        A target embedding the encoder learns before the head is fitted
        (an inductive map to it), or None to keep the encoder as built.
    rows : ndarray of int or None
        Which training rows ``labels`` and ``embedding`` belong to (a
        start computed on landmarks, see :func:`landmark_rows`); None: all
        rows, in order.
    """

    labels: np.ndarray
    embedding: np.ndarray = None
    rows: np.ndarray = None


def landmark_rows(n_samples, n_rows, seed):
    """A seeded uniform sample of ``n_rows`` of ``range(n_samples)``, sorted.

    The rows a graph-aware start runs on when the data set is larger than
    ``GRAPH_START_MAX_ROWS``. Uniform, so each cluster is represented in
    proportion to its size (a cluster of a fraction p keeps about
    ``p * n_rows`` landmarks).
    """
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_samples, size=n_rows, replace=False))


def kmeans_labels(features, n_clusters, seed):
    """k-means labels of the rows of ``features`` (Euclidean).

    Exact :class:`~sklearn.cluster.KMeans` in float64 up to
    ``EXACT_KMEANS_MAX_SAMPLES`` rows, :class:`~sklearn.cluster.MiniBatchKMeans`
    on the float32 values above (no float64 copy of a large data set).
    """
    if features.shape[0] > defaults.EXACT_KMEANS_MAX_SAMPLES:
        data = features.cpu().numpy()
        km = MiniBatchKMeans(n_clusters, n_init=defaults.MINIBATCH_KMEANS_N_INIT,
                             random_state=seed,
                             batch_size=defaults.MINIBATCH_KMEANS_BATCH_SIZE)
    else:
        data = features.double().cpu().numpy()
        km = KMeans(n_clusters, n_init=defaults.KMEANS_N_INIT, random_state=seed)
    with warnings.catch_warnings():
        # Duplicate points may give fewer distinct centroids; the OT
        # balancing separates the prototypes during training.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return km.fit_predict(data)


def _connectivity_embedding(rows, cols, n_samples, n_components, seed):
    """Spectral embedding of the symmetrized 0/1 graph with edges ``rows -> cols``."""
    adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)),
                              shape=(n_samples, n_samples))
    adjacency = 0.5 * (adjacency + adjacency.T)
    with warnings.catch_warnings():
        # a disconnected graph still gives a usable embedding
        warnings.simplefilter("ignore", UserWarning)
        embed = functools.partial(_sk_spectral_embedding, adjacency,
                                  n_components=n_components, drop_first=False,
                                  random_state=seed)
        try:
            return embed(eigen_solver=defaults.SPECTRAL_EIGEN_SOLVER)
        except (ValueError, np.linalg.LinAlgError):
            # LOBPCG fails on some tiny graphs (scikit-learn raises a bare
            # ValueError); ARPACK handles them
            return embed(eigen_solver="arpack")


def graph_adjacency(graph):
    """The kNN graph's symmetrized 0/1 adjacency (an edge where either row lists the other)."""
    rows, cols = graph.indices().cpu().numpy()
    n_samples = graph.shape[0]
    adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n_samples, n_samples))
    adjacency = adjacency + adjacency.T
    adjacency.data[:] = 1.0
    return adjacency


def _cluster_edges(labels, adjacency, n_labels):
    """The (n_labels, n_labels) float64 counts of graph edges between clusters of ``labels``."""
    onehot = sp.csr_matrix((np.ones(labels.size), (np.arange(labels.size), labels)),
                           shape=(labels.size, n_labels))
    return np.asarray((onehot.T @ adjacency @ onehot).todense(), dtype=np.float64)


def merge_by_edge_density(labels, adjacency, n_clusters):
    """Merge a fine partition into ``n_clusters`` clusters along a graph (average linkage).

    Repeatedly joins the two clusters whose edge density is highest: the
    number of graph edges between them divided by the product of their
    sizes. Clusters that are pieces of one group are densely connected and
    join first; a small group that is only thinly wired to a big one keeps
    its own cluster. Where no edge joins any two clusters left, the two
    smallest are joined. Deterministic (ties go to the lowest indices).

    Parameters
    ----------
    labels : ndarray of int of shape (n_samples,)
        The fine partition (any integer labels).
    adjacency : scipy.sparse matrix of shape (n_samples, n_samples)
        A symmetric graph over the same samples.
    n_clusters : int
        How many clusters to keep.

    Returns
    -------
    merged : ndarray of int of shape (n_samples,)
        Labels in ``range(min(n_clusters, number of fine clusters))``; each
        merged cluster is a union of fine ones.
    """
    _, fine = np.unique(labels, return_inverse=True)
    n_fine = int(fine.max()) + 1
    if n_fine <= n_clusters:
        return fine
    between = _cluster_edges(fine, adjacency, n_fine)
    sizes = np.bincount(fine, minlength=n_fine).astype(np.float64)
    group = np.arange(n_fine)
    alive = list(range(n_fine))
    while len(alive) > n_clusters:
        idx = np.asarray(alive)
        density = between[np.ix_(idx, idx)] / np.outer(sizes[idx], sizes[idx])
        np.fill_diagonal(density, -1.0)
        a, b = np.unravel_index(np.argmax(density), density.shape)
        if density[a, b] <= 0:
            a, b = np.argsort(sizes[idx], kind="stable")[:2]
        i, j = sorted((int(idx[a]), int(idx[b])))
        between[i, :] += between[j, :]
        between[:, i] += between[:, j]
        sizes[i] += sizes[j]
        group[group == j] = i
        alive.remove(j)
    relabel = np.full(n_fine, -1)
    relabel[alive] = np.arange(len(alive))
    return relabel[group[fine]]


def overcluster_size(n_samples, n_clusters):
    """How many fine clusters the spectral start cuts before merging to ``n_clusters``.

    ``OVERCLUSTER_FACTOR * n_clusters``, but at most one per
    ``OVERCLUSTER_MIN_ROWS`` samples (at least ``n_clusters + 1``), at most
    ``OVERCLUSTER_MAX_CLUSTERS`` (none beyond ``n_clusters`` when that is
    larger: the eigenproblem's cost grows with its size), and never so many
    that the eigenproblem has fewer than ``SPECTRAL_START_MIN_EXTRA_SAMPLES``
    spare rows. ``n_clusters`` itself means no over-clustering.
    """
    n_fine = min(defaults.OVERCLUSTER_FACTOR * n_clusters,
                 max(n_clusters + 1, n_samples // defaults.OVERCLUSTER_MIN_ROWS),
                 max(n_clusters, defaults.OVERCLUSTER_MAX_CLUSTERS),
                 n_samples - defaults.SPECTRAL_START_MIN_EXTRA_SAMPLES)
    return max(n_fine, n_clusters)


def spectral_embedding(graph, n_components, seed):
    """Spectral embedding of the symmetrized kNN connectivity graph.

    The ``n_components`` leading eigenvectors of the normalized graph
    Laplacian (:func:`sklearn.manifold.spectral_embedding`), as spectral
    clustering uses them; only the graph's edges count, not its weights.
    """
    rows, cols = graph.indices().cpu().numpy()
    return _connectivity_embedding(rows, cols, graph.shape[0], n_components, seed)


def kmeans_start(data, n_clusters, seed):
    """k-means in the preprocessed input space; the encoder is kept as built."""
    return StartPartition(kmeans_labels(data.features, n_clusters, seed))


def ratio_cut(labels, adjacency):
    """The partition's ratio cut on a graph: the sum over clusters of cut edges / size."""
    labels = np.asarray(labels)
    n_labels = int(labels.max()) + 1
    between = _cluster_edges(labels, adjacency, n_labels)
    sizes = np.bincount(labels, minlength=n_labels)
    cut = between.sum(1) - np.diag(between)
    return float((cut[sizes > 0] / sizes[sizes > 0]).sum())


def silhouette(features, labels, seed):
    """Mean silhouette of a partition in the input space (Euclidean), or -1 for one cluster.

    Exact up to ``START_REFEREE_MAX_ROWS`` samples; above, the silhouette of
    a seeded sample of that many (the rows scikit-learn's ``sample_size``
    picks; -1 if the sample holds one cluster only). One of
    the spectral start's two referees between its partitions: it judges
    each sample by its own cluster against the nearest other one, whatever
    the clusters' sizes, and does not share the graph's bias (spectral
    clustering relaxes the ratio cut, which favours equal sizes).
    """
    labels = np.asarray(labels)
    X = features.detach().cpu().numpy() if torch.is_tensor(features) else np.asarray(features)
    if X.shape[0] > defaults.START_REFEREE_MAX_ROWS:
        # the rows scikit-learn's sample_size would pick, drawn here so that a
        # sample holding one cluster only scores -1 instead of raising
        keep = np.random.RandomState(seed).permutation(X.shape[0])[
            :defaults.START_REFEREE_MAX_ROWS]
        X, labels = X[keep], labels[keep]
    if np.unique(labels).size < 2:
        return -1.0
    return float(silhouette_score(X, labels))


def spectral_start(data, n_clusters, seed):
    """Spectral clustering of the kNN graph, or its over-clustered and merged variant.

    The spectral embedding has ``n_fine = overcluster_size(n, n_clusters)``
    components (twice ``n_clusters`` where the data allow, at most 64 unless
    ``n_clusters`` is larger). Two partitions are cut from it: spectral
    clustering's own (k-means with ``n_clusters`` on the leading
    ``n_clusters`` components), and an over-clustered one (k-means with
    ``n_fine`` clusters on all components, then :func:`merge_by_edge_density`
    joins them along the graph until ``n_clusters`` remain). Cutting more
    clusters than wanted gives a small class a cluster of its own, where
    spectral clustering would rather split a big class and wire the small
    one into a neighbour; the merge puts the big class's pieces back
    together, because they are densely connected. The merge is kept only
    where two referees with opposite biases both prefer it: the
    :func:`ratio_cut` on the graph (fewer edges cut per sample; it favours
    clusters of equal size) and the :func:`silhouette` in the input space
    (it favours compact clusters). The silhouette rejects the merges that
    join a class smaller than the graph's neighbour count to a piece of a
    big class while the big one is cut in two, which the ratio cut accepts
    on two-class data; alone, it chose worse partitions of Fashion-MNIST
    (docs/design.md, "The merge's referee").
    The embedding becomes the encoder's target, which makes the start
    inductive: new samples get graph-aware features without the graph.
    """
    n_fine = overcluster_size(data.graph.shape[0], n_clusters)
    embedding = spectral_embedding(data.graph, n_fine, seed)
    labels = kmeans_labels(torch.from_numpy(embedding[:, :n_clusters]), n_clusters, seed)
    if n_fine > n_clusters:
        adjacency = graph_adjacency(data.graph)
        fine = kmeans_labels(torch.from_numpy(embedding), n_fine, seed)
        merged = merge_by_edge_density(fine, adjacency, n_clusters)
        if (ratio_cut(merged, adjacency) < ratio_cut(labels, adjacency)
                and silhouette(data.features, merged, seed)
                > silhouette(data.features, labels, seed)):
            labels = merged
    return StartPartition(labels, embedding)


def spectral_kway_start(data, n_clusters, seed):
    """Spectral clustering's own K-way partition, without over-clustering.

    k-means with ``n_clusters`` on the spectral embedding of ``n_clusters``
    components, which the encoder is taught: the spectral start as it was
    before the over-clustering of :func:`spectral_start`, to compare with
    it (docs/design.md, "Over-clustering the spectral start").
    """
    embedding = spectral_embedding(data.graph, n_clusters, seed)
    labels = kmeans_labels(torch.from_numpy(embedding), n_clusters, seed)
    return StartPartition(labels, embedding)


def _strongest(graph, n_neighbors):
    """Per row, the columns and weights of the ``n_neighbors`` strongest edges."""
    graph = graph.coalesce()
    n_samples = graph.shape[0]
    rows, cols = graph.indices()
    weights = graph.values()
    per_row = rows.numel() // n_samples
    k = min(n_neighbors, per_row)
    weights = weights.reshape(n_samples, per_row)  # coalesced: row-major, per_row each
    top, where = torch.topk(weights, k, dim=1)
    return cols.reshape(n_samples, per_row).gather(1, where), top


def nearest_neighbors(graph, n_neighbors):
    """Each row's ``n_neighbors`` strongest edges of a kNN graph, as an (N, k) index array.

    The graph's weights fall with distance, so these are the nearest
    neighbours among those the graph holds (at most as many as it has),
    nearest first.
    """
    return _strongest(graph, n_neighbors)[0].cpu().numpy()


def restrict_graph(graph, n_neighbors):
    """The kNN graph with only each row's ``n_neighbors`` strongest edges (coalesced)."""
    cols, weights = _strongest(graph, n_neighbors)
    n_samples, k = cols.shape
    rows = torch.arange(n_samples, device=cols.device).repeat_interleave(k)
    return torch.sparse_coo_tensor(torch.stack([rows, cols.reshape(-1)]), weights.reshape(-1),
                                   graph.shape, check_invariants=False).coalesce()


def _spectral_candidate(neighbors, n_clusters, seed):
    n_samples, k = neighbors.shape
    rows = np.repeat(np.arange(n_samples), k)
    embedding = _connectivity_embedding(rows, neighbors.reshape(-1), n_samples, n_clusters, seed)
    labels = kmeans_labels(torch.from_numpy(embedding), n_clusters, seed)
    return StartPartition(labels, embedding)


def consensus_start(data, n_clusters, seed):
    """The partition most candidates agree with: k-means or spectral clustering.

    The candidates are k-means in the input space and spectral clustering
    on the kNN graph with each of ``CONSENSUS_NEIGHBORS`` neighbours (as
    many as the graph holds). The start is the candidate with the highest
    mean adjusted Rand index to the others (their medoid), so the graph's
    size, and graph or no graph, follow from the data instead of a fixed
    choice: where one neighbourhood size wires a small cluster into a big
    one, the other candidates outvote it.
    """
    candidates = [kmeans_start(data, n_clusters, seed)]
    widest = nearest_neighbors(data.graph, max(defaults.CONSENSUS_NEIGHBORS))
    for k in sorted({min(k, widest.shape[1]) for k in defaults.CONSENSUS_NEIGHBORS}):
        candidates.append(_spectral_candidate(widest[:, :k], n_clusters, seed))
    agreement = np.zeros(len(candidates))
    for i in range(len(candidates)):
        for j in range(i + 1, len(candidates)):
            score = adjusted_rand_score(candidates[i].labels, candidates[j].labels)
            agreement[i] += score
            agreement[j] += score
    return candidates[int(np.argmax(agreement))]


def random_start(data, n_clusters, seed):
    """No start: the head keeps its random prototypes (returns None)."""
    return None


#: Start strategies by the name ``init`` resolves to.
STARTS = {"kmeans": kmeans_start, "spectral": spectral_start,
          "spectral_kway": spectral_kway_start, "consensus": consensus_start,
          "random": random_start}
#: The strategies that read ``StartData.graph``.
GRAPH_STARTS = frozenset({"spectral", "spectral_kway", "consensus"})


# --------------------------------------------------------------------------- #
# fitting the network to a start
# --------------------------------------------------------------------------- #
@torch.no_grad()
def calibrate_batchnorm(module, rows, device, chunk=defaults.PREDICT_CHUNK):
    """Set BatchNorm running statistics from ``rows``.

    The exact statistics of ``rows`` when they fit in one chunk, otherwise
    the average of the chunks' statistics. Makes eval-mode embeddings (used
    to fit the initial prototypes) match what training sees from its first
    step. A no-op without BatchNorm.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the chunks
    module.train()
    for i in range(0, rows.shape[0], chunk):
        if rows[i:i + chunk].shape[0] > 1:
            module.embed(rows[i:i + chunk].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    module.eval()


@torch.no_grad()
def embed_all(module, rows, device, chunk=defaults.PREDICT_CHUNK):
    """Eval-mode embeddings of ``rows``, in chunks, into one preallocated tensor."""
    module.eval()
    out = None
    for i in range(0, rows.shape[0], chunk):
        z = module.embed(rows[i:i + chunk].to(device))
        if out is None:
            out = torch.empty((rows.shape[0],) + z.shape[1:], dtype=z.dtype, device=z.device)
        out[i:i + z.shape[0]] = z
    return out


def fit_encoder_to(module, rows, target, device, *, n_epochs=defaults.ENCODER_FIT_EPOCHS,
                   batch_size=defaults.ENCODER_FIT_BATCH_SIZE, lr=defaults.ENCODER_FIT_LR):
    """Teach the encoder a target embedding by mean-squared regression.

    The regression goes through a temporary linear read-out on the
    standardized target, so the encoder becomes an inductive map to it. A
    no-op for encoders without parameters (``encoder="identity"``).
    """
    params = list(module.encoder.parameters())
    if not params:
        return
    target = torch.as_tensor(target, dtype=torch.float32)
    target = (target - target.mean(0)) / target.std(0).clamp_min(1e-12)
    target = target.to(device)
    readout = nn.Linear(module.head.weight.shape[1], target.shape[1]).to(device)
    optimizer = torch.optim.Adam(params + list(readout.parameters()), lr=lr)
    n_samples = rows.shape[0]
    module.train()
    for _ in range(n_epochs):
        order = torch.randperm(n_samples)
        for start in range(0, n_samples, batch_size):
            batch = order[start:start + batch_size]
            if batch.numel() < 2:
                continue
            optimizer.zero_grad()
            pred = readout(module.embed(rows[batch].to(device)))
            loss = torch.nn.functional.mse_loss(pred, target[batch.to(device)])
            loss.backward()
            optimizer.step()
    module.eval()


def prototypes_from_labels(embeddings, labels, n_clusters):
    """Mean direction of each cluster's normalized embeddings (float64).

    An empty cluster gets the direction of one sample (sample ``k`` modulo
    ``n_samples``), so that every prototype is defined.
    """
    emb = torch.nn.functional.normalize(embeddings.double(), dim=1)
    labels = torch.as_tensor(labels, device=emb.device)
    protos = torch.zeros(n_clusters, emb.shape[1], dtype=emb.dtype, device=emb.device)
    protos.index_add_(0, labels, emb)
    counts = torch.bincount(labels, minlength=n_clusters)
    for k in torch.nonzero(counts == 0).flatten().tolist():
        protos[k] = emb[k % emb.shape[0]]
    return protos


def fit_prototypes(head, embeddings, labels, n_clusters, *,
                   n_steps=defaults.PROTOTYPE_FIT_STEPS, lr=defaults.PROTOTYPE_FIT_LR):
    """Fit the cosine head so that its argmax reproduces ``labels``.

    Starts from the clusters' mean directions, then a short full-batch fit
    of the head alone (cross-entropy to the labels) on the fixed embeddings.
    """
    head.set_prototypes(prototypes_from_labels(embeddings, labels, n_clusters))
    target = torch.as_tensor(labels, dtype=torch.long, device=embeddings.device)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    for _ in range(n_steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(embeddings), target)
        loss.backward()
        optimizer.step()


def fit_module_to_start(module, rows, partition, n_clusters, device, seed):
    """Make ``module`` (encoder, head) reproduce a start partition.

    Parameters
    ----------
    module : skclust_ot.nn.ClusterModule
        The network; changed in place, left in eval mode.
    rows : torch.Tensor of shape (n_samples, ...)
        The training rows as the module takes them (before preprocessing).
    partition : StartPartition
        The start's labels and optional target embedding (of its ``rows``:
        the encoder and the head are fitted on those, the BatchNorm
        statistics on all rows).
    n_clusters : int
        Number of clusters (prototypes of the head).
    device : str
        Device of the module.
    seed : int
        Seeds the choice of rows the head is fitted on (at most
        ``INIT_MAX_ROWS``, every cluster represented).
    """
    start_rows = rows if partition.rows is None else rows[_torch_index(partition.rows)]
    if partition.embedding is not None:
        fit_encoder_to(module, start_rows, partition.embedding, device)
    calibrate_batchnorm(module, rows, device)
    picked = _init_rows(partition.labels, n_clusters, seed)
    embeddings = embed_all(module, start_rows[_torch_index(picked)], device)
    fit_prototypes(module.head, embeddings, partition.labels[picked], n_clusters)
