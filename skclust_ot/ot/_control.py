"""Iteration control shared by the solver loops: when to check, how to mix, when to stop."""

import math

import torch

from ._anderson import MEMORY, AndersonMixer


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
    """When the next convergence check is due (see the comment above)."""

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


# Acceleration. Every iteration maps the column log-potentials (K real + 1
# virtual) to new ones through one row and one column update; Anderson mixing
# of the last few of them (``_anderson``) replaces the next iterate by the
# combination whose residuals nearly cancel. The fixed point, hence the plan,
# is unchanged; the row updates stay exact.
# Safeguards: a check that sees the error spike or stall restarts the
# history (the third time, mixing stops for good); the mixer itself restarts
# when its residual grows and stops at the rounding noise; a mixed step that
# overflows is replayed with plain steps. A solve always ends with an exact
# (unmixed) step, so that the returned plan satisfies the column conditions
# exactly and the row error is the whole violation: the step after a check
# is exact when the error is predicted to reach tol in it, and a mixed step
# that reaches tol is followed by one exact step (``decide``).
# How the constants were chosen, with the measurements: docs/design.md,
# "Mixing constants".
_MIX_FLOOR_ULPS = 16  # residual entries below this many ulps of the dtype are noise
# a checked error this many times the best one is a spike (mixed errors are
# not monotone: the first mixed steps often overshoot, so a tight bound
# restarts too often)
_MIX_SPIKE = 100.0
# no halving of the error over this many iterations is a stall (in float32
# the residual differences of a slow solve sink into rounding noise)
_MIX_STALL = 10
_MIX_MAX_SPIKES = 3  # spikes and stalls restart the history; the third stops mixing
# a mixed residual below this many tol calls for a check (with mixing the
# error falls faster than the check schedule extrapolates)
_MIX_CHECK = 10.0

# what a check calls for (``_Acceleration.decide``)
CONVERGED = "converged"  # stop: the row error is below tol after an exact step
POLISH = "polish"  # below tol after a mixed step: one more, exact, step
CONTINUE = "continue"
MAX_ITER = "max_iter"  # stop: the last iteration was not enough


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

    def decide(self, it, max_iter, err, tol, mixed):
        """What a check at iteration ``it`` with the finite row error ``err`` calls for.

        ``CONVERGED`` or ``MAX_ITER``: stop (the status of the solve).
        ``POLISH``: the error is below tol but the column step was mixed, so
        the column conditions are not exact and the row error understates
        the distance to the fixed point: mixing stops and the solve finishes
        with one exact step, checked. ``CONTINUE``: iterate on. The last
        iteration of a solve is never mixed (``mix``), so ``POLISH`` does not
        occur at ``max_iter``. Either of the last two is followed by
        ``after_check``.
        """
        if err < tol:
            if mixed:
                self.stop()
                return POLISH
            return CONVERGED
        return MAX_ITER if it >= max_iter else CONTINUE

    def after_check(self, it, err, tol, sched=None, verdict=CONTINUE):
        """Bookkeeping after a check that did not stop the solve: schedule and mixing."""
        if sched is not None:
            sched.update(it, err)
            if verdict == POLISH:
                sched.next = it + 1  # check the exact step
        self.update(it, err, tol)
