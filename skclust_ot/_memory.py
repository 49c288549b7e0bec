"""How much memory a fit will allocate, and how much this process may still allocate.

:func:`estimate_fit_memory` lists the big allocations of a fit, in bytes,
from its resolved configuration and the data's size; :func:`peak_bytes`
adds up those alive at once. :func:`available_memory` reads what the
operating system still grants. Every count below is read off the code that
allocates (the comments name it); allocations that are O(N + K), or bounded
by a constant such as ``INIT_MAX_ROWS``, are left out.
"""

from pathlib import Path

import torch
from torch import nn

from . import _defaults as defaults
from ._start import GRAPH_STARTS, overcluster_size
from ._stats import _STATS_CHUNK
from .ot._graph import auto_method

__all__ = ["HOST_ITEMS", "available_memory", "device_memory", "estimate_fit_memory",
           "format_bytes", "network_parameters", "peak_bytes"]

_F32, _F64, _I64 = 4, 8, 8
#: ``knn_graph`` computes this many rows of distances at once (its chunk_size).
_KNN_CHUNK = 4096
#: A coalesced COO edge: two int64 indices and a float32 weight.
_EDGE = 2 * _I64 + _F32
#: Transient bytes per edge while ``knn_graph`` builds: the per-chunk lists
#: (row, column, distance: 20), their concatenation and stacking (36), and
#: ``coalesce``'s sorted copy (about 28), on top of the edge kept.
_EDGE_BUILD = 64
#: ``_symmetrized`` (SP²OT): S + Sᵀ holds 2 edges per edge; sorting and
#: de-duplicating them keeps six int64 arrays of that length alive at once.
_SYMMETRIZED_EDGE = 2 * 6 * _I64
#: N×K arrays alive at once in one solve, in the cost's dtype. P²OT: the
#: cost, the solver's work array W (returned as the plan) and the scaled plan
#: N·Q of ``PseudoLabeler._solve``. SP²OT's MM loop adds the shifted cost, the
#: previous and the best plan, the pull (S + Sᵀ)(N·Q) and its linearization.
_P2OT_ARRAYS, _SP2OT_ARRAYS = 3, 7
#: The network's floats: parameters, gradients and Adam's two moments.
_NETWORK_COPIES = 4
#: Rows of the outlier check of ``standardize="global"`` (``_warn_if_outliers_dominate``).
_OUTLIER_CHECK_ROWS = 10_000
#: cgroup limits at or above this mean "no limit" (v1 writes 2**63 rounded down to a page).
_NO_LIMIT = 1 << 60
#: Items that live on the host whatever the device: the rows, the start's
#: NumPy/SciPy arrays. The rest lives on the fit's device.
HOST_ITEMS = frozenset({"float32 copy of X", "all ranks' rows", "all ranks' sampled rows",
                        "spectral embedding",
                        "spectral adjacency", "k-means float64 copies of X"})


def network_parameters(params, n_features):
    """Trainable floats of the network ``params`` describes (0 for an encoder class)."""
    head_in = n_features
    n_params = 0
    if params.encoder == "mlp":
        mlp = {**defaults.MLP_DEFAULTS, **(params.encoder_kwargs or {})}
        widths = [n_features, *mlp["hidden_dims"], mlp["embedding_dim"]]
        n_params = sum((a + 1) * b for a, b in zip(widths, widths[1:]))  # Linear
        n_params += 2 * sum(mlp["hidden_dims"])  # the hidden BatchNorms' affine
        head_in = mlp["embedding_dim"]
    elif isinstance(params.encoder, nn.Module):
        return sum(p.numel() for p in params.encoder.parameters())
    elif params.encoder != "identity":
        return 0  # a class: its size is unknown before it is built
    return n_params + head_in * params.n_clusters  # + the cosine head


def _knn_items(n_rows, n_neighbors, what, n_features, device="cpu"):
    """``knn_graph`` over ``n_rows`` rows, by the method its ``"auto"`` picks.

    Exact: its distance buffer and its build's edges. Approximate (faiss,
    CPU, above ``AUTO_EXACT_MAX_SAMPLES`` rows): the float32 copy the index
    is built from, the index's own copy of the vectors, the (N, k) results
    (int64 labels, float32 distances) and the build's edges.
    """
    k = min(n_neighbors, n_rows - 1)
    if _approximate_graph(n_rows, device):
        return {
            f"{what} index vectors (approximate)": 2 * n_rows * n_features * _F32,
            f"{what} search results": n_rows * k * (_I64 + _F32),
            f"{what} edges while built": n_rows * k * _EDGE_BUILD,
        }
    return {
        f"{what} distance buffer": min(_KNN_CHUNK, n_rows) * n_rows * _F32,
        f"{what} edges while built": n_rows * k * _EDGE_BUILD,
    }


def _approximate_graph(n_rows, device):
    """Whether ``knn_graph(method="auto")`` takes its approximate path here."""
    return auto_method(n_rows, device) == "approximate"


