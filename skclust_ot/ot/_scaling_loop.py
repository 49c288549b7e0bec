"""The scaling loop: stabilized generalized scaling with absorption on the kernel in W."""

import math

from ._control import CONVERGED, MAX_ITER, _Acceleration, _CheckSchedule
from ._problem import _Sums

FALLBACK = "fallback"  # status: continue in the log domain from the state's potentials


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
    return _ScalingLoop(pb, v, v_virtual, gauge, max_iter, tol, max_gap, translate, fused,
                        accelerate).run()


class _ScalingLoop:
    """The state of one run of the scaling iterations, and its steps.

    ``run`` does the iterations between two checks with the state in local
    variables; at a check it saves the state here (``_save``), ``_check``
    decides, replays (``_restore``), absorbs (``_absorb``) or stops, and
    ``run`` loads the state back (``_load``).

    State: the scalings ``a``, ``b``, ``bv`` (of the virtual column) and the
    virtual kernel column ``kv`` (all as in ``_ScalingState``), the gauge
    ``T``, ``lb_cur`` and ``lbv_cur``, the exact logs of ``b`` and ``bv``
    (the mixing works on them), ``ka_acc`` holding K^T a for the current a
    when ``ka_valid`` (a = 1: the build's column sums), the iteration ``it``
    and ``careful_until``, the last iteration of a replay.
    """

    def __init__(self, pb, v, v_virtual, gauge, max_iter, tol, max_gap, translate, fused,
                 accelerate):
        be = pb.be
        self.pb, self.max_iter, self.tol = pb, max_iter, tol
        self.st = st = _ScalingState(pb, v, v_virtual, gauge)
        n, k = pb.n_samples, pb.n_clusters
        self.translate = translate and pb.one_minus_phi > 0
        self.ratio = pb.epsilon / pb.kl_weight if self.translate else None
        self.ka, self.kb, self.tmp = be.empty(k), be.empty(n), be.empty(n)
        self.lk, self.lb, self.xk = (be.empty(k, acc=True), be.empty(k, acc=True),
                                     be.empty(k, acc=True))
        self.a, self.b, self.bv, self.kv, self.T = st.a, st.b, st.b_virtual, st.kv, st.gauge
        self.lb_cur, self.lbv_cur = be.full(k, 0.0, acc=True), 0.0
        self.acceleration = _Acceleration(be, pb.dtype, accelerate)
        # the mixed vector: log b and, last, log b_virtual
        self.x_cur = be.full(k + pb.has_virtual, 0.0, acc=True)
        self.x_new = be.empty(k + pb.has_virtual, acc=True)
        # fused sweeps (CPU, kernels larger than the caches): K^T a of the next
        # iteration is accumulated block by block right after the block's row
        # update, while the block is still in cache, so that one iteration reads
        # the kernel from memory once instead of twice
        self.blocks = None if fused is False else _sweep_blocks(pb, force=bool(fused))
        self.part = self.a_prev = None
        if self.blocks is not None:
            self.part, self.a_prev = be.empty(k), be.empty(n)
        self.ka_acc, self.ka_valid = st.col_sums, True
        self.sched = _CheckSchedule(tol, max_gap, max_iter)
        self.checkpoint = self._checkpoint(0)
        self.it = self.careful_until = 0
        self.err, self.n_iter, self.status = math.inf, 0, MAX_ITER

    def run(self):
        """Iterate to convergence, ``max_iter`` or a fallback: ``(state, n_iter, err, status)``."""
        pb, st, acceleration, sched = self.pb, self.st, self.acceleration, self.sched
        be, xp, W = pb.be, pb.be.xp, pb.W
        k, alpha, has_virtual = pb.n_clusters, 1.0 / pb.n_samples, pb.has_virtual
        phi, omp, log_beta_virtual = pb.phi, pb.one_minus_phi, pb.log_beta_virtual
        max_iter, tol, translate, ratio = self.max_iter, self.tol, self.translate, self.ratio
        ka, kb, tmp, lk, lb, xk = self.ka, self.kb, self.tmp, self.lk, self.lb, self.xk
        x_cur, x_new, blocks, log_k, lbv = self.x_cur, self.x_new, self.blocks, math.log(k), 0.0
        a, b, bv, kv, T, lb_cur, lbv_cur, ka_acc, ka_valid, it, careful_until = self._load()
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
            if careful and not self._column_finite(lb, lbv, new_T):
                if not mixed:
                    self.status = FALLBACK
                    break
                self._restore()  # a mixed step overshot: replay from the check, plain steps
                a, b, bv, kv, T, lb_cur, lbv_cur, ka_acc, ka_valid, it, careful_until = (
                    self._load())
                continue
            xp.exp(lb, out=b)
            lb, lb_cur = lb_cur, lb  # lb_cur = log b
            if has_virtual:
                bv = be.sexp(lbv)
                lbv_cur = lbv
            check = careful or sched.due(it) or acceleration.near(tol)
            # row sums of diag(a) K diag(b): the stopping error comes for free
            if blocks is not None and not careful:
                # a becomes the next row scaling; a_old the one of the checked plan
                a_old, ka_valid = self._fused_sweep(a, b, bv, kv, ka_acc, check), True
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
            self._save(a, b, bv, kv, T, lb_cur, lbv_cur, ka_acc, ka_valid, it)
            done = self._check(a_old, new_T, mixed, careful)
            a, b, bv, kv, T, lb_cur, lbv_cur, ka_acc, ka_valid, it, careful_until = self._load()
            if done:
                break
        self._save(a, b, bv, kv, T, lb_cur, lbv_cur, ka_acc, ka_valid, it)
        return self._finish()

    def _column_finite(self, lb, lbv, new_T):
        """Whether the new column step (log b, log b_virtual, gauge) is finite."""
        size_b, lbv_value, t_value = self.pb.be.items(self.pb.be.abs_max(lb), lbv, new_T)
        return math.isfinite(size_b) and math.isfinite(lbv_value) and math.isfinite(t_value)

    def _load(self):
        return (self.a, self.b, self.bv, self.kv, self.T, self.lb_cur, self.lbv_cur,
                self.ka_acc, self.ka_valid, self.it, self.careful_until)

    def _save(self, a, b, bv, kv, T, lb_cur, lbv_cur, ka_acc, ka_valid, it):
        self.a, self.b, self.bv, self.kv, self.T = a, b, bv, kv, T
        self.lb_cur, self.lbv_cur, self.ka_acc, self.ka_valid, self.it = (
            lb_cur, lbv_cur, ka_acc, ka_valid, it)

    def _check(self, a_old, new_T, mixed, careful):
        """The check after the row products of iteration ``it``; True when the loop ends.

        ``kb`` holds K b (+ kv bv), ``a_old`` the row scaling of the plan
        whose row error is measured and ``new_T`` the translated gauge.
        """
        pb, be, xp, kb = self.pb, self.pb.be, self.pb.be.xp, self.kb
        isfinite = math.isfinite
        err_value, kb_min, kb_max, size_b, lbv_value, t_value = be.items(
            self._row_error(a_old, kb), be.amin(kb, 0), be.amax(kb, 0),
            be.abs_max(self.lb_cur), self.lbv_cur, new_T)
        size_b = max(size_b, abs(lbv_value))
        col_ok = isfinite(size_b) and isfinite(t_value)
        row_ok = kb_min > 0.0 and kb_max < math.inf and isfinite(err_value)
        if not (col_ok and row_ok):
            self.ka_valid = False
            if not careful or mixed:
                # replay from the previous check, one checked iteration at a time
                # (and with plain steps if the window was mixed)
                self.careful_until = self.it
                self._restore()
                return False
            # b over/underflowed before it could be absorbed: absorb the exact
            # log-scalings into the potentials and retry the row sums once
            self._absorb()
            be.matvec(pb.W, self.b, kb)
            if pb.has_virtual:
                xp.add(kb, self.kv, out=kb)
            err_value, kb_min, kb_max = be.items(self._row_error(self.a, kb), be.amin(kb, 0),
                                                 be.amax(kb, 0))
            size_b = 0.0
            if not (kb_min > 0.0 and kb_max < math.inf and isfinite(err_value)):
                self.status = FALLBACK
                return True
        self.T = new_T  # the plan, kernel and scalings are unchanged by the translation
        it = self.it
        self.err, self.n_iter = err_value, it
        verdict = self.acceleration.decide(it, self.max_iter, err_value, self.tol, mixed)
        if verdict in (CONVERGED, MAX_ITER):
            if self.ka_valid:
                be.assign(self.a, self.a_prev)  # the plan is a_old K b
            self.status = verdict
            return True
        if not self.ka_valid:
            xp.divide(1.0 / pb.n_samples, kb, out=self.a)
        log_alpha, tau = pb.log_alpha, pb.absorb_threshold
        size_a = max(abs(log_alpha - math.log(kb_min)), abs(log_alpha - math.log(kb_max)))
        if size_a > tau or size_b > tau:
            self._absorb()
            self.ka_acc, self.ka_valid = self.st.col_sums, True  # a = 1: K^T a of the rebuild
        self.acceleration.after_check(it, err_value, self.tol, self.sched, verdict)
        self.checkpoint = self._checkpoint(it)
        return False

    def _checkpoint(self, it):
        """The state at a check, for ``_restore``."""
        be = self.pb.be
        return (it, be.copy(self.a), be.copy(self.b), self.bv, self.T, be.copy(self.lb_cur),
                self.lbv_cur, self.acceleration.snapshot())

    def _restore(self):
        """Back to the state of the last check (with plain steps if mixing was involved)."""
        be = self.pb.be
        it, a, b, bv, T, lb_cur, lbv_cur, mixing = self.checkpoint
        self.acceleration.rewind(mixing)
        self.it, self.a, self.b, self.bv, self.T = it, be.copy(a), be.copy(b), bv, T
        self.lb_cur, self.lbv_cur = be.copy(lb_cur), lbv_cur
        self.ka_valid = False

    def _absorb(self):
        """Absorb the log-scalings into the potentials and rebuild the kernel (a = b = 1)."""
        st, has_virtual = self.st, self.pb.has_virtual
        st.absorb(self.pb.be.xp.log(self.a), self.lb_cur, self.lbv_cur if has_virtual else None)
        self.a, self.b, self.bv, self.kv = st.a, st.b, st.b_virtual, st.kv
        self.lb_cur[...], self.lbv_cur = 0.0, 0.0
        self.acceleration.restart()  # the history is in the old coordinates

    def _row_error(self, a, kb):
        """L1 error of the row sums a * (K b) of the plan, reduced in float64."""
        be, xp, tmp = self.pb.be, self.pb.be.xp, self.tmp
        xp.multiply(a, kb, out=tmp)
        xp.subtract(tmp, 1.0 / self.pb.n_samples, out=tmp)
        xp.abs(tmp, out=tmp)
        return be.sum(tmp, acc=True)

    def _fused_sweep(self, a, b, bv, kv, ka_acc, check):
        """kb = K b + kv bv, the row update of ``a`` and ka_acc = K^T a, block by block.

        Returns the row scaling before the update: a copy in ``a_prev`` when
        ``check`` (the checked plan is ``a_prev K b``), else None.
        """
        pb, be, xp = self.pb, self.pb.be, self.pb.be.xp
        if check:
            be.assign(self.a_prev, a)
        W, kb, tmp, part = pb.W, self.kb, self.tmp, self.part
        alpha, has_virtual = 1.0 / pb.n_samples, pb.has_virtual
        ka_acc[...] = 0.0
        for s, e in self.blocks:
            w, kb_s, a_s = W[s:e], kb[s:e], a[s:e]
            be.matvec(w, b, kb_s)
            if has_virtual:
                xp.add(kb_s, xp.multiply(kv[s:e], bv, out=tmp[s:e]), out=kb_s)
            xp.divide(alpha, kb_s, out=a_s)  # the row update
            be.rmatvec(a_s, w, part)
            xp.add(ka_acc, part, out=ka_acc)
        return self.a_prev if check else None

    def _finish(self):
        st = self.st
        st.a, st.b, st.b_virtual, st.gauge = self.a, self.b, self.bv, self.T
        st.log_b, st.log_b_virtual = self.lb_cur, self.lbv_cur
        st.acceleration, st.sched = self.acceleration, self.sched
        return st, self.n_iter, self.err, self.status


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
