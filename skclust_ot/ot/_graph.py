"""Sparse k-nearest-neighbour graph with Gaussian weights (the SP²OT semantic graph).

Two ways to find the neighbours: exact (chunked matrix products in torch, any
device) and approximate (faiss ``IndexIVFFlat`` on the CPU, the optional
``scale`` extra). ``benchmarks/bench_knn.py`` compares them with pynndescent,
hnswlib, faiss HNSW and scikit-learn; ``docs/knn_benchmark.md`` has the numbers
behind the choice and the ``"auto"`` threshold.
"""

import math

import numpy as np
import torch

from ._validation import _all_finite_tensor, _check_int, _check_real

__all__ = ["knn_graph"]

#: ``method="auto"`` is exact up to this many samples (and on non-CPU devices).
AUTO_EXACT_MAX_SAMPLES = 20_000
#: Inverted lists probed per query by the approximate method (of ``_n_lists(n)``).
_N_PROBE = 24
#: k-means iterations that train the inverted-file quantizer.
_N_ITER = 10
_METHODS = ("auto", "exact", "approximate")
_EXTRA_HINT = ("pip install 'skclust_ot[scale]' (or: pip install faiss-cpu)")


@torch.no_grad()
def knn_graph(features, n_neighbors=20, *, sigma=2.0, chunk_size=4096, method="auto",
              random_state=None):
    r"""Sparse N×N k-nearest-neighbour graph, exact or approximate.

    Parameters
    ----------
    features : torch.Tensor of shape (n_samples, n_features)
        Floating-point features; the graph has the same dtype and device.
    n_neighbors : int, default=20
        Neighbours per sample, excluding the sample itself. Reduced to
        ``n_samples - 1`` when there are fewer samples.
    sigma : float, default=2.0
        Bandwidth of the Gaussian weights, > 0.
    chunk_size : int, default=4096
        Rows of the distance matrix computed at once by the exact method;
        memory is O(chunk_size × n_samples), never n_samples × n_samples.
    method : {"auto", "exact", "approximate"}, default="auto"
        How the neighbours are found. ``"exact"``: every distance, in chunked
        matrix products on the device of `features`, O(N² d) time.
        ``"approximate"``: a faiss inverted-file index (``IndexIVFFlat``,
        :math:`\approx 4\sqrt{N}` k-means lists, 24 of them searched per
        sample) on the CPU, about O(N^1.5 d) time and O(N (d + k)) memory;
        needs the ``scale`` extra (``pip install 'skclust_ot[scale]'``, i.e.
        faiss-cpu). ``"auto"``: exact on non-CPU devices and up to
        ``AUTO_EXACT_MAX_SAMPLES`` = 20,000 samples, approximate above that
        when faiss is installed, else exact.
    random_state : int, numpy.random.Generator, numpy.random.RandomState or None, default=None
        Seed of the k-means that builds the approximate index; with a fixed
        value (and thread count) the approximate graph is reproducible.
        ``None`` draws a seed from NumPy's global random state. The exact
        method does not use it.

    Returns
    -------
    graph : torch.Tensor
        Coalesced sparse COO tensor of shape (n_samples, n_samples) with
        exactly ``min(n_neighbors, n_samples - 1)`` entries per row and no
        self edge:
        :math:`S_{ij} = \exp(-\|x_i - x_j\|^2 / (2\sigma^2 d))` for the
        neighbours j of i, d the number of features. Not symmetric.

    Raises
    ------
    ImportError
        With ``method="approximate"`` when faiss is not installed; the
        message names the extra to install.

    Notes
    -----
    Exact: squared distances are computed as
    :math:`\|x_i\|^2 + (\|x_j\|^2 - 2 x_i^\top x_j)` with one fused matrix
    product per chunk (neighbours are ranked by the bracket, which has the
    same order) and clamped at 0, so they carry the rounding of that
    expansion. The cost is O(N² d) time in matrix products and
    O(chunk_size × N) memory. The sample itself is excluded by index: exact
    duplicates of a sample are still neighbours (with weight 1). Ties are
    broken by ``torch.topk``.

    Approximate: the index is built and searched in float32 on the CPU with
    ``torch.get_num_threads()`` threads; the k + 1 nearest returned for each
    sample lose the sample itself (or, when duplicates hide it, the farthest),
    rows the index could not fill are recomputed exactly, and the squared
    distances of the chosen pairs are recomputed as
    :math:`\sum_l (x_{il} - x_{jl})^2` in the dtype and on the device of
    `features`, so the weights follow the same formula. Measured on 2 shared
    CPU cores (``docs/knn_benchmark.md``, clustered synthetic 100,000 × 384):
    recall@k 0.983 at k = 10 in 29 s and 0.976 at k = 20 in 54 s against the
    exact graph, which takes 97 s there; peak extra memory about 0.8 GiB
    against 2 GiB. On the first N synthetic rows the two methods take the
    same time at N = 20,000 (2.2 s) and the exact one is faster below, hence
    the ``"auto"`` threshold.

    Examples
    --------
    >>> import torch
    >>> from skclust_ot.ot import knn_graph
    >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    >>> graph = knn_graph(x, n_neighbors=1, sigma=1.0)
    >>> graph.indices().tolist()
    [[0, 1, 2, 3], [1, 0, 1, 2]]
    >>> [round(w, 4) for w in graph.values().tolist()]
    [0.6065, 0.6065, 0.1353, 0.0]
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}.")
    if features.ndim != 2:
        raise ValueError(
            f"features must be 2-D (n_samples, n_features), got shape {tuple(features.shape)}."
        )
    if not features.is_floating_point():
        raise ValueError(
            f"features must have a floating-point dtype, got {features.dtype}; "
            "convert them with features.float()."
        )
    n_samples, n_features = features.shape
    if n_features < 1:
        raise ValueError("features must have at least one column.")
    if not _all_finite_tensor(features):
        raise ValueError("features contain NaN or inf.")
    n_neighbors = _check_int(n_neighbors, "n_neighbors", low=1)
    sigma = _check_real(sigma, "sigma", low=0.0)
    chunk_size = _check_int(chunk_size, "chunk_size", low=1)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    n_neighbors = min(n_neighbors, n_samples - 1)
    if method == "auto":
        method = _auto_method(features)
    if method == "approximate":
        faiss = _import_faiss()  # fails early, also for the trivial cases below
        seed = _seed(random_state)

    device, dtype = features.device, features.dtype
    if n_neighbors == 0:
        return torch.sparse_coo_tensor(
            torch.zeros((2, 0), dtype=torch.long, device=device),
            torch.zeros(0, dtype=dtype, device=device),
            (n_samples, n_samples),
            check_invariants=False,
        ).coalesce()

    if method == "exact":
        cols, sq_dists = _exact_neighbours(features, n_neighbors, chunk_size)
    else:
        cols, sq_dists = _approximate_neighbours(features, n_neighbors, chunk_size, faiss, seed)
    rows = torch.arange(n_samples, device=device)[:, None].expand(-1, n_neighbors)
    indices = torch.stack([rows.reshape(-1), cols.reshape(-1)])
    weights = torch.exp(sq_dists.reshape(-1) / (-2.0 * sigma**2 * n_features))
    graph = torch.sparse_coo_tensor(
        indices, weights, (n_samples, n_samples), check_invariants=False
    )
    return graph.coalesce()


def _auto_method(features):
    return auto_method(features.shape[0], features.device)


def auto_method(n_samples, device):
    """What ``knn_graph(method="auto")`` does for ``n_samples`` rows on ``device``.

    ``"exact"`` off the CPU and up to ``AUTO_EXACT_MAX_SAMPLES`` rows, else
    ``"approximate"`` when faiss imports, else ``"exact"``.
    """
    if torch.device(device).type != "cpu" or n_samples <= AUTO_EXACT_MAX_SAMPLES:
        return "exact"
    try:
        _import_faiss()
    except ImportError:
        return "exact"
    return "approximate"


def _import_faiss():
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            "knn_graph(method='approximate') needs faiss, which is not installed: "
            f"{_EXTRA_HINT}."
        ) from error
    return faiss


def _seed(random_state):
    """An int seed in [0, 2**31 - 1) from an int, a NumPy generator or None."""
    if random_state is None:  # fresh entropy; numpy's global state is not touched
        return int(np.random.default_rng().integers(2**31 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(
            random_state, (int, np.integer)):
        raise ValueError(
            "random_state must be None, an int, a numpy.random.Generator or a "
            f"numpy.random.RandomState, got {random_state!r}.")
    random_state = _check_int(random_state, "random_state", low=0)
    return random_state % (2**31 - 1)


def _exact_neighbours(features, n_neighbors, chunk_size, rows=None):
    """Exact (len(rows), k) neighbour indices and squared distances of `rows` (all: None)."""
    n_samples = features.shape[0]
    device, dtype = features.device, features.dtype
    squared_norms = (features * features).sum(dim=1)
    n_rows = n_samples if rows is None else rows.numel()
    chunk_size = min(chunk_size, n_rows)
    # one distance buffer for all chunks: fresh multi-GB allocations page-fault
    buffer = torch.empty((chunk_size, n_samples), dtype=dtype, device=device)
    cols, sq_dists = [], []
    for start in range(0, n_rows, chunk_size):
        stop = min(start + chunk_size, n_rows)
        ids = torch.arange(start, stop, device=device) if rows is None else rows[start:stop]
        chunk = features[start:stop] if rows is None else features[ids]
        # |x_j|^2 - 2 x_i.x_j in one product: the row constant |x_i|^2 does not
        # change the ranking and is added to the k selected entries only
        part = torch.addmm(squared_norms[None, :], chunk, features.T, beta=1.0, alpha=-2.0,
                           out=buffer[: stop - start])
        local = torch.arange(stop - start, device=device)
        part[local, ids] = float("inf")  # the sample itself, by index
        dist, idx = torch.topk(part, n_neighbors, dim=1, largest=False, sorted=False)
        dist.add_(squared_norms[ids, None]).clamp_(min=0.0)
        cols.append(idx)
        sq_dists.append(dist)
    return torch.cat(cols), torch.cat(sq_dists)


def _n_lists(n_samples):
    """Inverted lists: about 4 sqrt(N), at least 39 training points per list (faiss)."""
    return max(1, min(int(round(4 * math.sqrt(n_samples))), n_samples // 39))


def _approximate_neighbours(features, n_neighbors, chunk_size, faiss, seed):
    """(N, k) neighbour indices and squared distances from a faiss IVF-Flat index."""
    n_samples, n_features = features.shape
    x = np.ascontiguousarray(features.detach().to("cpu", torch.float32).numpy())
    n_lists = _n_lists(n_samples)
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())
    try:
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(n_features), n_features, n_lists)
        index.cp.niter = _N_ITER
        index.cp.seed = seed
        index.train(x)
        index.add(x)
        index.nprobe = min(_N_PROBE, n_lists)
        _, found = index.search(x, n_neighbors + 1)
    finally:
        faiss.omp_set_num_threads(previous)
    del index, x
    found = torch.from_numpy(found)
    # drop the sample itself; where duplicates at distance 0 hide it, the last one
    is_self = found == torch.arange(n_samples)[:, None]
    is_self[~is_self.any(dim=1), -1] = True
    cols = found[~is_self].reshape(n_samples, n_neighbors).to(features.device)
    missing = (cols < 0).any(dim=1).nonzero().reshape(-1)
    if missing.numel():  # lists too small to fill k: those rows exactly
        cols[missing] = _exact_neighbours(features, n_neighbors, chunk_size, rows=missing)[0]
    # squared distances of the chosen pairs, in the input's dtype, by differences
    sq_dists = torch.empty(cols.shape, dtype=features.dtype, device=features.device)
    step = max(1, 2**24 // (n_neighbors * n_features))
    for start in range(0, n_samples, step):
        stop = min(start + step, n_samples)
        diff = features[cols[start:stop]] - features[start:stop, None, :]
        sq_dists[start:stop] = (diff * diff).sum(dim=2)
    return cols, sq_dists
