"""The one resolved configuration of a fit: every ``"auto"`` and derived size, decided once.

:func:`resolve_config` turns the estimator's parameters and the size of the
data into a frozen :class:`FitConfig`. It is the only place where
``ot_scope="auto"``, ``init="auto"`` and ``semantic_weight="auto"`` are
resolved, where the batch and bank sizes are derived and where the optimizer
name is looked up, so that the rest of the fit reads decisions instead of
re-deriving them.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.utils import check_random_state

from . import _defaults as defaults
from ._start import GRAPH_STARTS

__all__ = ["OPTIMIZERS", "FitConfig", "draw_seed", "resolve_config"]

#: Optimizers by name (the ``optimizer`` parameter's string options).
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class FitConfig:
    """Decisions of one fit, derived from the parameters and the data size.

    Attributes
    ----------
    n_samples : int
        Training rows (over all ranks when distributed).
    seed : int
        The fit's seed (network, views, shuffling, start).
    scope : {"full", "bank"}
        Where the OT problem is solved: over all rows once per epoch, or per
        step over a memory bank.
    init : str
        The start strategy, a key of :data:`skclust_ot._start.STARTS`.
    use_neighbors : bool
        Whether training views may show a sample's nearest neighbour.
    build_graph : bool
        Whether the exact kNN graph of all rows is built (the start, the
        semantic term or the neighbour views need it).
    graph_neighbors : int
        Neighbours per row of the graph of all rows: ``n_neighbors``, or
        ``start_neighbors`` when that graph also serves the start (the
        semantic term and the neighbour views then use the ``n_neighbors``
        nearest).
    start_neighbors : int
        Neighbours per row of the start's graph: ``n_neighbors``, or more
        when the start compares several graph sizes.
    start_rows : int or None
        Rows of the landmark sample a graph-aware start runs on (its own
        exact kNN graph), or None when the start sees every row.
    epoch_rows : int
        Rows trained on per epoch: ``n_samples`` up to ``EPOCH_MAX_ROWS``,
        that many above.
    n_blocks : int
        One process above ``EPOCH_MAX_ROWS`` rows: the rows are split into
        this many seeded random blocks of at most ``epoch_rows`` rows, epoch
        ``e`` trains on block ``e mod n_blocks``, and its OT problem is
        solved over that block (with the block's own kNN graph when the
        semantic weight is not 0; never a graph of all rows). 1 otherwise; distributed fits then train on a random
        ``epoch_rows`` of the rows per epoch and solve over all of them.
    semantic_weight : float
        The semantic term's weight: the parameter's value, or for
        ``semantic_weight="auto"`` ``SEMANTIC_WEIGHT`` up to
        ``SEMANTIC_MAX_ROWS`` rows and 0 above.
    row_sample : int or None
        The rows every rank holds besides its own: None, all rows of all
        ranks (one process: its own rows); an int, a distributed fit above
        ``DISTRIBUTED_SAMPLE_MIN_ROWS`` rows that needs no graph of all rows
        (no semantic term, the default there): each rank gathers only a
        seeded sample of this many rows (:func:`~skclust_ot._start.landmark_rows`
        over all ranks' rows, the landmarks one process would pick), and the
        input statistics, the start and the network's fit to it see the
        sample.
    semantic : {"global", "block", "bank"} or None
        Where the semantic term's graph comes from: the global kNN graph
        (full scope), the graph among each block's rows (full scope with
        ``n_blocks > 1``), graphs built inside each memory bank, or no
        semantic term (a resolved ``semantic_weight`` of 0).
    batch_size : int
        Global mini-batch size (capped at ``n_samples``).
    memory_size : int
        Memory bank size (``"bank"`` scope).
    optimizer : type
        The torch optimizer class.
    optimizer_kwargs : dict
        Extra optimizer arguments, as skorch's ``optimizer__*`` keywords.
    """

    n_samples: int
    seed: int
    scope: str
    init: str
    use_neighbors: bool
    build_graph: bool
    graph_neighbors: int
    start_neighbors: int
    batch_size: int
    epoch_rows: int
    n_blocks: int
    memory_size: int
    optimizer: type
    semantic_weight: float = 0.0
    semantic: str = None
    start_rows: int = None
    row_sample: int = None
    optimizer_kwargs: dict = field(default_factory=dict)


def draw_seed(random_state):
    """The fit's integer seed from ``random_state`` (fresh entropy for None).

    Never touches NumPy's global random state.
    """
    if random_state is None:
        return int(np.random.default_rng().integers(np.iinfo(np.int32).max))
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _resolve_scope(ot_scope):
    # One solve over all rows per epoch costs O(N K) per iteration: at any N
    # it is far cheaper than one bank solve per step (docs/scale_benchmark.md).
    return "full" if ot_scope == "auto" else ot_scope


def _resolve_semantic_weight(semantic_weight, n_samples):
    if semantic_weight == "auto":
        return defaults.SEMANTIC_WEIGHT if n_samples <= defaults.SEMANTIC_MAX_ROWS else 0.0
    return float(semantic_weight)


def _resolve_init(init, n_samples, n_clusters):
    if init == "auto":
        init = "spectral"
    if init in GRAPH_STARTS and n_samples < (2 * n_clusters
                                             + defaults.SPECTRAL_START_MIN_EXTRA_SAMPLES):
        # too few samples for a meaningful kNN-graph eigenproblem
        init = "kmeans"
    return init


def resolve_config(params, n_samples, seed):
    """Resolve the estimator's parameters for data of ``n_samples`` rows.

    Parameters
    ----------
    params : SP2OTClustering
        The estimator (its public parameters are read, never changed).
    n_samples : int
        Training rows (over all ranks when distributed).
    seed : int
        The fit's seed (see :func:`draw_seed`).

    Returns
    -------
    config : FitConfig
    """
    scope = _resolve_scope(params.ot_scope)
    init = _resolve_init(params.init, n_samples, params.n_clusters)
    epoch_rows = min(n_samples, defaults.EPOCH_MAX_ROWS)
    n_blocks = 1 if params.distributed else -(-n_samples // epoch_rows)
    # neighbour views need the graph of all rows, which blocks do without
    use_neighbors = (params.neighbor_views > 0 and scope == "full" and n_samples > 1
                     and n_blocks == 1)
    semantic_weight = _resolve_semantic_weight(params.semantic_weight, n_samples)
    start_rows = None
    if init in GRAPH_STARTS and n_samples > defaults.GRAPH_START_MAX_ROWS:
        start_rows = defaults.GRAPH_START_MAX_ROWS  # landmarks with a graph of their own
    # One kNN graph of all rows serves the graph-aware start (unless it runs
    # on landmarks) and, in the full-data scope, the semantic term and the
    # neighbour views.
    build_graph = (init in GRAPH_STARTS and start_rows is None) or (
        scope == "full" and n_blocks == 1 and (semantic_weight > 0 or use_neighbors))
    start_neighbors = params.n_neighbors
    if init == "consensus":
        start_neighbors = max(start_neighbors, *defaults.CONSENSUS_NEIGHBORS)
    graph_neighbors = start_neighbors if init in GRAPH_STARTS and start_rows is None \
        else params.n_neighbors
    semantic = None
    if semantic_weight > 0:
        semantic = "bank" if scope == "bank" else "global" if n_blocks == 1 else "block"
    row_sample = None
    if (params.distributed and n_samples > defaults.DISTRIBUTED_SAMPLE_MIN_ROWS
            and not build_graph and semantic is None):
        # nothing needs every row: a rank holds its shard and the landmarks
        row_sample = defaults.GRAPH_START_MAX_ROWS
    batch_size = min(params.batch_size, n_samples)
    memory_size = params.memory_size or defaults.MEMORY_BANK_BATCHES * batch_size
    optimizer = params.optimizer
    if isinstance(optimizer, str):
        optimizer = OPTIMIZERS[optimizer]
    optimizer_kwargs = {f"optimizer__{k}": v for k, v in (params.optimizer_kwargs or {}).items()}
    return FitConfig(
        n_samples=n_samples, seed=seed, scope=scope, init=init,
        use_neighbors=use_neighbors, build_graph=build_graph,
        graph_neighbors=graph_neighbors, start_neighbors=start_neighbors,
        semantic_weight=semantic_weight, semantic=semantic, start_rows=start_rows,
        row_sample=row_sample,
        batch_size=batch_size, epoch_rows=epoch_rows, n_blocks=n_blocks,
        memory_size=memory_size, optimizer=optimizer, optimizer_kwargs=optimizer_kwargs,
    )
