"""P²OT and SP²OT over rows sharded across the processes of ``torch.distributed``.

Each process holds the cost rows of its own samples. The row updates are
local; every column quantity is reduced over the process group, as SwAV's
distributed Sinkhorn does: per iteration one MAX and one SUM all-reduce of
K + 1 numbers (a numerically safe logsumexp over all rows) and one SUM of the
row error. Every control decision (stop, damp) is taken on reduced values,
so all ranks run the same number of iterations and collectives, and the plan
equals the single-process plan on the concatenated rows.

The loop is the exact log-domain generalized Sinkhorn with the translation
step and the Anderson mixing of :func:`skclust_ot.ot.p2ot`, in float64:
simple and unconditionally stable. The mixing works on the K + 1 reduced
column potentials, identical on every rank, so every rank mixes alike; the
decision to mix and the mixed vector are made common with one more MAX
all-reduce while the mixing is on (ranks with different LAPACK builds could
round differently). It is meant for the
per-rank share of a training set, not for the single-process speed records
of the scaling path.
"""

import builtins
import math
import warnings

import torch
import torch.distributed as dist

from ._backend import make_backend
from ._control import CONVERGED, MAX_ITER, _Acceleration
from ._p2ot import _warn_if_failed
from ._sp2ot import _majorize_minimize, _p2ot_objective, _total
from ._validation import _all_finite_tensor, _check_int, _check_real

__all__ = ["Communicator", "p2ot_distributed", "sp2ot_distributed"]


