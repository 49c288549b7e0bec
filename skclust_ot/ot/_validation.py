"""Checks of the parameters and tensors that every solver of ``skclust_ot.ot`` takes."""

import math
import numbers

import torch

_METHODS = ("auto", "scaling", "log")


def _check_cost(cost):
    if not isinstance(cost, torch.Tensor):
        raise TypeError(f"cost must be a torch.Tensor, got {type(cost).__name__}.")
    if cost.ndim != 2:
        raise ValueError(
            f"cost must be 2-D (n_samples, n_clusters), got shape {tuple(cost.shape)}."
        )
    if cost.shape[0] < 1 or cost.shape[1] < 1:
        raise ValueError(f"cost must be non-empty, got shape {tuple(cost.shape)}.")
    if not cost.is_floating_point():
        raise ValueError(
            f"cost must have a floating-point dtype, got {cost.dtype}; "
            "convert it with cost.float() or cost.double()."
        )
    if not _all_finite_tensor(cost):
        raise ValueError(
            "cost contains NaN or inf; build it with cost_from_logits (log_softmax) "
            "rather than -log(softmax) so that tiny probabilities stay finite."
        )


def _all_finite_tensor(tensor):
    """No NaN/inf, in one reduction pass without an N×K boolean temporary."""
    low, high = torch.aminmax(tensor)  # both propagate NaN
    return bool(torch.isfinite(low) & torch.isfinite(high))


def _check_real(value, name, *, low=None, high=None, low_open=True, allow_inf=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be finite, got {value!r}.")
    if low is not None and (value <= low if low_open else value < low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}.")
    return value


def _check_int(value, name, *, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}.")
    return int(value)


def _check_p2ot_params(cost, rho, epsilon, kl_weight, max_iter, tol, method):
    _check_cost(cost)
    rho = _check_real(rho, "rho", low=0.0, high=1.0)
    epsilon = _check_real(epsilon, "epsilon", low=0.0)
    kl_weight = _check_real(kl_weight, "kl_weight", low=0.0, allow_inf=True)
    max_iter = _check_int(max_iter, "max_iter", low=1)
    tol = _check_real(tol, "tol", low=0.0, low_open=False)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    return rho, epsilon, kl_weight, max_iter, tol


def _check_out(out, cost):
    """``out`` is a tensor the plan may be written into (or None)."""
    if out is None:
        return None
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor or None, got {type(out).__name__}.")
    for name, want, got in (("shape", tuple(cost.shape), tuple(out.shape)),
                            ("dtype", cost.dtype, out.dtype),
                            ("device", cost.device, out.device)):
        if want != got:
            raise ValueError(f"out must have the {name} of cost, {want}; got {got}.")
    if not out.is_contiguous():
        raise ValueError("out must be contiguous (it is swept row block by row block).")
    if out.requires_grad:
        raise ValueError("out must not require grad (the plan is computed without autograd).")
    (out_start, out_end), (cost_start, cost_end) = _extent(out), _extent(cost)
    if out.device == cost.device and out_start < cost_end and cost_start < out_end:
        raise ValueError(
            "out must not share memory with cost: the solver re-reads cost whenever "
            "it rebuilds its kernel."
        )
    return out


def _extent(tensor):
    """[first, last + 1) byte addresses of a tensor's elements (torch strides are >= 0)."""
    start = tensor.data_ptr()
    last = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    return start, start + (last + 1) * tensor.element_size()


def _accumulation_dtype(tensor):
    # float64 reductions where the backend has them (MPS has no float64)
    return torch.float32 if tensor.device.type == "mps" else torch.float64


def _check_warm_start(warm_start, cost):
    """The column potentials g of ``warm_start`` (accumulation dtype, cost's device), or None.

    Runs before anything is written, so that an invalid ``warm_start`` leaves
    a caller's ``out`` untouched.
    """
    if warm_start is None:
        return None
    if not (isinstance(warm_start, (tuple, list)) and len(warm_start) == 2):
        raise ValueError(
            "warm_start must be a pair (f, g) such as log['potentials'] of a previous "
            f"call, got {type(warm_start).__name__}."
        )
    g = warm_start[1]
    k = cost.shape[1]
    if not isinstance(g, torch.Tensor) or g.ndim != 1 or g.shape[0] != k + 1:
        shape = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(
            f"warm_start[1] (column potentials g) must be a 1-D tensor of length "
            f"n_clusters + 1 = {k + 1}, got {shape}."
        )
    g = g.detach().to(dtype=_accumulation_dtype(cost), device=cost.device)
    if not bool(torch.isfinite(g[:k]).all()):
        raise ValueError("warm_start[1] has non-finite real-column potentials.")
    return g
