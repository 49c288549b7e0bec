"""Schedules for the transported mass rho of progressive partial OT."""

import math

from ._validation import _check_real

__all__ = ["rho_schedule"]

_KINDS = ("sigmoid", "linear", "constant")


def rho_schedule(step, total_steps, *, rho0=0.1, kind="sigmoid"):
    r"""Transported mass :math:`\rho(t)` at an optimizer step.

    Parameters
    ----------
    step : int or float
        Current step t; clipped to ``[0, total_steps]``.
    total_steps : int or float
        Total number of steps T, > 0.
    rho0 : float in (0, 1], default=0.1
        Initial mass.
    kind : {"sigmoid", "linear", "constant"}, default="sigmoid"
        ``"sigmoid"``: :math:`\rho_0 + (1-\rho_0)\exp(-5(1-t/T)^2)`;
        ``"linear"``: :math:`\rho_0 + (1-\rho_0)\,t/T`;
        ``"constant"``: :math:`\rho_0`.

    Returns
    -------
    rho : float
        Mass in ``(0, 1]``.

    Notes
    -----
    The sigmoid ramp does not start exactly at ``rho0``: at t = 0 it gives
    :math:`\rho_0 + (1-\rho_0)e^{-5}`; it reaches 1 at t = T.

    References
    ----------
    .. [1] Zhang, C., Ren, H., He, X. "P²OT: Progressive Partial Optimal
       Transport for Deep Imbalanced Clustering." ICLR 2024.

    Examples
    --------
    >>> from skclust_ot.ot import rho_schedule
    >>> round(rho_schedule(0, 100), 4), round(rho_schedule(50, 100), 4), rho_schedule(100, 100)
    (0.1061, 0.3579, 1.0)
    >>> rho_schedule(25, 100, kind="linear")
    0.325
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")
    step = _check_real(step, "step")
    total_steps = _check_real(total_steps, "total_steps", low=0.0)
    rho0 = _check_real(rho0, "rho0", low=0.0, high=1.0)
    if kind == "constant":
        return rho0
    progress = min(max(step, 0.0), total_steps) / total_steps
    if kind == "linear":
        ramp = progress
    else:
        ramp = math.exp(-5.0 * (1.0 - progress) ** 2)
    return float(min(1.0, rho0 + (1.0 - rho0) * ramp))
