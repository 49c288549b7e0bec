"""The log-domain loop: exact generalized Sinkhorn on centred potentials (W holds Chat)."""

import math

from ._control import CONVERGED, MAX_ITER, _Acceleration, _CheckSchedule


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

    Returns ``(u, v, v_virtual, gauge, n_iter, err, status)`` with the
    iterations done here (not counting ``start``).
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
    status = MAX_ITER
    window = []
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
            err_value, ok = _evaluate(pb, window[-1])
            if not ok and acceleration.mixed_since_check:
                # a mixed step overshot: back to the last check, plain steps from there
                it, u, v, v_virtual, gauge, mixing = checkpoint
                acceleration.rewind(mixing)
                window.clear()
                continue
            if not ok:
                # NaN/inf do not heal: restore the iterate before the first bad one
                status = "numerical"
                n_iter, err, result = _last_finite(pb, window, n_iter, err, result)
                break
            n_iter, err, result = it, err_value, window[-1][1:5]
            window.clear()
            verdict = acceleration.decide(it, max_iter, err, tol, mixed)
            if verdict in (CONVERGED, MAX_ITER):
                status = verdict
                break
            acceleration.after_check(it, err, tol, sched, verdict)
            checkpoint = (it, pb.log_alpha - lse, v, v_virtual, gauge,
                          acceleration.snapshot())
        # the last pass skips this: ending on a column update keeps the
        # virtual mass exact
        u = pb.log_alpha - lse
    return (*result, n_iter - start, err, status)


def _evaluate(pb, state):
    """(row error, whether everything is finite) of one iterate of the window."""
    _, u, v, v_virtual, gauge, lse = state
    err_value, finite = pb.be.items(pb.row_error(u + lse),
                                    pb.all_finite(v, v_virtual, lse, gauge))
    return err_value, bool(finite) and math.isfinite(err_value)


def _last_finite(pb, window, n_iter, err, result):
    """(n_iter, err, iterate) of the last finite iterate of the window before its last.

    ``n_iter, err, result`` (those of the last check) are returned when the
    first iterate of the window is already not finite.
    """
    for state in window[:-1]:
        state_err, state_ok = _evaluate(pb, state)
        if not state_ok:
            break
        n_iter, err, result = state[0], state_err, state[1:5]
    return n_iter, err, result
