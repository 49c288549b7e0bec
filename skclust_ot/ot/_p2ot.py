"""Progressive partial optimal transport (P²OT) with an implicit virtual cluster.

The solvers work on centred dual potentials in units of epsilon (see the
comment above ``_Problem``). The virtual (zero-cost) column is never
materialised as an extra column of an N×(K+1) tensor: it is carried as one
length-N vector next to the N×K real part.
"""

import math
import warnings

import torch

from ..exceptions import ConvergenceWarning
from ._anderson import MEMORY, AndersonMixer
from ._backend import make_backend
from ._validation import (
    _check_out,
    _check_p2ot_params,
    _check_warm_start,
)

__all__ = ["ConvergenceWarning", "cost_from_logits", "p2ot"]


def cost_from_logits(logits):
    """Transport cost ``C = -log softmax(logits)`` of a cluster head.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_clusters)
        Unnormalised cluster scores.

    Returns
    -------
    cost : torch.Tensor of shape (n_samples, n_clusters)
        Non-negative cost, same dtype and device as ``logits``. Computed with
        ``log_softmax`` so that tiny probabilities give large finite costs
        instead of ``inf``.

    Examples
    --------
    >>> import torch
    >>> from skclust_ot.ot import cost_from_logits
    >>> cost = cost_from_logits(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    >>> [[round(c, 4) for c in row] for row in cost.tolist()]
    [[0.6931, 0.6931], [0.3133, 1.3133]]
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}.")
    if logits.ndim != 2:
        raise ValueError(
            f"logits must be 2-D (n_samples, n_clusters), got shape {tuple(logits.shape)}."
        )
    return -torch.log_softmax(logits, dim=1)


# --------------------------------------------------------------------------- #
# the problem and its two solvers
# --------------------------------------------------------------------------- #
# Coordinates. The solvers never store the dual potentials (f, g) themselves
# but small "centred" scaled potentials (u, v) and one float64 scalar, the
# gauge T:
#
#     f_i / eps = u_i + o_i + T,     g_j / eps = v_j + c_j - T,
#
# with o (rows) and c (columns) the offsets removed from the augmented cost,
# so that the plan is exp(u_i + v_j - Chat_ij) with Chat = [C, 0]/eps - o - c.
# The plan does not depend on T; the soft cluster-size term does, and the
# translation step moves T only. Keeping the large common parts of f and g
# out of u and v is what lets float32 reach tol = 1e-6 when C / eps is large
# (small epsilon, diffuse rows with C ~ log K, shifted SP2OT costs).
#
# Memory. One N×K work array W is allocated per solve and becomes the
# returned plan: it holds Chat on the log path and the stabilized kernel
# exp(u + v - Chat) on the scaling path. Chat is recomputed from the input
# cost block by block whenever the kernel is rebuilt, always with the same
# operations in the same order, so every rebuild sees bit-identical values.
# Everything else is O(N + K) plus one block of temporaries.
class _Problem:
    """Everything about one P²OT instance that does not change across iterations."""

    def __init__(self, cost, rho, epsilon, kl_weight, backend, out=None):
        be = self.be = backend
        xp = be.xp
        n_samples, n_clusters = cost.shape
        self.cost = cost
        self.C = C = be.wrap(cost)
        self.dtype = cost.dtype
        self.n_samples = n_samples
        self.n_clusters = n_clusters
        self.rho = rho
        self.epsilon = epsilon
        self.kl_weight = kl_weight
        # rho == 1: the virtual column has target mass 0 and is dropped entirely
        self.has_virtual = rho < 1.0
        rows = n_samples if be.block_elements is None else max(
            1, be.block_elements // n_clusters)
        self.block_rows = min(rows, n_samples)
        self.blocks = [(s, min(s + rows, n_samples)) for s in range(0, n_samples, rows)]
        self.tmp = None  # one block of temporaries, allocated on first use

        # row minima of C / eps without an N×K copy: division by eps > 0 is
        # monotone, so min_j fl(C_ij / eps) == fl(min_j C_ij / eps)
        row_offset = be.amin(C, 1) / epsilon
        if self.has_virtual:
            # the virtual column's zero cost takes part in the row minimum
            row_offset[row_offset > 0] = 0.0
        self.row_offset = row_offset
        # the work array: the caller's ``out`` (its contents are ignored) or new
        self.W = W = be.empty((n_samples, n_clusters)) if out is None else be.wrap(out)
        col_offset = None
        for s, e in self.blocks:
            w = W[s:e]
            xp.divide(C[s:e], epsilon, out=w)
            xp.subtract(w, row_offset[s:e, None], out=w)
            m = be.amin(w, 0)
            col_offset = m if col_offset is None else xp.minimum(col_offset, m, out=col_offset)
        self.col_offset = col_offset
        # W = C / eps - o; the log path subtracts c too (centre_columns), the
        # scaling path folds c into the kernel build and saves that pass
        self.centred = False
        self.col_offset_acc = be.cast(col_offset, acc=True)
        self.virtual_cost = self.virtual_offset = None
        if self.has_virtual:
            # centred cost of the virtual column: an implicit length-N vector
            self.virtual_offset = be.sval(be.amin(-row_offset, 0))
            self.virtual_cost = -row_offset - self.virtual_offset
        self.log_alpha = -math.log(n_samples)
        self.log_beta = math.log(rho / n_clusters)
        self.log_beta_virtual = math.log1p(-rho) if self.has_virtual else None
        if math.isinf(kl_weight):
            self.phi, self.one_minus_phi = 1.0, 0.0
        else:
            self.phi = kl_weight / (kl_weight + epsilon)
            self.one_minus_phi = epsilon / (kl_weight + epsilon)
        # scalings whose log exceeds this are absorbed into the potentials
        self.absorb_threshold = 0.125 * math.log(torch.finfo(cost.dtype).max)

    def centre_columns(self):
        """W = Chat (from C / eps - o), bit-identical to ``fill_scaled_cost``."""
        if not self.centred:
            self.be.xp.subtract(self.W, self.col_offset[None, :], out=self.W)
            self.centred = True

    def block_buffer(self, rows):
        """Rows of a float64 (accumulation dtype) block of temporaries."""
        if self.tmp is None:
            self.tmp = self.be.empty((self.block_rows, self.n_clusters), acc=True)
        return self.tmp[:rows]

    def fill_scaled_cost(self, start, stop, out):
        """out = Chat[start:stop], with exactly the operations of the set-up."""
        xp = self.be.xp
        xp.divide(self.C[start:stop], self.epsilon, out=out)
        xp.subtract(out, self.row_offset[start:stop, None], out=out)
        xp.subtract(out, self.col_offset[None, :], out=out)
        return out

    def zero_gauge(self):
        return self.be.scalar(0.0)

    def soft_offset(self, gauge):
        """(1 - phi)(T - c): the offset part of a soft column update (length K)."""
        return self.one_minus_phi * (gauge - self.col_offset_acc)

    # exact log-domain half steps (W holds Chat) ---------------------------- #
    # The log path keeps its potentials and block arithmetic in float64 (the
    # accumulation dtype); only Chat is stored in the input dtype. In float32
    # the rounding of large potentials otherwise sets a noise floor on the
    # row error close to tol = 1e-6 when C / eps is in the thousands.
    def row_lse(self, v, v_virtual):
        """log of the row sums of exp(v_j - Chat_ij) over all K (+ 1) columns."""
        be, xp, W = self.be, self.be.xp, self.W
        out = be.empty(self.n_samples, acc=True)
        for s, e in self.blocks:
            x = xp.subtract(v[None, :], W[s:e], out=self.block_buffer(e - s))
            m = be.amax(x, 1)
            xp.subtract(x, m[:, None], out=x)
            xp.exp(x, out=x)
            total = be.sum(x, 1)
            xp.log(total, out=total)
            xp.add(total, m, out=out[s:e])
        if self.has_virtual:
            xp.logaddexp(out, v_virtual - self.virtual_cost, out=out)
        return out

    def column_lse(self, u):
        """log of the column sums of exp(u_i - Chat_ij), accumulated in float64."""
        be, xp, W = self.be, self.be.xp, self.W
        top = total = None
        for s, e in self.blocks:
            x = xp.subtract(u[s:e, None], W[s:e], out=self.block_buffer(e - s))
            m = be.amax(x, 0)
            if top is None:
                top = m
            else:
                new_top = xp.maximum(top, m)
                total *= xp.exp(be.cast(top - new_top, acc=True))
                top = new_top
            xp.subtract(x, top[None, :], out=x)
            xp.exp(x, out=x)
            part = be.sum(x, 0, acc=True)
            total = part if total is None else xp.add(total, part, out=total)
        return xp.log(total) + top

    def column_update(self, u, gauge):
        """Exact column potentials v (K) and v_virtual (0-d) given u and the gauge."""
        v = self.phi * (self.log_beta - self.column_lse(u))
        if self.one_minus_phi:
            v = v + self.soft_offset(gauge)
        v_virtual = None
        if self.has_virtual:
            v_virtual = self.log_beta_virtual - _lse(self.be, u - self.virtual_cost)
        return v, v_virtual

    def translation(self, v, gauge):
        """Exact dual ascent step along (f + t, g - t), in units of epsilon.

        The shift leaves the plan unchanged but moves the soft cluster-size
        term of the dual; its maximiser solves
        sum_j beta_j exp(-g_j / lambda) = rho in closed form. Without it the
        total real mass relaxes at the slow rate 1 - rho eps / (lambda + eps)
        per iteration (cf. Séjourné et al. 2022). Computed in float64, as the
        division by eps / lambda amplifies rounding. Returns None when every
        column is hard (kl_weight = inf).
        """
        if not self.one_minus_phi:
            return None
        ratio = self.epsilon / self.kl_weight
        g_scaled = self.be.cast(v, acc=True) + self.col_offset_acc - gauge
        return (math.log(self.n_clusters) - _lse(self.be, -ratio * g_scaled)) / ratio

    def row_error(self, log_rows):
        """L1 error of the row sums exp(log_rows) against alpha, accumulated in float64."""
        be = self.be
        rows = be.xp.exp(be.cast(log_rows, acc=True))
        return be.sum(be.xp.abs(rows - math.exp(self.log_alpha)))

    def cold_start(self):
        # g_j = min_i C_ij (v = 0 here): the best row of every column gets a
        # kernel entry of at least alpha / (K + 1), so no column underflows
        v = self.be.full(self.n_clusters, 0.0)
        v_virtual = self.be.sval(0.0) if self.has_virtual else None
        return v, v_virtual

    def dual_potentials(self, u, v, v_virtual, gauge):
        """(f, g) as torch tensors with plan_ij = exp((f_i + g_j - Chat_ij) / eps)."""
        be, eps, k = self.be, self.epsilon, self.n_clusters
        f = eps * (be.cast(u, acc=True) + be.cast(self.row_offset, acc=True) + gauge)
        g = be.full(k + 1, -math.inf, acc=True)
        g[:k] = eps * (be.cast(v, acc=True) + self.col_offset_acc - gauge)
        if self.has_virtual:
            g[k] = eps * (be.cast(v_virtual, acc=True) + be.cast(self.virtual_offset, acc=True)
                          - gauge)
        return be.unwrap(be.cast(f)), be.unwrap(be.cast(g))

    def all_finite(self, *values):
        """1.0 if every value is finite, else 0.0 (a backend scalar)."""
        xp = self.be.xp
        flags = [xp.isfinite(x).all() for x in values if x is not None]
        if self.be.name == "numpy":
            return float(all(flags))
        return torch.stack(flags).all()


def _lse(be, x):
    """logsumexp of a 1-D array (a backend scalar)."""
    top = be.amax(x, 0)
    if be.name == "numpy" and not math.isfinite(top):
        return float(top)
    return be.xp.log(be.sum(be.xp.exp(x - top))) + top


# Convergence checks. Reading the row error, the finiteness flags and the
# scaling sizes back costs a handful of small operations and, on a GPU, a
# host synchronization: on small problems that is as much as the iteration
# itself. The first two iterations are always checked (warm starts converge
# there); after that the next check is placed where the linear convergence
# seen so far predicts the tolerance to be met, at most ``max_gap``
# iterations later. Large problems, where a check is cheap next to the two
# passes over the kernel, are checked every iteration.
def _default_max_gap(n_samples, n_clusters):
    # a check costs ~10 O(N) operations, an iteration ~14 plus 2 passes over N×K;
    # keep the checks below ~5% of the time (one operation ~ 4096 elements)
    check = 10.0 * (1.0 + n_samples / 4096.0)
    iteration = 14.0 + 2.0 * n_samples * n_clusters / 4096.0
    return int(min(8, max(1, math.ceil(20.0 * check / iteration))))


class _CheckSchedule:
    def __init__(self, tol, max_gap, max_iter):
        self.tol, self.max_gap, self.max_iter = tol, max_gap, max_iter
        self.previous = None
        self.next = 1

    def due(self, it):
        return it >= self.next or it >= self.max_iter

    def update(self, it, err):
        gap = self.max_gap
        if it < 2:
            gap = 1
        elif self.previous is not None:
            it0, err0 = self.previous
            log_rate = math.log(err / err0) / (it - it0) if 0.0 < err < err0 else 0.0
            if log_rate < 0.0 and err > self.tol > 0.0:
                # iterations still needed at the observed linear rate
                need = math.log(self.tol / err) / log_rate
                gap = min(self.max_gap, max(1, math.ceil(need)))
        self.previous = (it, err)
        self.next = it + gap


def _solve_log(pb, u, v, v_virtual, gauge, max_iter, tol, max_gap, accelerate=True,
               start=0, translate=True, sched=None):
    """Log-domain generalized Sinkhorn from the centred potentials (W holds Chat).

    Each iteration is an exact column update, Anderson-mixed as in the
    scaling path (see ``_Acceleration``), a translation of the gauge and an
    exact row update; the incoming ``(u, v, v_virtual, gauge)`` is also the
    iterate restored on NaN/inf. The iterates since the last check are kept
    (by reference) so that the last finite one can be restored. ``start``
    iterations were already done by the scaling path before a fallback, whose
    check schedule and ``_Acceleration`` (passed as ``sched`` and
    ``accelerate``, its history already moved from log b to v) then carry on,
    so that a solve that falls back early follows the iterates of a pure
    log-domain solve.
    """
    be = pb.be
    u, v = be.cast(u, acc=True), be.cast(v, acc=True)
    if pb.has_virtual:
        v_virtual = be.cast(v_virtual, acc=True) if be.name == "torch" else float(v_virtual)
    max_iter += start
    if sched is None:
        sched = _CheckSchedule(tol, max_gap, max_iter)
    if isinstance(accelerate, _Acceleration):
        acceleration = accelerate  # already in the log path's coordinates (v itself)
    else:
        acceleration = _Acceleration(be, pb.dtype, accelerate)
    k = pb.n_clusters
    if acceleration.active:
        x_cur, x_new = be.empty(k + pb.has_virtual, acc=True), be.empty(k + pb.has_virtual,
                                                                         acc=True)
    result = (u, v, v_virtual, gauge)
    err = math.inf
    n_iter = start
    status = "max_iter"
    window = []

    def evaluate(state):
        _, s_u, s_v, s_vv, s_gauge, s_lse = state
        err_value, finite = be.items(pb.row_error(s_u + s_lse),
                                     pb.all_finite(s_v, s_vv, s_lse, s_gauge))
        return err_value, bool(finite) and math.isfinite(err_value)

    # the loop state at the last check, for a replay with plain steps when a
    # mixed step overflowed (NaN/inf from exact steps do not heal)
    checkpoint = (start, u, v, v_virtual, gauge, acceleration.snapshot())
    it = start
    while it < max_iter:
        it += 1
        new_v, new_v_virtual = pb.column_update(u, gauge)
        mixed = False
        if acceleration.active:
            x_cur[:k], x_new[:k] = v, new_v
            if pb.has_virtual:
                x_cur[k], x_new[k] = v_virtual, new_v_virtual
            x_next, mixed = acceleration.mix(it, max_iter, x_cur, x_new)
            if mixed:
                new_v = x_next[:k]
                if pb.has_virtual:
                    new_v_virtual = x_next[k] if be.name == "torch" else float(x_next[k])
        v, v_virtual = new_v, new_v_virtual
        shift = pb.translation(new_v, gauge) if translate else None
        gauge = gauge if shift is None else gauge + shift
        lse = pb.row_lse(new_v, new_v_virtual)
        window.append((it, u, new_v, new_v_virtual, gauge, lse))
        if sched.due(it) or acceleration.near(tol):
            err_value, ok = evaluate(window[-1])
            if not ok and acceleration.mixed_since_check:
                # a mixed step overshot: back to the last check, plain steps from there
                it, u, v, v_virtual, gauge, mixing = checkpoint
                acceleration.rewind(mixing)
                window.clear()
                continue
            if not ok:
                # NaN/inf do not heal: restore the iterate before the first bad one
                status = "numerical"
                for state in window[:-1]:
                    state_err, state_ok = evaluate(state)
                    if not state_ok:
                        break
                    n_iter, err, result = state[0], state_err, state[1:5]
                break
            n_iter, err, result = it, err_value, window[-1][1:5]
            window.clear()
            polish = err < tol and mixed
            if polish:  # finish with an exact step, as in the scaling path
                acceleration.stop()
            elif err < tol:
                status = "converged"
                break
            if it == max_iter:
                break
            sched.update(it, err)
            if polish:
                sched.next = it + 1
            acceleration.update(it, err, tol)
            checkpoint = (it, pb.log_alpha - lse, v, v_virtual, gauge,
                          acceleration.snapshot())
        # the last pass skips this: ending on a column update keeps the
        # virtual mass exact
        u = pb.log_alpha - lse
    return (*result, n_iter - start, err, status)


class _ScalingState:
    """Absorbed potentials (u, v, v_virtual), scalings (a, b, b_virtual) and kernel.

    The plan is ``a_i W_ij b_j`` with the kernel ``W = exp(u + v - Chat)``
    stored in ``pb.W``, and the virtual column ``a_i kv_i b_virtual`` with
    ``kv = exp(u + v_virtual - chat_virtual)``.
    """

    def __init__(self, pb, v, v_virtual, gauge):
        be = pb.be
        self.pb = pb
        self.v, self.v_virtual, self.gauge = v, v_virtual, gauge
        self.a = be.full(pb.n_samples, 1.0)
        self.b = be.full(pb.n_clusters, 1.0)
        self.b_virtual = be.sval(1.0) if pb.has_virtual else None
        self.n_absorb = 0
        self.build()

    def build(self):
        """Turn W (C / eps - o, or Chat) into the kernel, u from an exact row update.

        Also accumulates the column sums of the kernel, K^T a for a = 1, so
        that the first iteration does not need a pass of its own.
        """
        pb = self.pb
        be, xp, W = pb.be, pb.be.xp, pb.W
        v, v_virtual = self.v, self.v_virtual
        shift = v if pb.centred else v + pb.col_offset  # v - Chat = (v + c) - W
        alpha = 1.0 / pb.n_samples
        u = be.empty(pb.n_samples)
        kv = be.empty(pb.n_samples) if pb.has_virtual else None
        col_sums = be.full(pb.n_clusters, 0.0, acc=True)
        for s, e in pb.blocks:
            w = xp.subtract(shift[None, :], W[s:e], out=W[s:e])
            top = be.amax(w, 1)
            if pb.has_virtual:
                xv = v_virtual - pb.virtual_cost[s:e]
                xp.maximum(top, xv, out=top)
            xp.subtract(w, top[:, None], out=w)
            xp.exp(w, out=w)
            total = be.sum(w, 1)
            if pb.has_virtual:
                ev = xp.exp(xp.subtract(xv, top, out=xv), out=xv)
                xp.add(total, ev, out=total)
            # W = alpha exp(v - Chat - top) / total, u = log(alpha) - top - log(total)
            scale = xp.divide(alpha, total)
            xp.multiply(w, scale[:, None], out=w)
            xp.add(col_sums, be.sum(w, 0), out=col_sums)
            if pb.has_virtual:
                xp.multiply(ev, scale, out=kv[s:e])
            xp.subtract(pb.log_alpha - top, xp.log(total, out=total), out=u[s:e])
        self.u, self.kv, self.col_sums = u, kv, col_sums
        self.constants()

    def rebuild(self):
        """W = exp(u + v - Chat) from the input cost, block by block, and its column sums."""
        pb = self.pb
        be, xp, W, u, v = pb.be, pb.be.xp, pb.W, self.u, self.v
        col_sums = self.col_sums = be.full(pb.n_clusters, 0.0, acc=True)
        for s, e in pb.blocks:
            w = pb.fill_scaled_cost(s, e, W[s:e])
            xp.subtract(u[s:e, None], w, out=w)
            xp.add(w, v[None, :], out=w)
            xp.exp(w, out=w)
            xp.add(col_sums, be.sum(w, 0), out=col_sums)
        if pb.has_virtual:
            self.kv = xp.exp(u + self.v_virtual - pb.virtual_cost)
        self.constants()

    def constants(self):
        """K-vectors of the column update that change only when v is absorbed.

        log b = cb + (1 - phi) T - phi log(K^T a). The translation of the
        column potentials g / eps = log b + v + c - T is, with r = eps / lambda,
        t = (log K - r T - e_max - log sum_j z_j exp(-r log b_j)) / r, where
        z = exp(-r (v + c) - e_max) and e_max = max(-r (v + c)).
        """
        pb, be = self.pb, self.pb.be
        omp = pb.one_minus_phi
        if omp:
            cv = pb.col_offset_acc + be.cast(self.v, acc=True)
            self.cb = pb.phi * pb.log_beta - omp * cv
            e = -(pb.epsilon / pb.kl_weight) * cv
            self.e_max = be.amax(e, 0)
            self.z = be.xp.exp(e - self.e_max)
        else:
            self.cb = be.full(pb.n_clusters, pb.log_beta, acc=True)

    def absorb(self, log_a, log_b, log_b_virtual):
        be = self.pb.be
        self.u = self.u + log_a
        self.v = self.v + be.cast(log_b)
        self.a = be.full(self.pb.n_samples, 1.0)
        self.b = be.full(self.pb.n_clusters, 1.0)
        if self.pb.has_virtual:
            self.v_virtual = self.v_virtual + log_b_virtual
            self.b_virtual = be.sval(1.0)
        self.rebuild()
        self.n_absorb += 1

    def potentials(self):
        """Centred log-domain potentials (u, v, v_virtual, gauge) of the current plan.

        log b is taken from the loop's exact float64 copy, which stays finite
        where b itself underflowed.
        """
        be = self.pb.be
        v_virtual = None
        if self.pb.has_virtual:
            v_virtual = self.v_virtual + be.cast(self.log_b_virtual, acc=True)
        return (self.u + be.xp.log(self.a), be.cast(self.v, acc=True) + self.log_b,
                v_virtual, self.gauge)

    def plan(self):
        """The plan a W b, formed in place in W, its sums, and the virtual column."""
        pb = self.pb
        xp, W, a, b = pb.be.xp, pb.W, self.a, self.b
        sums = _Sums(pb)
        for s, e in pb.blocks:
            w = xp.multiply(W[s:e], a[s:e, None], out=W[s:e])
            xp.multiply(w, b[None, :], out=w)
            sums.add(s, e, w)
        virtual = None
        if pb.has_virtual:
            virtual = a * self.kv * self.b_virtual
        return W, virtual, sums


# Acceleration. Every iteration maps the column log-potentials (K real + 1
# virtual) to new ones through one row and one column update; Anderson mixing
# of the last few of them (``_anderson``) replaces the next iterate by the
# combination whose residuals nearly cancel. The fixed point, hence the plan,
# is unchanged; the row updates stay exact. It replaced the adaptive SOR
# over-relaxation (Thibault et al. 2017), which needed a few plain iterations
# to estimate its factor and gained at most the SOR rate: on the solver
# benchmark's grid of 36 cells, Anderson mixing needs half the iterations of
# SOR in total and at least 3.7x fewer than plain scaling in every rho < 1
# cell (SOR: 1.86x in the worst).
# Safeguards: a check that sees the error spike or stall restarts the
# history (the third time, mixing stops for good); the mixer itself restarts
# when its residual grows and stops at the rounding noise; a mixed step that
# overflows is replayed with plain steps. A solve always ends with an exact
# (unmixed) step, so that the returned plan satisfies the column conditions
# exactly and the row error is the whole violation: the step after a check
# is exact when the error is predicted to reach tol in it, and a mixed step
# that reaches tol is followed by one exact step.
# The constants below were chosen on that grid (float64) and on 40 float32 /
# float64 problems up to 1e5 x 1000 (costs of scale 0.05-10, eps 0.05-0.5,
# lambda 0.1-10, rho 0.3-1), with the default check schedule:
_MIX_FLOOR_ULPS = 16  # residual entries below this many ulps of the dtype are noise
# A checked error this many times the best one is a spike. Mixed errors are
# not monotone and the first mixed steps often overshoot: 10 cost 2.5x the
# iterations of 100 on the grid (1168 vs 467), mostly at rho = 1.
_MIX_SPIKE = 100.0
# No halving of the error over this many iterations is a stall. In float32,
# residual differences of slowly converging problems sink into rounding noise
# and mixing stops helping (one problem: 167 iterations without the rule, 94
# with it, 173 plain); no other problem changed.
_MIX_STALL = 10
_MIX_MAX_SPIKES = 3  # spikes and stalls restart the history; the third stops mixing
# A mixed residual below this many tol calls for a check (with mixing the
# error falls faster than the schedule extrapolates; on the 40 problems this
# saved up to 4 iterations where K is small and checks are sparse, and cost
# one in one problem)
_MIX_CHECK = 10.0


class _Acceleration:
    """Anderson mixing of the column potentials of one solve, and when it stops."""

    def __init__(self, be, dtype, enabled=True):
        floor = _MIX_FLOOR_ULPS * torch.finfo(dtype).eps
        self.mixer = AndersonMixer(be, floor, memory=MEMORY if enabled else 0)
        self.err_best = math.inf
        self.err_last = None
        self.err_progress, self.it_progress = math.inf, 0
        self.spikes = 0
        self.exact_next = False
        self.mixed_since_check = False

    @property
    def active(self):
        return self.mixer.active

    def stop(self):
        self.mixer.stop()

    def restart(self):
        self.mixer.restart()

    def mix(self, it, max_iter, x, g):
        """(next iterate, whether it was mixed); the last step of a solve is exact."""
        if it >= max_iter or self.exact_next:
            self.exact_next = False
            return g, False
        x_next, mixed = self.mixer.mix(x, g)
        self.mixed_since_check |= mixed
        return x_next, mixed

    def near(self, tol):
        """Whether the last mixed residual says the solve may be within reach of tol.

        With mixing, the error falls faster than the linear rate the check
        schedule extrapolates, so a small residual (read at every mixed step
        anyway) calls for a check.
        """
        return self.mixer.size < _MIX_CHECK * tol

    def snapshot(self):
        """The state at a check, for ``rewind`` (the history arrays are never modified)."""
        self.mixed_since_check = False
        state = dict(vars(self))
        del state["mixer"]
        return state, self.mixer.snapshot()

    def rewind(self, snapshot):
        """Back to a check's state; plain steps from there on if mixing was involved."""
        mixed = self.mixed_since_check
        state, mixer_state = snapshot
        vars(self).update(state)
        self.mixer.rewind(mixer_state)
        if mixed:
            self.stop()

    def update(self, it, err, tol):
        """After a check (not converged) at iteration ``it`` with row error ``err``."""
        stalled = False
        if err < 0.5 * self.err_progress:
            self.err_progress, self.it_progress = err, it
        elif it - self.it_progress >= _MIX_STALL:
            stalled = True
            self.err_progress, self.it_progress = err, it
        if err > _MIX_SPIKE * self.err_best or stalled:
            # a mixed step went astray (common right after the first ones):
            # rebuild the history from plain steps, or give up after a few
            self.spikes += 1
            self.restart()
            if self.spikes >= _MIX_MAX_SPIKES:
                self.stop()
        self.err_best = min(self.err_best, err)
        # a solve must end on an exact step (see above). When the error falls
        # fast enough for the next step to reach tol, take that step exact
        # rather than mixed, which saves the extra step in short solves
        # (warm starts, large epsilon)
        ratio = min(1.0, err / self.err_last) if self.err_last else 1.0
        self.exact_next = self.err_last is not None and err * ratio < tol
        self.err_last = err


