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

# history length m: longer histories help float64 and hurt float32, whose
# older residual differences are closer to rounding noise (the measurements:
# docs/design.md, "Mixing constants")
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
        caller may reuse its buffer. The m x m system and the residual size
        go to the host in one read (one synchronization on a GPU), where the
        decisions and the solve are made in float64 on any device.
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
        size, gram, rhs = self._to_host(f, count)
        self.size = size
        if not size >= self.floor:  # below the rounding noise, or NaN
            self.stop()
            return g, False
        if size > _RESTART_GROWTH * self.best:
            # the mixed steps went astray: start a new history from here
            self.n_restarts += 1
            self.restart()
            count = 0
        elif self.f_prev is not None:
            self.pos = (self.pos + 1) % self.memory
        self.count = count
        self.best = min(self.best, size)
        self.f_prev, self.g_prev = f, be.copy(g)
        if not count:
            return g, False
        gamma = _solve(gram, rhs)
        if gamma is None:  # singular or non-finite system
            self.n_restarts += 1
            self.count = self.pos = 0
            return g, False
        if be.name != "numpy":
            gamma = torch.as_tensor(gamma, dtype=be.acc, device=be.device)
        return g - gamma @ self.d_g[:count], True

    def _to_host(self, f, count):
        """(max |f|, Gram matrix, right-hand side) as a float and float64 NumPy arrays."""
        be = self.be
        size = be.abs_max(f)
        if not count:
            return be.items(size)[0], None, None
        gram, rhs = self.gram[:count, :count], self.d_f[:count] @ f
        if be.name == "numpy":
            return float(size), gram, rhs
        packed = torch.cat([size.reshape(1), gram.reshape(-1), rhs]).to("cpu", torch.float64)
        packed = packed.numpy()
        return float(packed[0]), packed[1:1 + count * count].reshape(count, count), \
            packed[1 + count * count:]


_EYES = [np.eye(c) for c in range(33)]


def _solve(gram, rhs):
    """gamma from the regularized normal equations (float64), or None if they fail.

    LAPACK's Cholesky solve straight away: ``np.linalg.solve`` costs 4x more
    on these 1x1 to 5x5 systems, as much as the rest of a mixing call.
    """
    m = gram.shape[0]
    reg = _REGULARIZATION * np.trace(gram) + np.finfo(np.float64).tiny
    eye = _EYES[m] if m < len(_EYES) else np.eye(m)
    _, gamma, info = dposv(gram + reg * eye, rhs)
    if info != 0 or not np.isfinite(gamma).all():
        return None
    return gamma