def _statistics_phase(params, n_samples, n_features):
    """``fit_preprocessing``: float64 row blocks of the moments, the robust statistics' rows."""
    n, d = n_samples, n_features
    # _column_moments: a block, block - mean and its square, at once
    items = {"statistics' float64 blocks": 3 * min(n, _STATS_CHUNK) * d * _F64}
    rows = {"robust": defaults.ROBUST_STATISTICS_MAX_ROWS,
            "global": _OUTLIER_CHECK_ROWS}.get(params.standardize)
    if rows is not None:  # _sample_rows' float64 rows and np.percentile's sorted copy
        items["robust statistics' float64 rows"] = 2 * min(n, rows) * d * _F64
    return {"input statistics": items}


def _start_phases(config, params, n_samples, n_features, n_clusters, device="cpu"):
    """The kNN graph's build, then the start strategy, each with the scaled rows."""
    n, d, K = n_samples, n_features, n_clusters
    # Standardize: one temporary per call, a second for the robust clipping
    scaled = {"scaled copy of X": n * d * _F32 * (2 if params.standardize == "robust" else 1)}
    phases = {}
    if config.build_graph:
        phases["kNN graph"] = {**scaled, **_knn_items(n, config.graph_neighbors, "kNN graph",
                                                       d, device)}
    start = dict(scaled)
    if config.init in GRAPH_STARTS:
        m = n if config.start_rows is None else config.start_rows
        if config.start_rows is not None:  # the landmarks' rows and their own exact graph
            start["landmark rows"] = m * d * _F32
            # at most GRAPH_START_MAX_ROWS rows: knn_graph's exact path
            start.update(_knn_items(m, config.start_neighbors, "landmark kNN graph", d, device))
            start["landmark kNN graph (kept)"] = m * min(config.start_neighbors, m - 1) * _EDGE
        # sklearn's spectral_embedding: ARPACK's Lanczos basis (ncv vectors),
        # the embedding and its copies, k-means' float64 copy of it; the
        # encoder's float32 regression target (and its standardized copy);
        # the consensus start keeps one embedding per candidate
        # (the spectral start's embedding has overcluster_size(m, K) components)
        E = overcluster_size(m, K) if config.init == "spectral" else K
        ncv = min(m, max(2 * E + 1, 20))
        n_embeddings = len(defaults.CONSENSUS_NEIGHBORS) if config.init == "consensus" else 1
        start["spectral embedding"] = m * (_F64 * (ncv + (3 + n_embeddings) * E) + 2 * _F32 * E)
        # the symmetrized adjacency and its Laplacian (CSR: float64 value, int32 index)
        start["spectral adjacency"] = 4 * 2 * m * config.start_neighbors * (_F64 + 4)
        if E > K:  # the merge's silhouette: pairwise distances and one temporary as large
            r = min(m, defaults.START_REFEREE_MAX_ROWS)
            start["silhouette distances"] = 2 * r * r * _F32
    if config.init in ("kmeans", "consensus") and n <= defaults.EXACT_KMEANS_MAX_SAMPLES:
        start["k-means float64 copies of X"] = 2 * n * d * _F64  # .double(), KMeans' copy_x
    phases["start"] = start
    return phases


def _solver_items(n_rows, n_clusters, semantic, n_neighbors, what):
    """One OT solve over ``n_rows`` rows (float32 logits give a float32 cost)."""
    arrays = _SP2OT_ARRAYS if semantic else _P2OT_ARRAYS
    items = {f"{what} OT solver ({arrays} arrays of rows×K)": arrays * n_rows * n_clusters * _F32}
    if semantic:
        items[f"{what} semantic graph S + Sᵀ"] = n_rows * n_neighbors * _SYMMETRIZED_EDGE
    return items


def _training_phases(config, params, n_local, n_features, n_clusters, n_views,
                     device="cpu"):
    """What training holds: the full-scope plans and a solve, or the bank and its graph."""
    K, k = n_clusters, params.n_neighbors
    if config.scope == "full" and config.n_blocks > 1:
        # FullDataPseudoLabels over one block; PseudoLabeler keeps one
        # target per view and every block's graph (built on its first epoch)
        m = config.epoch_rows
        semantic = config.semantic == "block"
        items = {"block logits (2 per view)": 2 * n_views * m * K * _F32,
                 "block targets (1 per view)": n_views * m * K * _F32,
                 "row → block position": n_local * _I64}
        items.update(_solver_items(m, K, semantic, k, "block"))
        phases = {"training": items}
        if semantic:  # all blocks' graphs when epochs come back to them, else one
            n_kept = config.n_blocks if config.n_blocks < params.max_epochs else 1
            kept = n_kept * m * min(k, m - 1) * _EDGE
            items["block kNN graphs (kept)"] = kept
            phases["block kNN graph"] = {
                "block kNN graphs (kept)": kept,
                "block rows for its graph": 2 * m * n_features * _F32,
                **_knn_items(m, k, "block kNN graph", n_features, device)}
        return phases
    if config.scope == "full":
        # FullDataPseudoLabels: the per-batch logits and their concatenation,
        # per view; PseudoLabeler.full_targets: one N×K target per view
        items = {"full-scope logits (2 per view)": 2 * n_views * n_local * K * _F32,
                 "full-scope targets (1 per view)": n_views * n_local * K * _F32}
        items.update(_solver_items(n_local, K, config.semantic == "global", k, "full-scope"))
        return {"training": items}
    rows = config.memory_size + config.batch_size  # the batch stacked on the bank
    # bank_logits keeps a view of the stacked (bank + batch) logits, per view
    bank = {"memory bank logits (1 per view)": n_views * rows * K * _F32}
    semantic = config.semantic == "bank"
    if semantic:  # the bank's rows picked and rescaled, then their kNN graph
        bank["bank rows for its graph"] = 2 * rows * n_features * _F32
        bank["bank kNN graph (kept)"] = rows * min(k, rows - 1) * _EDGE
    phases = {"training": {**bank, **_solver_items(rows, K, semantic, k, "bank")}}
    if semantic:
        phases["bank kNN graph"] = {**bank, **_knn_items(rows, k, "bank kNN graph", n_features,
                                                         device)}
    return phases


