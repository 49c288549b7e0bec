"""Checks of a fit's inputs that scikit-learn's parameter validation cannot express.

Data-dependent limits (``n_samples >= n_clusters``), parameters that must
agree with each other or with the data's shape, the device, and the float32
range the network trains in. Each raises a ValueError that names the problem
and the fix.
"""

import warnings

import numpy as np
import torch
from torch import nn

from ._config import OPTIMIZERS
from ._defaults import MLP_DEFAULTS
from ._stats import _STATS_CHUNK

__all__ = ["check_params_vs_input", "float32_rows", "resolve_device"]


def float32_rows(X):
    """The training rows as a float32 tensor (a copy); raises beyond the float32 range."""
    with warnings.catch_warnings():
        # float64 data beyond the float32 range overflow here; reported below
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = torch.from_numpy(np.array(X, dtype=np.float32))
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
    if not not isinstance(params.encoder, str) and X.ndim != 2:
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
