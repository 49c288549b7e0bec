"""Checks of a fit's inputs that scikit-learn's parameter validation cannot express.

Data-dependent limits (``n_samples >= n_clusters``), parameters that must
agree with each other or with the data's shape, the device, and the float32
range the network trains in, and whether the fit fits in memory. Each raises
a ValueError (or :class:`FitMemoryError`) that names the problem and the fix.
"""

import warnings

import numpy as np
import torch
from torch import nn

from . import _memory
from ._config import OPTIMIZERS
from ._defaults import MLP_DEFAULTS
from ._start import GRAPH_STARTS
from ._stats import _STATS_CHUNK

__all__ = ["FitMemoryError", "check_memory", "check_params_vs_input", "float32_rows",
           "resolve_device"]

#: A fit may use at most this fraction of the memory still available.
MEMORY_SAFETY_FRACTION = 0.9


class FitMemoryError(MemoryError, ValueError):
    """A fit whose estimated memory exceeds what is available, raised before training.

    A MemoryError, and also a ValueError so that ``collectively`` (which
    forwards ValueError and TypeError) raises it on every rank of a
    distributed fit; the other ranks raise a MemoryError with its message.
    """


def float32_rows(X, share=False):
    """The training rows as a float32 tensor; raises beyond the float32 range.

    With ``share``, a writeable C-contiguous float32 ``X`` is used as it is
    (no copy of a large data set; only for the package's own encoders, which
    never write to their input); otherwise, and for other inputs, the rows
    are a new array.
    """
    with warnings.catch_warnings():
        # float64 data beyond the float32 range overflow here; reported below
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = np.ascontiguousarray(X, dtype=np.float32)
    if np.may_share_memory(rows, X) and not (share and rows.flags.writeable):
        rows = rows.copy()  # a custom encoder might write to its input
    rows = torch.from_numpy(rows)
    if not all(torch.isfinite(rows[i:i + _STATS_CHUNK]).all()
               for i in range(0, rows.shape[0], _STATS_CHUNK)):
        raise ValueError(
            "X has values beyond the float32 range (about ±3.4e38) used for "
            "training; rescale the data (e.g. with StandardScaler) first."
        )
    return rows


def resolve_device(device):
    """The torch device string ``device`` names; ValueError when it is not usable here."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu', "
            "'cuda' or 'cuda:<index>'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available on this "
                "machine; use device='auto' (CUDA when present, else CPU) or 'cpu'."
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible."
            )
    return str(resolved)


def check_params_vs_input(params, X, n_samples):
    """Raise ValueError for parameters that do not fit the data (or each other)."""
    if params.distributed and params.neighbor_views > 0:
        raise ValueError(
            "neighbor_views > 0 is not supported with distributed=True (a sample's "
            "neighbours may live on another rank); set neighbor_views=0."
        )
    if n_samples < params.n_clusters:
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={params.n_clusters}."
        )
    if isinstance(params.encoder, type) and not issubclass(params.encoder, nn.Module):
        raise ValueError(
            f"encoder={params.encoder!r} is a class but not a torch.nn.Module subclass; "
            "pass 'mlp', 'identity', a torch.nn.Module subclass or an instance."
        )
    if isinstance(params.encoder, str) and X.ndim != 2:
        raise ValueError(
            f"encoder={params.encoder!r} expects 2-D input, got {X.ndim}-D; pass a "
            "custom torch.nn.Module encoder for images or other shapes."
        )
    kwargs = params.encoder_kwargs or {}
    if params.encoder == "mlp":
        unknown = set(kwargs) - set(MLP_DEFAULTS)
        if unknown:
            raise ValueError(
                f"Unknown encoder_kwargs for encoder='mlp': {sorted(unknown)}; "
                f"valid keys are {sorted(MLP_DEFAULTS)}."
            )
    elif (params.encoder == "identity" or isinstance(params.encoder, nn.Module)) and kwargs:
        raise ValueError(
            "encoder_kwargs must be empty when encoder is 'identity' or a module "
            "instance (configure the instance itself)."
        )
    if isinstance(params.optimizer, type) and not issubclass(params.optimizer,
                                                           torch.optim.Optimizer):
        raise ValueError(
            f"optimizer={params.optimizer!r} is not a torch.optim.Optimizer subclass; "
            f"use one of {sorted(OPTIMIZERS)} or an optimizer class."
        )
    for cb in params.callbacks or []:
        obj = cb[1] if isinstance(cb, tuple) else cb
        if not hasattr(obj, "on_epoch_end"):
            raise ValueError(
                f"callbacks must be skorch callbacks or (name, callback) pairs; got {cb!r}."
            )


def _memory_fixes(config, X):
    """What to change, for the message of :func:`check_memory`."""
    fixes = []
    if config.scope == "full":
        fixes.append(f"ot_scope='bank' (solves per step over a memory bank of memory_size="
                     f"{config.memory_size} rows instead of N×K plans over all "
                     f"{config.n_samples:,} rows)")
    if config.init in GRAPH_STARTS:
        fixes.append("init='kmeans' (no spectral embedding; with ot_scope='bank' no kNN "
                     "graph over all rows either)")
    if config.scope == "bank":
        fixes.append(f"a smaller memory_size/batch_size (now {config.memory_size}/"
                     f"{config.batch_size})")
    if X.dtype == np.float64:
        fixes.append("float32 input (X is float64: 8 bytes per value, twice the fit's "
                     "own float32 copy)")
    fixes.append("fewer samples (fit on a subsample, then predict the rest)")
    return fixes


def _over_budget(estimate, keep, available, where):
    """The message's first part when ``estimate`` does not fit in ``available`` bytes."""
    need = _memory.peak_bytes(estimate, keep)
    if available is None or need <= MEMORY_SAFETY_FRACTION * available:
        return None
    items = {name: b for phase in estimate.values() for name, b in phase.items()
             if keep is None or keep(name)}
    largest = ", ".join(f"{name} {_memory.format_bytes(items[name])}"
                        for name in sorted(items, key=items.get, reverse=True)[:3])
    return (f"This fit needs an estimated {_memory.format_bytes(need)} of {where} "
            f"memory, more than {MEMORY_SAFETY_FRACTION:.0%} of the "
            f"{_memory.format_bytes(available)} available, and would fail part-way. "
            f"Largest items: {largest}.")


def check_memory(config, params, X, n_local, device):
    """Raise :class:`FitMemoryError` before training when the fit cannot fit in memory.

    Compares :func:`skclust_ot._memory.estimate_fit_memory` with the host
    memory this process may still allocate and, on a CUDA device, its
    device-side items with the device's free memory. No check where the
    available memory is unknown.
    """
    estimate = _memory.estimate_fit_memory(
        config, config.n_samples, int(np.prod(X.shape[1:])), params.n_clusters,
        params=params, n_local=n_local, device=device)
    on_host = None
    problem = None
    if str(device).startswith("cuda"):
        on_host = _memory.HOST_ITEMS.__contains__
        problem = _over_budget(estimate, lambda name: not on_host(name),
                               _memory.device_memory(device), f"{device} device")
    problem = problem or _over_budget(estimate, on_host, _memory.available_memory(), "host")
    if problem is not None:
        raise FitMemoryError(f"{problem} To fit, use " + "; or ".join(_memory_fixes(config, X))
                             + ".")