def estimate_fit_memory(config, n_samples, n_features, n_clusters, *, params,
                        n_local=None, n_views=2, device="cpu"):
    """The big allocations of a fit, in bytes, by the phase in which they live.

    Parameters
    ----------
    config : skclust_ot._config.FitConfig
        The fit's resolved configuration (scope, start, graph, sizes).
    n_samples : int
        Training rows over all ranks (the start and the graph see them all).
    n_features : int
        Features per row, flattened.
    n_clusters : int
    params : SP2OTClustering
        The estimator (``standardize``, ``n_neighbors``, the encoder).
    n_local : int or None, default=None
        This rank's rows (distributed fits); None: ``n_samples``.
    n_views : int, default=2
        Training views (one plan or bank each).
    device : str, default="cpu"
        The fit's device: the kNN graph is exact off the CPU, approximate on
        it above ``AUTO_EXACT_MAX_SAMPLES`` rows when faiss is installed.

    Returns
    -------
    estimate : dict
        Phase name to a dict of item name to bytes: ``"whole fit"`` (alive
        throughout), then phases that follow each other, ``"input
        statistics"``, ``"kNN graph"``
        (its build, when one is built), ``"start"``, ``"training"`` and, with
        bank-local or block graphs, ``"bank kNN graph"`` or ``"block kNN
        graph"`` (their build). An item alive
        in several phases is listed in each. See :func:`peak_bytes`.
    """
    n_local = n_samples if n_local is None else n_local
    whole = {"float32 copy of X": n_local * n_features * _F32}
    if config.row_sample is not None:  # a large distributed fit gathers the landmarks only
        whole["all ranks' sampled rows"] = config.row_sample * n_features * _F32
    elif n_local < n_samples:
        whole["all ranks' rows"] = n_samples * n_features * _F32
    if config.build_graph:  # _train keeps its graph until training ends
        whole["kNN graph (kept)"] = n_samples * min(config.graph_neighbors, n_samples - 1) * _EDGE
    n_params = network_parameters(params, n_features)
    whole["network and optimizer state"] = _NETWORK_COPIES * n_params * _F32
    return {
        "whole fit": whole,
        # a large distributed fit computes its statistics and start on its sample
        **_statistics_phase(params, config.row_sample or n_samples, n_features),
        **_start_phases(config, params, config.row_sample or n_samples, n_features, n_clusters,
                        device),
        **_training_phases(config, params, n_local, n_features, n_clusters, n_views, device),
    }


def peak_bytes(estimate, keep=None):
    """The most bytes alive at once: the whole fit's items plus the largest phase.

    ``keep(name)`` selects items (e.g. those on one device); None keeps all.
    """
    def total(items):
        return sum(b for name, b in items.items() if keep is None or keep(name))
    phases = [total(items) for phase, items in estimate.items() if phase != "whole fit"]
    return total(estimate["whole fit"]) + max(phases, default=0)


def _read_int(path):
    try:
        text = Path(path).read_text(encoding="ascii").split()[0]
    except (OSError, IndexError):
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _meminfo_available():
    try:
        lines = Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def available_memory():
    """Bytes this process may still allocate on the host, or None when unknown.

    ``MemAvailable`` of ``/proc/meminfo`` (Linux), or the cgroup's limit
    minus its current usage when that is lower (cgroup v2 ``memory.max``,
    v1 ``memory.limit_in_bytes``). None elsewhere (no check then).
    """
    candidates = [_meminfo_available()]
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit), _read_int(usage)
        if limit is not None and usage is not None and limit < _NO_LIMIT:
            candidates.append(max(limit - usage, 0))
    candidates = [c for c in candidates if c is not None]
    return min(candidates) if candidates else None


def device_memory(device):
    """Free bytes on a CUDA ``device`` (``torch.cuda.mem_get_info``); None for others."""
    if not str(device).startswith("cuda"):
        return None
    return int(torch.cuda.mem_get_info(torch.device(device))[0])


def format_bytes(n_bytes):
    """``n_bytes`` in GB (or MB below 0.1 GB), for messages."""
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"