class Communicator:
    """Collective operations over a ``torch.distributed`` process group.

    Parameters
    ----------
    group : ProcessGroup or None, default=None
        The group (``None``: the default group, which must be initialized).
    device : torch.device or str or None, default=None
        Device of the tensors handed to the collectives (``None``: CUDA's
        current device for the NCCL backend, else the CPU).
    """

    def __init__(self, group=None, device=None):
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(
                "torch.distributed is not initialized: call "
                "torch.distributed.init_process_group(...) in every process first "
                "(e.g. in a script launched with torchrun)."
            )
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if device is None:
            backend = dist.get_backend(group)
            device = (torch.device("cuda", torch.cuda.current_device())
                      if backend == "nccl" else torch.device("cpu"))
        self.device = torch.device(device)

    def _on_device(self, tensor):
        return tensor.to(self.device) if tensor.device != self.device else tensor.clone()

    def sum(self, tensor):
        """Sum over ranks.

        Parameters
        ----------
        tensor : torch.Tensor
            This rank's values (not modified).

        Returns
        -------
        total : torch.Tensor
            The elementwise sum over the ranks, a new tensor on ``tensor``'s
            device.
        """
        out = self._on_device(tensor)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out.to(tensor.device)

    def max(self, tensor):
        """Elementwise maximum over ranks.

        Parameters
        ----------
        tensor : torch.Tensor
            This rank's values (not modified).

        Returns
        -------
        maximum : torch.Tensor
            The elementwise maximum over the ranks, on ``tensor``'s device.
        """
        out = self._on_device(tensor)
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=self.group)
        return out.to(tensor.device)

    def sizes(self, n_local):
        """Number of rows of every rank.

        Parameters
        ----------
        n_local : int
            This rank's number of rows.

        Returns
        -------
        sizes : list of int
            Every rank's number of rows, in rank order.
        """
        sizes = self.sum(self._one_hot(n_local))
        return [int(s) for s in sizes.tolist()]

    def _one_hot(self, value):
        out = torch.zeros(self.world_size, dtype=torch.float64)
        out[self.rank] = value
        return out

    def gather_rows(self, tensor, sizes=None):
        """Concatenate every rank's rows in rank order (rows may differ in number).

        Parameters
        ----------
        tensor : torch.Tensor of shape (n_local, ...)
            This rank's rows.
        sizes : list of int or None, default=None
            Every rank's number of rows when already known (saves the
            reduction that finds them).

        Returns
        -------
        rows : torch.Tensor of shape (sum(sizes), ...)
            The rows of all ranks, on this communicator's device.
        """
        if sizes is None:
            sizes = self.sizes(tensor.shape[0])
        padded = torch.zeros((max(sizes),) + tuple(tensor.shape[1:]), dtype=tensor.dtype,
                             device=self.device)
        padded[: tensor.shape[0]] = tensor.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(tensor.device)

    def agree(self, error=None):
        """Raise on every rank if any rank passes an exception.

        A rank that hit an error before a collective would otherwise leave
        the others waiting in it forever. The failing rank raises its own
        exception; the others raise its nearest built-in exception type
        (``ValueError`` for sklearn's ``InvalidParameterError``) with the
        failing rank's message.

        Parameters
        ----------
        error : BaseException or None, default=None
            This rank's exception, or None when this rank is fine.

        Raises
        ------
        Exception
            On every rank, when any rank passed an exception.
        """
        flag = torch.tensor([0.0 if error is None else 1.0], dtype=torch.float64)
        if float(self.max(flag)) == 0.0:
            return
        # the nearest built-in exception type of the error, e.g. ValueError
        # for sklearn's InvalidParameterError
        info = None if error is None else (
            next(c.__name__ for c in type(error).__mro__
                 if getattr(builtins, c.__name__, None) is c), str(error))
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, info, group=self.group)
        if error is not None:
            raise error
        rank, (name, message) = next((r, i) for r, i in enumerate(gathered) if i is not None)
        cls = getattr(builtins, name, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            cls = RuntimeError
        raise cls(f"rank {rank} failed: {message}")


def _check_graph_rows(graph, n_local, n_total):
    """None if ``graph`` is a sparse (n_local, n_total) tensor, else the error."""
    if not isinstance(graph, torch.Tensor) or graph.layout not in (torch.sparse_coo,
                                                                   torch.sparse_csr):
        layout = graph.layout if isinstance(graph, torch.Tensor) else type(graph).__name__
        return ValueError(f"graph must be a sparse torch tensor (COO or CSR), got {layout}.")
    if tuple(graph.shape) != (n_local, n_total):
        return ValueError(
            f"graph must hold this rank's rows of the global affinity, shape "
            f"(n_local_samples, n_samples) = ({n_local}, {n_total}), got {tuple(graph.shape)}."
        )
    return None


def _check_local_cost(cost, comm):
    """Validate this rank's cost block; K must agree across ranks."""
    error = None
    try:
        if not isinstance(cost, torch.Tensor):
            raise TypeError(f"cost must be a torch.Tensor, got {type(cost).__name__}.")
        if cost.ndim != 2 or cost.shape[1] < 1:
            raise ValueError(
                f"cost must be 2-D (n_local_samples, n_clusters) with n_clusters >= 1, "
                f"got shape {tuple(cost.shape)}."
            )
        if not cost.is_floating_point():
            raise ValueError(f"cost must have a floating-point dtype, got {cost.dtype}.")
        if not _all_finite_tensor(cost):
            raise ValueError("cost contains NaN or inf.")
    except (TypeError, ValueError) as exc:
        error = exc
    comm.agree(error)
    k = torch.tensor([float(cost.shape[1])], dtype=torch.float64)
    if float(comm.max(k)) != float(-comm.max(-k)):
        comm.agree(ValueError("cost has a different number of clusters (columns) on "
                              "different ranks."))


def _check_params(rho, epsilon, kl_weight, max_iter, tol):
    rho = _check_real(rho, "rho", low=0.0, high=1.0)
    epsilon = _check_real(epsilon, "epsilon", low=0.0)
    kl_weight = _check_real(kl_weight, "kl_weight", low=0.0, allow_inf=True)
    max_iter = _check_int(max_iter, "max_iter", low=1)
    tol = _check_real(tol, "tol", low=0.0, low_open=False)
    return rho, epsilon, kl_weight, max_iter, tol


def _column_lse(comm, x):
    """log sum_i exp(x_ij) over the rows of all ranks (x: local rows × columns)."""
    top = x.amax(dim=0) if x.shape[0] else torch.full(x.shape[1:], -math.inf, dtype=x.dtype,
                                                        device=x.device)
    top = comm.max(top)
    safe = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = comm.sum(torch.exp(x - safe).sum(dim=0))
    return torch.log(total) + safe


def _solve_sharded(comm, cost, rho, epsilon, kl_weight, max_iter, tol, g0, accelerate=True):
    """Exact log-domain P²OT on this rank's rows. Potentials in units of epsilon.

    ``accelerate=False`` (benchmarks) drops the Anderson mixing.
    """
    acc = torch.float64
    c = cost.to(acc) / epsilon
    n_local, k = c.shape
    n_total = sum(comm.sizes(n_local))
    has_virtual = rho < 1.0
    log_a = -math.log(n_total)
    log_beta = math.log(rho / k)
    log_beta_virtual = math.log1p(-rho) if has_virtual else None
    phi = 1.0 if math.isinf(kl_weight) else kl_weight / (kl_weight + epsilon)
    ratio = None if math.isinf(kl_weight) else epsilon / kl_weight

    g = torch.zeros(k + 1, dtype=acc, device=c.device)
    if g0 is not None:
        g.copy_(g0.to(device=c.device, dtype=acc) / epsilon)
    if not has_virtual:
        g[k] = -math.inf

    def row_lse(g):
        x = torch.logsumexp(g[None, :k] - c, dim=1)
        if has_virtual:
            x = torch.logaddexp(x, g[k].expand(n_local))
        return x

    def row_error(f, rows):
        return float(comm.sum(torch.abs(torch.exp(f + rows) - math.exp(log_a)).sum()[None]))

    f = log_a - row_lse(g)
    err, status, n_iter = math.inf, MAX_ITER, 0
    # Anderson mixing of the finite column potentials (see ``_control``)
    acceleration = _Acceleration(make_backend(c, "torch"), acc, accelerate)
    width = k + 1 if has_virtual else k
    for it in range(1, max_iter + 1):
        g_prev = g
        # exact column update on the reduced column sums
        lse = _column_lse(comm, f[:, None] - c)
        g = g.clone()
        g[:k] = phi * (log_beta - lse)
        if has_virtual:
            g[k] = log_beta_virtual - _column_lse(comm, f[:, None])[0]
        if ratio is not None:
            # translation (f + t, g - t): the closed-form maximiser of the dual
            # along the direction that leaves the plan unchanged
            t = (math.log(k) - torch.logsumexp(-ratio * g[:k], dim=0)) / ratio
            f = f + t
            g = g - t
            if not has_virtual:
                g[k] = -math.inf
        mixed = False
        if acceleration.active:
            g, g_plain, mixed = _agreed_mix(comm, acceleration, it, max_iter, g_prev, g, width)
        rows = row_lse(g)
        err = row_error(f, rows)
        if mixed and not math.isfinite(err):
            # the mixed step overflowed: take the plain one, and plain steps from now on
            acceleration.stop()
            g, mixed = g_plain, False
            rows = row_lse(g)
            err = row_error(f, rows)
        n_iter = it
        if not math.isfinite(err):
            status = "numerical"
            break
        verdict = acceleration.decide(it, max_iter, err, tol, mixed)
        if verdict in (CONVERGED, MAX_ITER):
            status = verdict
            break
        acceleration.after_check(it, err, tol)
        f = log_a - rows
    plan = torch.exp(f[:, None] + g[None, :k] - c)
    virtual = torch.exp(f + g[k]) if has_virtual else None
    return plan, virtual, f * epsilon, g * epsilon, n_iter, err, status


def _agreed_mix(comm, acceleration, it, max_iter, g_prev, g, width):
    """``(g, g_plain, mixed)``: the mixed column potentials, the same on every rank.

    One MAX all-reduce of (mixed?, next iterate) while the mixing is active
    (its activity follows reduced values only), so that the ranks agree on
    both even if their LAPACK builds round differently. ``g_plain`` is the
    unmixed ``g``.
    """
    x_next, mixed = acceleration.mix(it, max_iter, g_prev[:width], g[:width])
    agreed = comm.max(torch.cat([torch.ones(1, dtype=g.dtype, device=g.device) * mixed,
                                 x_next]))
    mixed = bool(agreed[0] > 0)
    g_plain = g
    if mixed:
        g = g.clone()
        g[:width] = agreed[1:]
    return g, g_plain, mixed


def _log(comm, plan, virtual, rho, f, g, n_iter, err, status, dtype):
    acc = torch.float64
    column_mass = comm.sum(plan.sum(dim=0, dtype=acc))
    virtual_mass = float(comm.sum(virtual.sum(dtype=acc)[None])) if virtual is not None else 0.0
    mass = float(column_mass.sum())
    return {
        "n_iter": n_iter,
        "converged": status == "converged",
        "status": status,
        "method": "log-distributed",
        "row_error": err,
        "last_error": err,
        "virtual_error": abs(virtual_mass - (1.0 - rho)),
        "mass_error": abs(mass - rho),
        "column_mass": column_mass,
        "potentials": (f.to(dtype), g.to(dtype)),
    }


def _warm_g(warm_start):
    if warm_start is None:
        return None
    g = warm_start[1] if isinstance(warm_start, (tuple, list)) else warm_start
    return None if g is None else torch.as_tensor(g)


@torch.no_grad()
def p2ot_distributed(cost, rho, *, epsilon=0.1, kl_weight=1.0, max_iter=1000, tol=1e-6,
                     warm_start=None, group=None):
    r"""P²OT over rows held by the processes of a ``torch.distributed`` group.

    Solves the problem of :func:`skclust_ot.ot.p2ot` on the concatenation (in
    rank order) of every rank's ``cost`` rows, without gathering them: each
    rank returns its own rows of the plan. Call it on every rank of the group
    with the same parameters.

    Parameters
    ----------
    cost : torch.Tensor of shape (n_local_samples, n_clusters)
        This rank's cost rows (may be empty); K is the same on every rank.
    rho : float in (0, 1]
        Total transported mass, as in :func:`skclust_ot.ot.p2ot`.
    epsilon : float, default=0.1
        Entropic regularisation, > 0.
    kl_weight : float, default=1.0
        Weight of the KL penalty on the cluster sizes (``math.inf``: uniform).
    max_iter : int, default=1000
        Maximum number of iterations.
    tol : float, default=1e-6
        Bound on the L1 row error summed over all ranks.
    warm_start : tuple (f, g) or None, default=None
        Only the column potentials ``g`` (length K + 1, the same on every
        rank) are used, as in :func:`skclust_ot.ot.p2ot`.
    group : ProcessGroup or None, default=None
        The process group; ``None``: the default group.

    Returns
    -------
    plan : torch.Tensor of shape (n_local_samples, n_clusters)
        This rank's rows of the plan at the 1/N scale, N the total number
        of rows over all ranks.
    log : dict
        As :func:`skclust_ot.ot.p2ot` (``column_mass`` and the errors are
        global, ``potentials`` holds this rank's f and the shared g);
        ``method`` is ``"log-distributed"``.

    Raises
    ------
    ValueError, TypeError
        On every rank, if any rank's input is invalid (no rank is left
        waiting in a collective).

    Notes
    -----
    The iterations are the exact log-domain updates in float64 (one
    logsumexp pass over the local rows per half step), with the
    translation step of :func:`skclust_ot.ot.p2ot`; per iteration three
    all-reduces of K + 1 or fewer numbers.
    """
    comm = Communicator(group, device=None)
    _check_local_cost(cost, comm)
    rho, epsilon, kl_weight, max_iter, tol = _check_params(rho, epsilon, kl_weight,
                                                           max_iter, tol)
    plan, virtual, f, g, n_iter, err, status = _solve_sharded(
        comm, cost, rho, epsilon, kl_weight, max_iter, tol, _warm_g(warm_start))
    log = _log(comm, plan, virtual, rho, f, g, n_iter, err, status, cost.dtype)
    _warn_if_failed("p2ot_distributed", log, max_iter, tol, stacklevel=3)
    return plan.to(cost.dtype), log


def _local_symmetrized(comm, graph, n_local, offset, n_total, like):
    """Rows [offset, offset + n_local) of S + S^T from every rank's rows of S.

    ``graph`` holds this rank's rows of S (local row index, global column
    index); the edges of all ranks are gathered once (N·k entries), never
    anything N×N.
    """
    graph = graph.coalesce() if graph.layout == torch.sparse_coo else graph.to_sparse_coo()
    index = graph.indices()
    edges = torch.stack([index[0].to(torch.float64) + offset, index[1].to(torch.float64),
                         graph.values().to(torch.float64)], dim=1)
    edges = comm.gather_rows(edges)
    rows, cols, vals = edges[:, 0].long(), edges[:, 1].long(), edges[:, 2]
    # S + S^T restricted to our rows: edges (i, j) with i ours, and (j, i) with j ours
    mine = (rows >= offset) & (rows < offset + n_local)
    mine_t = (cols >= offset) & (cols < offset + n_local)
    r = torch.cat([rows[mine] - offset, cols[mine_t] - offset])
    c = torch.cat([cols[mine], rows[mine_t]])
    v = torch.cat([vals[mine], vals[mine_t]])
    coo = torch.sparse_coo_tensor(torch.stack([r, c]), v.to(like.dtype), (n_local, n_total),
                                  check_invariants=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
        return coo.coalesce().to_sparse_csr().to(like.device)


@torch.no_grad()
def sp2ot_distributed(cost, rho, graph, *, semantic_weight=0.2, epsilon=0.1, kl_weight=1.0,
                      max_iter=1000, tol=1e-6, mm_max_iter=100, mm_tol=1e-6,
                      warm_start=None, group=None):
    r"""SP²OT over rows held by the processes of a ``torch.distributed`` group.

    The problem of :func:`skclust_ot.ot.sp2ot` on the concatenation (in rank
    order) of every rank's rows, solved by the same majorization-minimization
    with :func:`p2ot_distributed` as the inner solver.

    Parameters
    ----------
    cost : torch.Tensor of shape (n_local_samples, n_clusters)
        This rank's cost rows.
    rho : float in (0, 1]
        Total transported mass.
    graph : torch.Tensor of shape (n_local_samples, n_samples)
        This rank's rows of the sparse affinity S (COO or CSR), columns
        indexed globally (rank order), e.g. the rows of a global
        :func:`knn_graph`. Never densified; the edges of all ranks are
        gathered once to form the local rows of S + Sᵀ.
    semantic_weight : float, default=0.2
        Weight of the semantic term, as in :func:`skclust_ot.ot.sp2ot`.
    epsilon : float, default=0.1
        Entropic regularisation of every inner solve, > 0.
    kl_weight : float, default=1.0
        Weight of the KL penalty on the cluster sizes.
    max_iter : int, default=1000
        Maximum iterations per inner solve.
    tol : float, default=1e-6
        Row-marginal tolerance (summed over all ranks) of every inner solve.
    mm_max_iter : int, default=100
        Maximum number of majorization–minimization steps.
    mm_tol : float, default=1e-6
        Stop when the relative change of the SP²OT objective is below it.
    warm_start : tuple (f, g) or None, default=None
        Potentials of the first inner solve, as in :func:`skclust_ot.ot.sp2ot`.
    group : ProcessGroup or None, default=None
        The process group; ``None``: the default group.

    Returns
    -------
    plan : torch.Tensor of shape (n_local_samples, n_clusters)
        This rank's rows of the SP²OT plan (1/N scale).
    log : dict
        As :func:`skclust_ot.ot.sp2ot`, with global errors and objective.

    Notes
    -----
    Each MM step gathers the plan of all ranks (N×K on every rank) for the
    product with the local rows of S + Sᵀ; the semantic term is meant for
    the full-data scope (N up to tens of thousands).
    """
    comm = Communicator(group, device=None)
    _check_local_cost(cost, comm)
    error = None
    try:
        rho, epsilon, kl_weight, max_iter, tol = _check_params(rho, epsilon, kl_weight,
                                                               max_iter, tol)
        semantic_weight = _check_real(semantic_weight, "semantic_weight", low=0.0,
                                      low_open=False)
        mm_max_iter = _check_int(mm_max_iter, "mm_max_iter", low=0)
        mm_tol = _check_real(mm_tol, "mm_tol", low=0.0, low_open=False)
    except (TypeError, ValueError) as exc:
        error = exc
    comm.agree(error)
    n_local = cost.shape[0]
    sizes = comm.sizes(n_local)
    n_total, offset = sum(sizes), sum(sizes[: comm.rank])
    comm.agree(_check_graph_rows(graph, n_local, n_total))

    def solve(cost_t, warm):
        plan, virtual, f, g, n_iter, err, status = _solve_sharded(
            comm, cost_t, rho, epsilon, kl_weight, max_iter, tol, _warm_g(warm))
        return plan, virtual, _log(comm, plan, virtual, rho, f, g, n_iter, err, status,
                                   cost.dtype)

    weight = semantic_weight * (1.0 - rho)

    def p2ot_part(plan, virtual):
        return _p2ot_objective(plan, virtual, cost, rho, epsilon, kl_weight, reduce=comm.sum)

    def make_pull_and_objective():
        # the sharded solver returns float64 plans
        like = torch.empty(0, dtype=torch.float64, device=cost.device)
        sym = _local_symmetrized(comm, graph, n_local, offset, n_total, like)

        def pull_and_objective(plan, virtual):
            scaled = comm.gather_rows(plan * n_total, sizes)
            pull = sym @ scaled
            semantic = comm.sum((0.5 * weight * _total(pull * plan, torch.float64))[None])
            return pull, float(p2ot_part(plan, virtual) - semantic[0])
        return pull_and_objective

    plan, log = _majorize_minimize(
        "sp2ot_distributed", solve, p2ot_part, make_pull_and_objective, cost, weight,
        warm_start, max_iter, tol, mm_max_iter, mm_tol)
    return plan.to(cost.dtype), log