def _solve_scaling(pb, v, v_virtual, gauge, max_iter, tol, max_gap, translate=True,
                   fused=None, accelerate=True):
    """Stabilized generalized scaling with absorption (Schmitzer 2019).

    Returns the final state, iterations, error and status; status "fallback"
    means a zero or non-finite denominator appeared and the caller should
    continue in the log domain from ``state.potentials()``.

    Between two checks (see ``_CheckSchedule``) an iteration is two products
    with the kernel and a few O(N + K) operations, all into preallocated
    buffers. A check that finds NaN/inf restores the state of the previous
    check and replays the iterations since then one checked iteration at a
    time, which reproduces the per-iteration logic exactly: absorb and retry
    when b over/underflowed, fall back to the log domain when a column
    update is not finite.
    """
    be, xp = pb.be, pb.be.xp
    st = _ScalingState(pb, v, v_virtual, gauge)
    W = pb.W
    n, k = pb.n_samples, pb.n_clusters
    alpha, log_alpha = 1.0 / n, pb.log_alpha
    has_virtual = pb.has_virtual
    phi, omp = pb.phi, pb.one_minus_phi
    translate = translate and omp > 0
    ratio = pb.epsilon / pb.kl_weight if translate else None
    log_k = math.log(k)
    log_beta_virtual = pb.log_beta_virtual
    tau = pb.absorb_threshold
    isfinite = math.isfinite

    ka, kb, tmp = be.empty(k), be.empty(n), be.empty(n)
    lk, lb, xk = be.empty(k, acc=True), be.empty(k, acc=True), be.empty(k, acc=True)
    a, b, bv, kv, T = st.a, st.b, st.b_virtual, st.kv, st.gauge
    lbv = 0.0
    # log b and log b_virtual of the current scalings (the mixing needs them)
    lb_cur, lbv_cur = be.full(k, 0.0, acc=True), 0.0
    acceleration = _Acceleration(be, pb.dtype, accelerate)
    # the mixed vector: log b and, last, log b_virtual
    x_cur, x_new = be.full(k + has_virtual, 0.0, acc=True), be.empty(k + has_virtual, acc=True)
    # fused sweeps (CPU, kernels larger than the caches): K^T a of the next
    # iteration is accumulated block by block right after the block's row
    # update, while the block is still in cache, so that one iteration reads
    # the kernel from memory once instead of twice
    blocks = None if fused is False else _sweep_blocks(pb, force=bool(fused))
    if blocks is not None:
        part, a_prev = be.empty(k), be.empty(n)
    # ka_acc holds K^T a for the current a when ka_valid (a = 1: the build's column sums)
    ka_acc, ka_valid = st.col_sums, True

    def row_error(a, kb):
        # L1 error of the row sums a * (K b) of the plan, reduced in float64
        xp.multiply(a, kb, out=tmp)
        xp.subtract(tmp, alpha, out=tmp)
        xp.abs(tmp, out=tmp)
        return be.sum(tmp, acc=True)

    def fused_sweep(b, bv):
        # kb = K b + kv bv, the row update and ka_acc = K^T a, one row block at a time
        ka_acc[...] = 0.0
        for s, e in blocks:
            w, kb_s, a_s = W[s:e], kb[s:e], a[s:e]
            be.matvec(w, b, kb_s)
            if has_virtual:
                xp.add(kb_s, xp.multiply(kv[s:e], bv, out=tmp[s:e]), out=kb_s)
            xp.divide(alpha, kb_s, out=a_s)  # the row update
            be.rmatvec(a_s, w, part)
            xp.add(ka_acc, part, out=ka_acc)

    def restore(checkpoint):
        it, a, b, bv, T, lb_cur, lbv_cur, mixing = checkpoint
        acceleration.rewind(mixing)
        return it, be.copy(a), be.copy(b), bv, T, be.copy(lb_cur), lbv_cur

    sched = _CheckSchedule(tol, max_gap, max_iter)
    checkpoint = (0, be.copy(a), be.copy(b), bv, T, be.copy(lb_cur), lbv_cur,
                  acceleration.snapshot())
    careful_until = 0
    err = math.inf
    n_iter = 0
    status = "max_iter"
    it = 0
    while it < max_iter:
        it += 1
        careful = it <= careful_until
        # column update b = (beta / K^T a)^phi exp((1 - phi)(T - c - v)), in log
        # form so that a huge b never overflows before it is absorbed
        if ka_valid:
            xp.log(ka_acc, out=lk)
        else:
            be.rmatvec(a, W, ka)
            xp.log(ka, out=lk)
        ka_valid = False
        if omp:
            xp.multiply(lk, -phi, out=lb)
            xp.add(lb, st.cb, out=lb)
            xp.add(lb, omp * T, out=lb)
        else:
            xp.subtract(st.cb, lk, out=lb)
        if has_virtual:
            lbv = log_beta_virtual - be.slog(be.dot(a, kv))
        mixed = False
        if acceleration.active:
            x_new[:k] = lb
            x_cur[:k] = lb_cur
            if has_virtual:
                x_new[k], x_cur[k] = lbv, lbv_cur
            x_next, mixed = acceleration.mix(it, max_iter, x_cur, x_new)
            if mixed:
                lb[...] = x_next[:k]
                if has_virtual:
                    lbv = be.sval(x_next[k])
        new_T = T
        if translate:
            xp.multiply(lb, -ratio, out=xk)
            xp.exp(xk, out=xk)
            new_T = T + (log_k - ratio * T - st.e_max - be.slog(be.dot(st.z, xk))) / ratio
        if careful:
            size_b, lbv_value, t_value = be.items(be.abs_max(lb), lbv, new_T)
            if not (isfinite(size_b) and isfinite(lbv_value) and isfinite(t_value)):
                if mixed:
                    # a mixed step overshot: replay from the check with plain steps
                    it, a, b, bv, T, lb_cur, lbv_cur = restore(checkpoint)
                    ka_valid = False
                    continue
                status = "fallback"
                break
        xp.exp(lb, out=b)
        lb, lb_cur = lb_cur, lb  # lb_cur = log b
        if has_virtual:
            bv = be.sexp(lbv)
            lbv_cur = lbv
        check = careful or sched.due(it) or acceleration.near(tol)
        # row sums of diag(a) K diag(b): the stopping error comes for free
        if blocks is not None and not careful:
            if check:
                be.assign(a_prev, a)
            fused_sweep(b, bv)  # a is now the next row scaling
            ka_valid = True
            a_old = a_prev
        else:
            be.matvec(W, b, kb)
            if has_virtual:
                xp.multiply(kv, bv, out=tmp)
                xp.add(kb, tmp, out=kb)
            a_old = a
        if not check:
            T = new_T
            if not ka_valid:
                xp.divide(alpha, kb, out=a)
            continue

        err_value, kb_min, kb_max, size_b, lbv_value, t_value = be.items(
            row_error(a_old, kb), be.amin(kb, 0), be.amax(kb, 0), be.abs_max(lb_cur), lbv,
            new_T)
        size_b = max(size_b, abs(lbv_value))
        col_ok = isfinite(size_b) and isfinite(t_value)
        row_ok = kb_min > 0.0 and kb_max < math.inf and isfinite(err_value)
        if not (col_ok and row_ok):
            ka_valid = False
            if not careful or mixed:
                # replay from the previous check, one checked iteration at a time
                # (and with plain steps if the window was mixed)
                careful_until = it
                it, a, b, bv, T, lb_cur, lbv_cur = restore(checkpoint)
                continue
            # b over/underflowed before it could be absorbed: absorb the exact
            # log-scalings into the potentials and retry the row sums once
            st.absorb(xp.log(a), lb_cur, lbv)
            a, b, bv, kv = st.a, st.b, st.b_virtual, st.kv
            lb_cur[...], lbv_cur = 0.0, 0.0
            acceleration.restart()  # the history is in the old coordinates
            be.matvec(W, b, kb)
            if has_virtual:
                xp.add(kb, kv, out=kb)
            err_value, kb_min, kb_max = be.items(row_error(a, kb), be.amin(kb, 0),
                                                 be.amax(kb, 0))
            size_b = 0.0
            if not (kb_min > 0.0 and kb_max < math.inf and isfinite(err_value)):
                status = "fallback"
                break
        T = new_T  # the plan, kernel and scalings are unchanged by the translation
        err = err_value
        n_iter = it
        polish = err < tol and mixed
        if polish:
            # after a mixed column step the column conditions are not exact, so
            # the row error understates the distance to the fixed point: finish
            # with an exact step
            acceleration.stop()
        elif err < tol or it == max_iter:
            if ka_valid:
                be.assign(a, a_prev)  # the plan is a_old K b
            if err < tol:
                status = "converged"
            break
        if not ka_valid:
            xp.divide(alpha, kb, out=a)
        size_a = max(abs(log_alpha - math.log(kb_min)), abs(log_alpha - math.log(kb_max)))
        if size_a > tau or size_b > tau:
            st.absorb(xp.log(a), lb_cur, lbv_cur if has_virtual else None)
            a, b, bv, kv = st.a, st.b, st.b_virtual, st.kv
            lb_cur[...], lbv_cur = 0.0, 0.0
            ka_acc, ka_valid = st.col_sums, True  # a = 1: K^T a came with the rebuild
            acceleration.restart()  # the history is in the old coordinates
        sched.update(it, err)
        if polish:
            sched.next = it + 1
        acceleration.update(it, err, tol)
        checkpoint = (it, be.copy(a), be.copy(b), bv, T, be.copy(lb_cur), lbv_cur,
                      acceleration.snapshot())
    st.a, st.b, st.b_virtual, st.gauge = a, b, bv, T
    st.log_b, st.log_b_virtual = lb_cur, lbv_cur
    st.acceleration, st.sched = acceleration, sched
    return st, n_iter, err, status


