"""Pseudo-labelling state: which logits enter the OT problem, and its targets.

The :class:`PseudoLabeler` is the bridge between the network and the pure
solver in :mod:`skclust_ot.ot`. It owns the OT settings, the current mass
``rho``, the warm-start potentials and, depending on the scope, either the
targets of the whole data set (``"full"``: one solve per view per epoch) or a
FIFO memory bank of recent logits (``"bank"``: one solve per view per step).
"""

import math
import warnings

import torch

from ..ot import (
    ConvergenceWarning,
    cost_from_logits,
    knn_graph,
    p2ot,
    p2ot_distributed,
    sp2ot_distributed,
)
from ..ot._sp2ot import _sp2ot, _symmetrized

__all__ = ["PseudoLabeler"]


class PseudoLabeler:
    """Turn logits into SP²OT soft targets.

    Parameters
    ----------
    n_samples, n_clusters : int
        Size of the training set and number of clusters.
    scope : {"full", "bank"}
        ``"full"`` solves over all samples once per epoch (:meth:`refresh`);
        ``"bank"`` solves per step over a FIFO of ``memory_size`` recent
        logits plus the current batch (:meth:`targets`).
    memory_size : int
        Number of past logits kept in the bank (``"bank"`` scope).
    epsilon, kl_weight, semantic_weight : float
        OT entropic regularization, KL weight on the cluster marginal
        (``math.inf``: hard uniform marginal) and semantic weight (``0``
        turns SP²OT into P²OT).
    graph : torch sparse tensor or None, default=None
        The kNN graph over all samples (``"full"`` scope).
    graph_features : torch.Tensor or None, default=None
        Per-sample features from which bank-local kNN graphs are built
        (``"bank"`` scope), or the graphs of blocks (``"full"`` scope
        refreshed block by block, see :meth:`refresh`).
    graph_transform : callable or None, default=None
        Applied to the rows of ``graph_features`` picked for a bank (e.g.
        the network's fixed input scaling), so that the scaled copy of the
        whole data set is never held.
    n_neighbors, sigma : int, float
        Neighbours per sample (default 20) and bandwidth of the Gaussian
        weights (default 2.0) of the bank-local kNN graphs (see
        :func:`skclust_ot.ot.knn_graph`).
    solver_kwargs : dict or None, default=None
        Passed to the solver: ``max_iter``, ``tol``, ``method`` and
        ``mm_max_iter`` (the last defaults to 10; ``method`` is dropped
        for the sharded solvers). ``None``: the solvers' defaults.
    n_views : int, default=2
        Number of views (each keeps its own warm start).
    comm : skclust_ot.ot.Communicator or None, default=None
        Data-parallel training: this process holds ``n_samples`` of the
        data set's rows. ``"full"`` scope: the plan over the rows of all
        ranks is solved by the sharded solvers (``graph`` holds this rank's
        rows of the global graph, ``n_samples_total`` the global N).
        ``"bank"`` scope: every step gathers the batches of all ranks into
        one bank, the same problem is solved on every rank and each keeps
        its own rows (``graph_features`` then indexes the global rows and
        ``index_offset`` maps local to global indices).
    n_samples_total : int or None, default=None
        Rows over all ranks (``comm``); ``None``: ``n_samples``.
    index_offset : int, default=0
        Global index of this rank's first row (``comm``).
    size_prior : {"uniform", "adaptive"}, default="uniform"
        The reference cluster sizes of the KL term. ``"uniform"``: ``rho / K``
        each (P²OT). ``"adaptive"``: ``rho`` times an exponential average of
        the previous plans' cluster proportions, floored at
        ``prior_floor / K`` so that no cluster dies; as the real columns
        carry total mass ``rho``, this is the uniform problem with the
        per-cluster cost shift ``kl_weight * log((1 / K) / prior_k)``.
    prior_momentum : float, default=0.5
        Weight of the newest plan in the average (``"adaptive"``).
    prior_floor : float, default=0.2
        Smallest prior proportion, in units of ``1 / K`` (``"adaptive"``).
    keep_block_graphs : bool, default=True
        Keep each block's kNN graph after its first refresh (a block that
        comes back reuses it); ``False`` rebuilds it at every visit and
        holds one block's graph at a time.
    """

    def __init__(self, n_samples, n_clusters, *, scope, memory_size, epsilon,
                 kl_weight, semantic_weight, graph=None, graph_features=None,
                 graph_transform=None,
                 n_neighbors=20, sigma=2.0, solver_kwargs=None, n_views=2, comm=None,
                 n_samples_total=None, index_offset=0, size_prior="uniform",
                 prior_momentum=0.5, prior_floor=0.2, keep_block_graphs=True):
        self.n_samples = n_samples
        self.n_clusters = n_clusters
        self.scope = scope
        self.memory_size = memory_size
        self.epsilon = epsilon
        self.kl_weight = kl_weight
        self.semantic_weight = semantic_weight
        self.graph = graph
        self.graph_features = graph_features
        self.graph_transform = graph_transform
        self.n_neighbors = n_neighbors
        self.sigma = sigma
        self.solver_kwargs = dict(solver_kwargs or {})
        self.n_views = n_views
        self.comm = comm
        self.n_samples_total = n_samples if n_samples_total is None else n_samples_total
        self.index_offset = index_offset
        self.size_prior = size_prior
        self.prior_momentum = prior_momentum
        self.prior_floor = prior_floor
        self.keep_block_graphs = keep_block_graphs
        self.prior = None
        self.rho = 1.0
        self.full_targets = [None] * n_views
        self._position = None
        self._block_graphs = {}
        self._symmetric_cache = {}
        self.bank_logits = [None] * n_views
        self.bank_index = None
        self._warm = [None] * n_views
        self.last_log = None
        self.n_solves = 0
        self.n_solver_iter = 0
        self.n_not_converged = 0
        self.n_mm_not_converged = 0

    # -- solving ---------------------------------------------------------
    def _solve(self, logits, graph, view, sharded=False):
        """Solve one OT problem over ``logits``; return ``N * Q`` (rows ≤ 1).

        ``sharded``: ``logits`` are this rank's rows of a problem over the
        rows of all ranks (N is then the global number of rows).
        """
        cost = cost_from_logits(logits.detach())
        shift = self._prior_shift(cost)
        if shift is not None:
            cost = cost + shift
        n_rows = self.n_samples_total if sharded else cost.shape[0]
        kwargs = dict(epsilon=self.epsilon, kl_weight=self.kl_weight, **self.solver_kwargs)
        mm_max_iter = kwargs.pop("mm_max_iter", 10)
        warm = self._warm[view]
        if warm is not None and warm[0] is not None and warm[0].shape[0] != cost.shape[0]:
            warm = (None, warm[1])
        # Thousands of solves run per fit: count non-convergence (reported in
        # the history and summarized once by the estimator) instead of
        # warning on every step.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            semantic = self.semantic_weight > 0 and graph is not None and self.rho < 1
            if sharded:
                kwargs.pop("method", None)  # the sharded loop is log-domain
                group = self.comm.group
                if semantic:
                    plan, log = sp2ot_distributed(
                        cost, self.rho, graph, semantic_weight=self.semantic_weight,
                        mm_max_iter=mm_max_iter, warm_start=warm, group=group, **kwargs)
                else:
                    plan, log = p2ot_distributed(cost, self.rho, warm_start=warm, group=group,
                                                 **kwargs)
            elif semantic:
                plan, log = _sp2ot(cost, self.rho, graph, semantic_weight=self.semantic_weight,
                                   mm_max_iter=mm_max_iter, warm_start=warm,
                                   symmetric=self._symmetric, **kwargs)
            else:
                plan, log = p2ot(cost, self.rho, warm_start=warm, **kwargs)
            n_iter = int(log.get("p2ot_iters", log["n_iter"]))
        self._warm[view] = log["potentials"]
        self.last_log = log
        self._update_prior(log["column_mass"])
        self.n_solves += 1
        self.n_solver_iter += n_iter
        self.n_not_converged += int(not log["converged"])
        self.n_mm_not_converged += int(not log.get("mm_converged", True))
        return plan * n_rows

    def _symmetric(self, graph, cost):
        """``S + S^T`` of ``graph`` as CSR, built once per graph the labeler keeps.

        Kept for ``graph`` and the blocks' kept graphs (their memory again,
        at most); any other graph's is kept only until the next one, so that
        the two views of an epoch share it.
        """
        hit = self._symmetric_cache.get(id(graph))
        if hit is not None and hit[0] is graph and hit[1] == (cost.dtype, cost.device):
            return hit[2]
        kept = [self.graph] + list(self._block_graphs.values())
        self._symmetric_cache = {key: entry for key, entry in self._symmetric_cache.items()
                                 if any(entry[0] is g for g in kept)}
        sym = _symmetrized(graph, cost)
        self._symmetric_cache[id(graph)] = (graph, (cost.dtype, cost.device), sym)
        return sym

    def _prior_shift(self, cost):
        """The per-cluster cost shift of the adaptive size prior, or None."""
        if self.size_prior != "adaptive" or self.prior is None or math.isinf(self.kl_weight):
            return None
        prior = self.prior.to(device=cost.device, dtype=cost.dtype)
        return self.kl_weight * torch.log((1.0 / self.n_clusters) / prior)[None, :]

    def _update_prior(self, column_mass):
        if self.size_prior != "adaptive":
            return
        mass = column_mass.detach().double().cpu()
        total = mass.sum()
        if not (torch.isfinite(total) and total > 0):
            return
        mass = mass / total
        prior = mass if self.prior is None else (
            (1.0 - self.prior_momentum) * self.prior + self.prior_momentum * mass)
        prior = prior.clamp_min(self.prior_floor / self.n_clusters)
        self.prior = prior / prior.sum()

    def refresh(self, view_logits, rows=None):
        """Solve the OT problem over the logits of all samples, once per view.

        Used in the ``"full"`` scope: the scaled plan of each view (rows of
        ``N * Q``) is stored, and :meth:`targets` then reads the rows of a
        batch from it. Each view's solve is warm-started from its previous
        one; with ``comm`` the sharded solvers solve over the rows of all
        ranks, and this process keeps its own rows.

        Parameters
        ----------
        view_logits : sequence of torch.Tensor of shape (n_rows, n_clusters)
            The logits of every sample (this process's rows with ``comm``),
            or of the samples ``rows``, one tensor per view; detached before
            solving. The stored targets take each tensor's device and dtype.
        rows : array-like of int or None, default=None
            A block of samples (see :class:`~skclust_ot.nn.BlockSampler`):
            the problem is solved over these rows alone, with the kNN graph
            among them (built from ``graph_features``, and kept for the
            block's next refresh with ``keep_block_graphs``), and until the
            next refresh only these samples have targets. ``None``: all
            samples, with ``graph``.
        """
        graph = self.graph
        self._position = None
        if rows is not None:
            rows = torch.as_tensor(rows, dtype=torch.long)
            graph = self._block_graph(rows)
            self._position = torch.full((self.n_samples,), -1, dtype=torch.long)
            self._position[rows] = torch.arange(rows.numel())
        for view, logits in enumerate(view_logits):
            if graph is not None and graph.device != logits.device:
                graph = graph.to(logits.device)
            if rows is not None:
                warm = self._warm[view]  # other samples: only the columns carry over
                self._warm[view] = None if warm is None else (None, warm[1])
            self.full_targets[view] = self._solve(logits, graph, view,
                                                  sharded=self.comm is not None
                                                  ).to(logits.dtype)
        if self._position is not None:
            self._position = self._position.to(view_logits[0].device)

    def _block_graph(self, rows):
        """The kNN graph among a block's samples (cached per block), or None."""
        if self.semantic_weight <= 0 or self.graph_features is None:
            return None
        key = (int(rows[0]), rows.numel())
        graph = self._block_graphs.get(key)
        if graph is None:
            feats = self.graph_features[rows]
            if self.graph_transform is not None:
                feats = self.graph_transform(feats)
            feats = feats.reshape(feats.shape[0], -1)
            graph = knn_graph(feats, self.n_neighbors, sigma=self.sigma,
                              random_state=0).coalesce()
            if self.keep_block_graphs:
                self._block_graphs[key] = graph
        return graph

    def targets(self, index, *view_logits, view_index=None):
        """Compute the soft targets of a batch, one tensor per view.

        The targets are rows of ``N * Q``, ``Q`` the transport plan and
        ``N`` its number of rows, so each row sums to the sample's selection
        weight in ``[0, 1]``. In the ``"full"`` scope they are read from the
        plans of the last :meth:`refresh`. In the ``"bank"`` scope one
        problem per view is solved over the batch's logits stacked on the
        memory bank (and, with ``comm``, on the batches of all ranks), and
        the newest rows then replace the oldest ones in the bank.

        Parameters
        ----------
        index : array-like of int of shape (n_batch,)
            Indices of the batch's samples in this process's rows of the
            training set.
        *view_logits : torch.Tensor of shape (n_batch, n_clusters)
            The batch's logits, one tensor per view; detached before solving.
        view_index : sequence of array-like of int or None, default=None
            Per view, which sample each row of that view shows (a neighbour
            instead of the sample itself); ``None``: ``index`` for every view.
            Used by the ``"full"`` scope only; the ``"bank"`` scope ignores
            it.

        Returns
        -------
        targets : tuple of torch.Tensor of shape (n_batch, n_clusters)
            One tensor per view, with the device and dtype of that view's
            logits.
        """
        device = view_logits[0].device
        index = torch.as_tensor(index, device=device, dtype=torch.long)
        if self.scope == "full":
            if view_index is None:
                view_index = [index] * len(view_logits)
            view_index = [torch.as_tensor(i, device=device) for i in view_index]
            if self._position is not None:  # a block: its rows of the plan
                view_index = [self._position[i] for i in view_index]
                if any(bool((i < 0).any()) for i in view_index):
                    raise ValueError("targets asked for samples outside the refreshed block")
            return tuple(t[i].to(z.dtype)
                         for t, z, i in zip(self.full_targets, view_logits, view_index))
        return self._bank_targets(index, view_logits)

    def _bank_targets(self, index, view_logits):
        rows = slice(0, index.shape[0])
        if self.comm is not None:
            # one bank for all ranks: the batches of every rank enter the same
            # problem (solved identically on each rank), each keeps its rows
            index = index + self.index_offset
            sizes = self.comm.sizes(index.shape[0])
            start = sum(sizes[: self.comm.rank])
            rows = slice(start, start + index.shape[0])
            index = self.comm.gather_rows(index, sizes)
            view_logits = [self.comm.gather_rows(z.detach(), sizes) for z in view_logits]
        n_batch = index.shape[0]
        all_index = index if self.bank_index is None else torch.cat([index, self.bank_index])
        graph = None
        if self.semantic_weight > 0 and self.graph_features is not None and self.rho < 1:
            picked = all_index.to(self.graph_features.device)
            feats = self.graph_features[picked].to(view_logits[0].device)
            if self.graph_transform is not None:
                feats = self.graph_transform(feats)
            feats = feats.reshape(feats.shape[0], -1)
            # a fixed seed: an approximate graph (large banks) stays reproducible
            graph = knn_graph(feats, self.n_neighbors, sigma=self.sigma, random_state=0)
        out = []
        for view, logits in enumerate(view_logits):
            logits = logits.detach()
            bank = self.bank_logits[view]
            stacked = logits if bank is None else torch.cat([logits, bank])
            # Potentials are per sample; a bank holds other samples each step,
            # so only the column potentials carry over.
            warm = self._warm[view]
            self._warm[view] = None if warm is None else (None, warm[1])
            targets = self._solve(stacked, graph, view)[:n_batch][rows]
            out.append(targets.to(logits.dtype))
            self.bank_logits[view] = stacked[: self.memory_size]
        self.bank_index = all_index[: self.memory_size]
        return tuple(out)

    def release(self):
        """Drop the per-sample state (targets, bank, graph) after training.

        Keeps the fitted net small when pickled; the last solver log stays.
        """
        self.full_targets = [None] * self.n_views
        self._position = None
        self._block_graphs = {}
        self._symmetric_cache = {}
        self.bank_logits = [None] * self.n_views
        self.bank_index = None
        self.graph = None
        self.graph_features = None
        self.graph_transform = None
        self.comm = None  # holds a process group: never pickled
        self._warm = [None] * self.n_views
        if self.last_log is not None:
            # keep the small summary on the CPU; drop per-sample potentials
            self.last_log = {"column_mass": self.last_log["column_mass"].detach().cpu(),
                             "converged": self.last_log["converged"]}

    def column_weights(self):
        """Return the cluster-size distribution of the last solve.

        Returns
        -------
        weights : torch.Tensor of shape (n_clusters,) or None
            The column mass of the last plan divided by its total, so it
            sums to 1 (float64, on the CPU). ``None`` before the first solve
            or when the total mass is not finite and positive.
        """
        if self.last_log is None:
            return None
        mass = self.last_log["column_mass"].double()
        total = mass.sum()
        if not math.isfinite(float(total)) or total <= 0:
            return None
        return (mass / total).cpu()
