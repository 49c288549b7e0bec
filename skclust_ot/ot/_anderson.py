"""Anderson acceleration of a fixed-point iteration on a short vector.

The solvers iterate x <- G(x) on the column log-potentials (K + 1 numbers),
where one application of G is a whole scaling iteration (row update from x,
then column update). Anderson mixing (type II, Walker & Ni 2011) replaces
G(x_k) by the combination of the last m + 1 values of G whose residuals
f = G(x) - x combine to the smallest norm:

    gamma = argmin || f_k - dF gamma ||^2,   x_{k+1} = G(x_k) - dG gamma,

with dF, dG the differences of consecutive residuals and G values. Near the
fixed point the iteration is close to linear and the mixing acts like
GMRES on it; far from it the safeguards below fall back to plain steps.
Everything is O(m K) per iteration on the vectors alone (plus one m x m
solve): nothing the size of the kernel is stored or read.

Safeguards (all fall back to the plain step x_{k+1} = G(x_k)):

- residuals within a few ulps of the working precision carry no direction
  (their differences are rounding noise), so below ``floor`` mixing stops
  for good;
- a residual 10x above the smallest one since the last restart means the
  mixed steps went astray: the history is cleared and rebuilt;
- a singular or non-finite least-squares system.
"""

import math

import numpy as np
import torch
from scipy.linalg.lapack import dposv

# History length m. Total iterations to tol = 1e-6, with the safeguards of
# ``_p2ot``: on the solver benchmark's grid (36 cells, float64) 571 / 511 /
# 446 / 413 with m = 2 / 3 / 5 / 8 (1003 with the earlier over-relaxation);
# on 40 float32 / float64 problems up to 1e5 x 1000, 857 / 715 / 577 / 650
# (1637 with over-relaxation)
MEMORY = 5
# Tikhonov weight of the least-squares system, relative to its trace
_REGULARIZATION = 1e-10
# a history this many times the smallest residual since the last restart is dropped
_RESTART_GROWTH = 10.0


class AndersonMixer:
    """Type-II Anderson mixing of the vectors of one solve.

    Parameters
    ----------
    be : backend
        The solver's array backend (NumPy or torch); vectors are in its
        accumulation dtype.
    floor : float
        Largest absolute residual entry below which mixing stops for good
        (the rounding noise of the map G).
    memory : int
        Number m of past differences combined.

    The differences are kept in ring buffers with their Gram matrix, updated
    by one row per call, so that a call costs a dozen O(m d) operations and
    one m x m solve.
    """

    def __init__(self, be, floor, memory=MEMORY):
        self.be = be
        self.floor = floor
        self.memory = memory
        self.active = memory > 0
        self.d_f = self.d_g = self.gram = None  # allocated at the first call
        self.count = self.pos = 0  # valid rows (the first count), next slot
        self.f_prev = self.g_prev = None
        self.best = math.inf
        self.n_restarts = 0
        self.size = math.inf  # largest residual entry at the last call
        self._eyes = [np.eye(c) for c in range(memory + 1)]

    def restart(self):
        self.count = self.pos = 0
        self.f_prev = self.g_prev = None
        self.best = math.inf

    def stop(self):
        self.restart()
        self.active = False

    def snapshot(self):
        state = dict(vars(self))
        for name in ("d_f", "d_g", "gram"):
            if state[name] is not None:
                state[name] = self.be.copy(state[name])
        return state

    def rewind(self, snapshot):
        vars(self).update(snapshot)
        for name in ("d_f", "d_g", "gram"):
            if snapshot[name] is not None:
                setattr(self, name, self.be.copy(snapshot[name]))

    def shift(self, delta):
        """Move the history to coordinates ``x + delta`` (differences are unchanged)."""
        if self.g_prev is not None:
            self.g_prev = self.g_prev + delta

    def mix(self, x, g):
        """The next iterate after ``x``, given ``g = G(x)``: mixed, or ``g`` itself.

        Returns ``(x_next, mixed)``. ``g`` is copied into the history, so the
        caller may reuse its buffer; one host read per call (two scalars).
        """
        if not self.active:
            return g, False
        be = self.be
        if self.d_f is None:
            m, d = self.memory, g.shape[0]
            self.d_f, self.d_g = be.empty((m, d), acc=True), be.empty((m, d), acc=True)
            self.gram = be.empty((m, m), acc=True)
        f = g - x
        count = self.count
        if self.f_prev is not None:
            slot = self.pos
            self.d_f[slot] = f - self.f_prev
            self.d_g[slot] = g - self.g_prev
            count = min(count + 1, self.memory)
            column = self.d_f[:count] @ self.d_f[slot]
            self.gram[slot, :count] = column
            self.gram[:count, slot] = column
        gamma = None
        if count:
            gamma = self._solve(self.gram[:count, :count], self.d_f[:count] @ f)
        size, gamma_size = be.items(be.abs_max(f), 0.0 if gamma is None else be.abs_max(gamma))
        self.size = size
        if not size >= self.floor:  # below the rounding noise, or NaN
            self.stop()
            return g, False
        if size > _RESTART_GROWTH * self.best:
            # the mixed steps went astray: start a new history from here
            self.n_restarts += 1
            self.restart()
            count, gamma = 0, None
        elif self.f_prev is not None:
            self.pos = (self.pos + 1) % self.memory
        self.count = count
        self.best = min(self.best, size)
        self.f_prev, self.g_prev = f, be.copy(g)
        if gamma is None:
            return g, False
        if not gamma_size < math.inf:  # singular system
            self.n_restarts += 1
            self.count = self.pos = 0
            return g, False
        return g - gamma @ self.d_g[:count], True

    def _solve(self, gram, rhs):
        """gamma from the regularized normal equations (NaN where they fail)."""
        be = self.be
        if be.name == "numpy":
            # LAPACK's Cholesky solve straight away: np.linalg.solve costs 4x
            # more on these 1x1 to 5x5 systems, as much as the rest of a call
            reg = _REGULARIZATION * np.trace(gram) + self._tiny
            _, gamma, info = dposv(gram + reg * self._eyes[gram.shape[0]], rhs)
            return gamma if info == 0 else np.full_like(rhs, math.nan)
        reg = _REGULARIZATION * torch.diagonal(gram).sum() + self._tiny
        gram = gram + reg * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        # solve_ex: no host synchronization for the error check
        gamma, info = torch.linalg.solve_ex(gram, rhs)
        return torch.where(info == 0, gamma, torch.full_like(gamma, math.nan))

    @property
    def _tiny(self):
        be = self.be
        return float(np.finfo(be.acc).tiny if be.name == "numpy" else torch.finfo(be.acc).tiny)