# kernels above this many bytes use fused sweeps on the NumPy backend
_FUSE_MIN_BYTES = 8 << 20
# bytes of kernel per fused block: small enough to stay in cache between the
# two products, large enough to amortize the per-block Python calls
_FUSE_BLOCK_BYTES = 1 << 20


def _sweep_blocks(pb, force=False):
    """Row blocks for fused sweeps, or None when the kernel is small or not in NumPy.

    ``force`` (tests) fuses any problem, in about three blocks.
    """
    n = pb.n_samples
    if force:
        rows = max(1, -(-n // 3))
    else:
        if pb.be.name != "numpy":
            return None
        row_bytes = pb.n_clusters * pb.be.dtype.itemsize
        if n * row_bytes < _FUSE_MIN_BYTES:
            return None
        rows = max(1, _FUSE_BLOCK_BYTES // row_bytes)
    return [(s, min(s + rows, n)) for s in range(0, n, rows)]


@torch.no_grad()
def _solve(cost, rho, epsilon, kl_weight, max_iter, tol, method, warm_start, *,
           translate=True, accelerate=True, max_gap=None, backend=None, fused=None,
           out=None):
    """Validated-input core shared by :func:`p2ot` and :func:`sp2ot`.

    Returns ``plan, virtual, log`` where ``virtual`` is the implicit virtual
    column (length N, or None when rho == 1) and ``log["status"]`` is one of
    "converged", "max_iter", "numerical".

    Private knobs (benchmarks and tests): ``translate=False`` drops the
    translation step, ``accelerate=False`` the Anderson mixing (both off: plain
    generalized scaling / Sinkhorn), ``max_gap`` sets
    the largest number of iterations between convergence checks (1: check
    every iteration), ``backend`` forces "numpy" or "torch".
    """
    be = make_backend(cost, backend)
    if max_gap is None:
        max_gap = _default_max_gap(*cost.shape)
    g = _check_warm_start(warm_start, cost)
    with be.errstate():
        pb = _Problem(cost, rho, epsilon, kl_weight, be, out)
        v, v_virtual = _initial_column_potentials(pb, g)
        gauge = pb.zero_gauge()

        used = "log" if method == "log" else "scaling"
        n_absorb = 0
        if used == "scaling":
            st, n_iter, err, status = _solve_scaling(pb, v, v_virtual, gauge, max_iter, tol,
                                                     max_gap, translate, fused, accelerate)
            n_absorb = st.n_absorb
            if status == "fallback":
                if method == "scaling":
                    warnings.warn(
                        f"p2ot: the scaling iterations hit a zero or non-finite denominator "
                        f"after {n_iter} iterations (a cluster's mass underflows "
                        f"{cost.dtype}); continuing in the log domain. Use method='auto' "
                        "to silence this or method='log' to skip the scaling attempt.",
                        UserWarning,
                        stacklevel=3,
                    )
                used = "scaling+log"
                u, v, v_virtual, gauge = st.potentials()
                # the mixing history moves with it, from log b to v = v_absorbed + log b
                offset = be.empty(pb.n_clusters + pb.has_virtual, acc=True)
                offset[:pb.n_clusters] = be.cast(st.v, acc=True)
                if pb.has_virtual:
                    offset[pb.n_clusters] = st.v_virtual
                st.acceleration.mixer.shift(offset)
                for s, e in pb.blocks:  # W back to Chat
                    pb.fill_scaled_cost(s, e, pb.W[s:e])
                pb.centred = True
                u, v, v_virtual, gauge, more, err, status = _solve_log(
                    pb, u, v, v_virtual, gauge, max_iter - n_iter, tol, max_gap,
                    accelerate=st.acceleration, start=n_iter, translate=translate, sched=st.sched
                )
                n_iter += more
            else:
                plan, virtual, sums = st.plan()
                u, v, v_virtual, gauge = st.potentials()
        else:
            pb.centre_columns()
            # exact row update: the kernel rows sum to alpha from the first iteration on
            u = pb.log_alpha - pb.row_lse(v, v_virtual)
            u, v, v_virtual, gauge, n_iter, err, status = _solve_log(
                pb, u, v, v_virtual, gauge, max_iter, tol, max_gap, accelerate, translate=translate
            )
        if used != "scaling":
            plan, virtual, sums = _log_plan(pb, u, v, v_virtual)

        log = _summary(pb, plan, virtual, sums)
        log.update(
            potentials=pb.dual_potentials(u, v, v_virtual, gauge),
            n_iter=n_iter,
            converged=status == "converged",
            method=used,
            status=status,
            n_absorb=n_absorb,
            last_error=float(err),
        )
        plan = be.unwrap(plan) if out is None else out  # plan is W, which is out
        if virtual is not None:
            virtual = be.unwrap(virtual)
    return plan, virtual, log


def _log_plan(pb, u, v, v_virtual):
    """exp(u + v - Chat), formed in place in W (which holds Chat), and its sums."""
    xp, W = pb.be.xp, pb.W
    sums = _Sums(pb)
    for s, e in pb.blocks:
        x = xp.subtract(u[s:e, None], W[s:e], out=pb.block_buffer(e - s))
        xp.add(x, v[None, :], out=x)
        xp.exp(x, out=x)
        W[s:e] = x
        sums.add(s, e, W[s:e])
    virtual = None
    if pb.has_virtual:
        virtual = xp.exp(u + v_virtual - pb.virtual_cost)
    return W, virtual, sums


class _Sums:
    """Row and column sums of the plan in float64, accumulated while it is formed."""

    def __init__(self, pb):
        be = self.be = pb.be
        self.columns = be.full(pb.n_clusters, 0.0, acc=True)
        self.rows = be.empty(pb.n_samples, acc=True)

    def add(self, start, stop, block):
        rows, columns = self.be.block_sums(block)
        self.be.xp.add(self.columns, columns, out=self.columns)
        self.rows[start:stop] = rows


def _initial_column_potentials(pb, g):
    """Centred column potentials (v, v_virtual) from checked potentials ``g`` or cold."""
    if g is None:
        return pb.cold_start()
    be, k = pb.be, pb.n_clusters
    g = be.wrap(g)
    v = be.cast(g[:k] / pb.epsilon - pb.col_offset_acc)
    v_virtual = None
    if pb.has_virtual:
        g_virtual = g[k]
        if math.isfinite(float(g_virtual)):
            v_virtual = be.sval(g_virtual / pb.epsilon
                                - be.cast(pb.virtual_offset, acc=True))
        else:
            # e.g. potentials of a rho == 1 solve: start the virtual column cold
            v_virtual = be.sval(0.0)
    return v, v_virtual


def _summary(pb, plan, virtual, sums):
    """Marginal errors of the returned plan, reduced in float64."""
    be = pb.be
    column_mass, rows = sums.columns, sums.rows
    virtual_mass = 0.0
    if virtual is not None:
        rows = rows + be.cast(virtual, acc=True)
        virtual_mass = float(be.sum(virtual, acc=True))
    row_error, mass = be.items(be.sum(be.xp.abs(rows - 1.0 / pb.n_samples)),
                               be.sum(column_mass))
    return {
        "row_error": row_error,
        "virtual_error": abs(virtual_mass - (1.0 - pb.rho)),
        "mass_error": abs(mass - pb.rho),
        "column_mass": be.unwrap(column_mass),
    }


def _warn_if_failed(name, log, max_iter, tol, stacklevel):
    if log["status"] == "numerical":
        warnings.warn(
            f"{name}: numerical errors (NaN/inf) after {log['n_iter']} iterations; "
            "returning the last finite iterate. Try method='log' or a larger epsilon.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    elif not log["converged"]:
        warnings.warn(
            f"{name} did not converge in max_iter={max_iter} iterations (row marginal "
            f"error {log['row_error']:.2e} > tol={tol:g}); increase max_iter or epsilon.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


def p2ot(cost, rho, *, epsilon=0.1, kl_weight=1.0, max_iter=1000, tol=1e-6,
         method="auto", warm_start=None, out=None):
    r"""Solve entropic progressive partial optimal transport (P²OT).

    Finds the plan :math:`Q \ge 0` (N×K) minimising

    .. math::

        \langle Q, C\rangle + \lambda\,\mathrm{KL}(Q^\top 1 \,\|\, \tfrac{\rho}{K} 1)
        - \varepsilon H(Q)
        \quad\text{s.t.}\quad Q 1 \le \tfrac{1}{N},\; 1^\top Q 1 = \rho,

    so that the ``rho * N`` most confident samples are (softly) selected and the
    cluster sizes may depart from uniform by an amount controlled by
    ``kl_weight``.

    Parameters
    ----------
    cost : torch.Tensor of shape (n_samples, n_clusters)
        Transport cost, e.g. :func:`cost_from_logits`. May be negative; must be
        finite and floating point. The plan has the same dtype and device.
    rho : float in (0, 1]
        Total transported mass (fraction of samples selected).
    epsilon : float, default=0.1
        Entropic regularisation, > 0.
    kl_weight : float, default=1.0
        Weight :math:`\lambda` > 0 of the KL penalty on the cluster sizes;
        ``math.inf`` enforces exactly uniform cluster sizes ``rho / K``.
    max_iter : int, default=1000
        Maximum number of (column + row) scaling iterations.
    tol : float, default=1e-6
        Stop when the L1 error of the row marginals (including the virtual
        column) falls below ``tol``.
    method : {"auto", "scaling", "log"}, default="auto"
        ``"log"``: log-domain updates with ``logsumexp`` in float64 arithmetic
        (always stable; each iteration evaluates exp over the N×K cost twice,
        10-20 times the cost of a scaling iteration on large CPU problems).
        ``"scaling"``: stabilized scaling iterations with
        absorption; falls back to the log domain, with a warning, if a zero or
        non-finite denominator appears. ``"auto"``: like ``"scaling"`` but the
        fallback is silent.
    warm_start : tuple (f, g) or None, default=None
        Dual potentials to start from, typically ``log["potentials"]`` of a
        previous call. Only the column potentials ``g`` (length K + 1) are
        used: the row potentials are recomputed from ``g`` by one exact row
        update, which keeps the kernel well conditioned and lets ``g`` be
        reused when the rows change (``f`` may be None).
    out : torch.Tensor or None, default=None
        A contiguous tensor with the shape, dtype and device of ``cost``, not
        sharing its memory, to hold the plan: the solver then uses it as its
        one N×K work array instead of allocating one, and returns it. Its
        contents on entry are ignored. For repeated solves of one size
        (reuse the buffer) or when the memory for a second N×K array is
        short.

    Returns
    -------
    plan : torch.Tensor of shape (n_samples, n_clusters)
        Optimal plan at the 1/N scale: row sums <= 1/N, total mass ~ ``rho``.
        ``n_samples * plan`` gives soft pseudo-labels whose row sums are the
        selection weights.
    log : dict
        ``n_iter`` (int), ``converged`` (bool), ``method`` (``"scaling"``,
        ``"log"`` or ``"scaling+log"`` after a fallback), ``row_error`` (L1
        error of the augmented row marginals), ``virtual_error``
        (:math:`|q_{virtual} - (1-\rho)|`), ``mass_error``
        (:math:`|1^\top Q 1 - \rho|`), ``column_mass`` (K float64 tensor of
        real cluster masses), ``potentials`` (``(f, g)`` with f of length N
        and g of length K + 1 such that
        :math:`\hat Q_{ij} = \exp((f_i + g_j - \hat C_{ij})/\varepsilon)`;
        ``g[K]`` is ``-inf`` when ``rho == 1``), ``status``
        (``"converged"``, ``"max_iter"`` or ``"numerical"``), ``last_error``
        (the row error the stopping test saw; ``row_error`` is recomputed
        from the returned plan and can differ from it by float32 rounding)
        and ``n_absorb`` (number of absorptions of the scaling path).

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` is reached before ``tol``, or if NaN/inf appear (the
        last finite iterate is then returned).

    Notes
    -----
    A zero-cost virtual column turns the inequality into equalities: the
    augmented plan :math:`\hat Q = [Q, q]` has row sums exactly
    :math:`\alpha = 1/N` and column targets
    :math:`\beta = [\rho/K, \dots, \rho/K, 1-\rho]`. Generalized scaling
    (Chizat et al. 2018) alternates :math:`a = \alpha / (M b)` and
    :math:`b = (\beta / M^\top a)^{\varphi}` with
    :math:`\varphi = \lambda/(\lambda+\varepsilon)` on the real columns and
    :math:`\varphi = 1` (hard) on the virtual one. The virtual column is kept
    as an implicit length-N vector and is not returned.

    The scaling path keeps potentials ``(f, g)``, scalings ``(a, b)`` and the
    stabilized kernel :math:`\tilde K_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)`;
    the column update in absorbed form is
    :math:`b = (\beta / \tilde K^\top a)^{\varphi} \exp(-(1-\varphi) g/\varepsilon)`,
    and scalings whose log exceeds ``log(finfo.max) / 8`` are absorbed into
    the potentials (Schmitzer 2019). The cold start uses
    :math:`g_j = \min_i C_{ij}` so that no kernel column underflows.

    At the fixed point the real column masses :math:`m_j` satisfy
    :math:`g_j = -\lambda \log(m_j / \beta_j)` and the virtual column carries
    exactly :math:`1-\rho`.

    Three additions to plain generalized scaling, none of which changes the
    fixed point:

    * each iteration also takes the exact dual ascent step along
      :math:`(f + t, g - t)` (closed form for the KL term, cf. Séjourné et
      al. 2022). It leaves the plan unchanged and removes the slow mode in
      which the total real mass relaxes at rate
      :math:`1 - \rho\varepsilon/(\lambda+\varepsilon)` per iteration
      (about 1500 iterations for ``rho=0.1`` at the defaults; typically
      10–50 with the step);
    * the column potentials (K + 1 numbers) are Anderson-mixed [5]: each
      iteration maps them to new ones through one row and one column update,
      and the next iterate combines the last 5 of them so that their
      residuals nearly cancel (a least-squares problem of size 5, no work on
      the kernel). The fixed point, hence the plan, is unchanged; the last
      step is exact, so that the returned plan meets the column conditions
      exactly. Mixing restarts when the error spikes or stalls and stops at
      the rounding noise of the dtype. On the solver benchmark's grid of
      36 problems this needs 1.2-14x fewer iterations than the translation
      step alone (median 3x), and 2.1-3.8x fewer than the adaptive SOR
      over-relaxation [6] it replaced where that needed 30 or more. Each
      mixing step costs ~11-14 µs and, on a GPU, one host synchronization;
    * the potentials are stored relative to row and column minima of
      :math:`\hat C/\varepsilon` plus one float64 scalar, so that float32
      keeps enough precision to reach ``tol=1e-6`` even when
      :math:`C/\varepsilon` is in the hundreds.

    Implementation: CPU float32/float64 problems run in NumPy (OpenBLAS
    matrix-vector products), other devices and dtypes in torch, one loop per
    solve in one library. The only N×K array allocated is the one returned as
    the plan (it holds the stabilized kernel during the iterations); on CPU,
    kernels larger than the caches are swept in row blocks that reuse each
    block from cache for both products. Convergence and NaN/inf are checked
    every iteration at first and then at predicted intervals (each check is
    a host synchronization on a GPU); a check that finds NaN/inf replays the
    iterations since the previous check one by one, so the per-iteration
    safeguards (absorption, log-domain fallback, last finite iterate) act
    exactly where they would have.

    If the true mass of a cluster is below the smallest positive number of
    the dtype (e.g. a cost of 300 in float32), its kernel column underflows
    and the scaling path continues in the log domain (``"scaling+log"``).
    Semi-relaxed problems (``rho == 1``) with small ``epsilon`` converge
    slowly without the mixing (rate about
    :math:`\lambda/(\lambda+\varepsilon)`: 1,360 plain iterations at
    ``epsilon=0.05``, ``kl_weight=10`` on the benchmark grid, 35 mixed).

    References
    ----------
    .. [1] Zhang, C., Ren, H., He, X. "P²OT: Progressive Partial Optimal
       Transport for Deep Imbalanced Clustering." ICLR 2024.
    .. [2] Chizat, L., Peyré, G., Schmitzer, B., Vialard, F.-X. "Scaling
       algorithms for unbalanced optimal transport problems." Math. Comp. 2018.
    .. [3] Schmitzer, B. "Stabilized sparse scaling algorithms for entropy
       regularized transport problems." SIAM J. Sci. Comput. 2019.
    .. [4] Séjourné, T., Vialard, F.-X., Peyré, G. "Faster unbalanced optimal
       transport: translation invariant Sinkhorn and 1-D Frank-Wolfe."
       AISTATS 2022.
    .. [5] Walker, H. F., Ni, P. "Anderson acceleration for fixed-point
       iterations." SIAM J. Numer. Anal. 2011.
    .. [6] Thibault, A., Chizat, L., Dossal, C., Papadakis, N. "Overrelaxed
       Sinkhorn-Knopp algorithm for regularized optimal transport."
       Algorithms 2021.

    Examples
    --------
    >>> import torch
    >>> from skclust_ot.ot import cost_from_logits, p2ot
    >>> gen = torch.Generator().manual_seed(0)
    >>> logits = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    >>> plan, log = p2ot(cost_from_logits(logits), rho=0.5)
    >>> plan.shape
    torch.Size([64, 4])
    >>> round(plan.sum().item(), 4)
    0.5
    >>> bool((plan.sum(dim=1) <= 1 / 64 + 1e-9).all()), log["converged"]
    (True, True)
    """
    rho, epsilon, kl_weight, max_iter, tol = _check_p2ot_params(
        cost, rho, epsilon, kl_weight, max_iter, tol, method
    )
    out = _check_out(out, cost)
    plan, _, log = _solve(cost, rho, epsilon, kl_weight, max_iter, tol, method, warm_start,
                          out=out)
    _warn_if_failed("p2ot", log, max_iter, tol, stacklevel=3)
    return plan, log
