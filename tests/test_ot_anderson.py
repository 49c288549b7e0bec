"""Anderson mixing of a fixed-point iteration (``skclust_ot.ot._anderson``)."""

import math

import numpy as np
import pytest
import torch

from skclust_ot.ot._anderson import AndersonMixer
from skclust_ot.ot._backend import make_backend


def numpy_backend():
    return make_backend(torch.zeros(1, 1, dtype=torch.float64))


def torch_backend(device="cpu"):
    return make_backend(torch.zeros(1, 1, dtype=torch.float64, device=device), "torch")


DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]


def linear_map(d=20, radius=0.95, seed=0):
    """G(x) = A x + c with A symmetric, spectrum in [0, radius], and its fixed point."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a = q @ np.diag(np.linspace(0.0, radius, d)) @ q.T
    c = rng.standard_normal(d)
    return a, c, np.linalg.solve(np.eye(d) - a, c)


def iterate(mixer, a, c, x, max_iter, tol, to_array=np.asarray, from_array=np.asarray):
    """Mixed iteration until |G(x) - x| < tol; returns (x, iterations, mixed steps)."""
    n_mixed = 0
    for it in range(1, max_iter + 1):
        g = a @ x + c
        if np.abs(g - x).max() < tol:
            return g, it, n_mixed
        if mixer is None:
            x = g
            continue
        x_next, mixed = mixer.mix(from_array(x), from_array(g))
        n_mixed += mixed
        x = to_array(x_next)
    return x, max_iter, n_mixed


def test_mixing_reaches_the_same_fixed_point_in_far_fewer_iterations():
    a, c, fixed = linear_map()
    x0 = np.zeros(len(c))
    plain, n_plain, _ = iterate(None, a, c, x0, 10000, 1e-10)
    mixed, n_mixed, n_steps = iterate(AndersonMixer(numpy_backend(), floor=0.0), a, c, x0,
                                      10000, 1e-10)
    assert n_plain > 300  # rate 0.95: ~ log(1e-10) / log(0.95)
    assert n_mixed < n_plain / 5
    assert n_steps > 0
    np.testing.assert_allclose(plain, fixed, atol=1e-8)
    np.testing.assert_allclose(mixed, fixed, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_backend_mixes_like_numpy(device):
    a, c, fixed = linear_map(seed=1)
    x0 = np.zeros(len(c))
    ref, n_ref, _ = iterate(AndersonMixer(numpy_backend(), floor=0.0), a, c, x0, 500, 1e-10)
    out, n_out, _ = iterate(AndersonMixer(torch_backend(device), floor=0.0), a, c, x0, 500,
                            1e-10, to_array=lambda t: t.cpu().numpy(),
                            from_array=lambda x: torch.from_numpy(x).to(device))
    assert n_out == n_ref
    np.testing.assert_allclose(out, ref, atol=1e-12)
    np.testing.assert_allclose(out, fixed, atol=1e-9)


def test_history_length_one_is_the_secant_step_and_zero_disables_mixing():
    a, c, _ = linear_map(seed=2)
    x0 = np.zeros(len(c))
    off = AndersonMixer(numpy_backend(), floor=0.0, memory=0)
    assert not off.active
    g = a @ x0 + c
    x1, mixed = off.mix(x0, g)
    assert x1 is g and not mixed
    one = AndersonMixer(numpy_backend(), floor=0.0, memory=1)
    _, first = one.mix(x0, g)  # no history yet: the plain step
    assert not first
    x2 = a @ g + c
    out, mixed = one.mix(g, a @ g + c)
    f0, f1 = g - x0, x2 - g
    gamma = (f1 - f0) @ f1 / ((f1 - f0) @ (f1 - f0))
    assert mixed
    np.testing.assert_allclose(out, x2 - gamma * (x2 - g), rtol=1e-9)


def test_rounding_noise_floor_and_nan_stop_mixing_for_good():
    be = numpy_backend()
    mixer = AndersonMixer(be, floor=1e-6)
    x = np.zeros(3)
    mixer.mix(x, x + 1.0)
    out, mixed = mixer.mix(x + 1.0, x + 1.0 + 1e-8)  # residual below the floor
    assert not mixed and not mixer.active
    np.testing.assert_array_equal(out, x + 1.0 + 1e-8)
    out, mixed = mixer.mix(x, x + 5.0)  # stopped: plain steps from now on
    assert not mixed
    np.testing.assert_array_equal(out, x + 5.0)

    nan_mixer = AndersonMixer(be, floor=0.0)
    nan_mixer.mix(x, x + 1.0)
    g = np.array([0.5, math.nan, 0.5])
    out, mixed = nan_mixer.mix(x + 1.0, g)
    assert not mixed and not nan_mixer.active and out is g


def test_a_residual_that_grows_tenfold_restarts_the_history():
    mixer = AndersonMixer(numpy_backend(), floor=0.0)
    x = np.zeros(4)
    mixer.mix(x, x + 1.0)
    _, mixed = mixer.mix(x + 1.0, x + 1.5)
    assert mixed and mixer.count == 1
    _, mixed = mixer.mix(x, x + 100.0)  # 200x the best residual
    assert not mixed and mixer.n_restarts == 1 and mixer.count == 0 and mixer.active
    _, mixed = mixer.mix(x + 100.0, x + 150.0)  # rebuilt from the restart point
    assert mixed and mixer.count == 1


def test_snapshot_and_rewind_replay_identically():
    a, c, _ = linear_map(seed=3)
    mixer = AndersonMixer(numpy_backend(), floor=0.0)
    x = np.zeros(len(c))
    for _ in range(4):
        x, _ = mixer.mix(x, a @ x + c)
    state, x_saved = mixer.snapshot(), x.copy()
    first = []
    for _ in range(6):
        x, _ = mixer.mix(x, a @ x + c)
        first.append(x.copy())
    mixer.rewind(state)
    x = x_saved
    for expected in first:
        x, _ = mixer.mix(x, a @ x + c)
        np.testing.assert_array_equal(x, expected)


def test_shift_moves_the_history_with_the_coordinates():
    # the same iteration in coordinates moved by delta halfway through: the
    # iterates move by delta, nothing else changes
    a, c, _ = linear_map(seed=4)
    delta = np.linspace(-3.0, 3.0, len(c))
    ref, moved = (AndersonMixer(numpy_backend(), floor=0.0) for _ in range(2))
    x = y = np.zeros(len(c))
    for it in range(12):
        if it == 6:
            moved.shift(delta)
            y = y + delta
        x, _ = ref.mix(x, a @ x + c)
        shift = delta if it >= 6 else 0.0
        y, _ = moved.mix(y, a @ (y - shift) + c + shift)
        np.testing.assert_allclose(y, x + shift, atol=1e-9)


@pytest.mark.parametrize("memory", [1, 3, 5, 8])
def test_every_history_length_converges(memory):
    a, c, fixed = linear_map(seed=5, radius=0.99)
    out, n_iter, _ = iterate(AndersonMixer(numpy_backend(), floor=0.0, memory=memory), a, c,
                             np.zeros(len(c)), 3000, 1e-11)
    assert n_iter < 3000
    np.testing.assert_allclose(out, fixed, atol=1e-8)


def test_least_squares_failures_give_no_step():
    from skclust_ot.ot._anderson import _solve

    assert _solve(np.array([[math.nan]]), np.array([1.0])) is None
    np.testing.assert_array_equal(_solve(np.zeros((2, 2)), np.zeros(2)), np.zeros(2))
    gram = np.array([[4.0, 2.0], [2.0, 3.0]])
    # the normal equations with their Tikhonov term (1e-10 x the trace)
    regularized = gram + 1e-10 * np.trace(gram) * np.eye(2)
    np.testing.assert_allclose(_solve(gram, np.array([1.0, 2.0])),
                               np.linalg.solve(regularized, [1.0, 2.0]), rtol=1e-12)
