"""One P²OT instance in centred coordinates: its offsets, work array and exact half steps.

The solvers work on centred dual potentials in units of epsilon (see the
comment above ``_Problem``). The virtual (zero-cost) column is never
materialised as an extra column of an N×(K+1) tensor: it is carried as one
length-N vector next to the N×K real part.
"""

import math

import torch


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
