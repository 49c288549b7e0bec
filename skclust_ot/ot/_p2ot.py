"""P²OT: the public ``p2ot`` and ``cost_from_logits``, and the driver that runs the loops.

``_solve`` sets up the problem (``_problem``), runs the scaling loop
(``_scaling_loop``) or the log-domain loop (``_log_loop``), continues a
scaling run that fell back in the log domain, and forms the plan and the log.
"""

import warnings

import torch

from ..exceptions import ConvergenceWarning
from ._backend import make_backend
from ._control import CONVERGED, _default_max_gap
from ._log_loop import _solve_log
from ._problem import _initial_column_potentials, _Problem, _Sums
from ._scaling_loop import FALLBACK, _solve_scaling
from ._validation import _check_out, _check_p2ot_params, _check_warm_start

__all__ = ["ConvergenceWarning", "cost_from_logits", "p2ot"]


def cost_from_logits(logits):
    """Transport cost ``C = -log softmax(logits)`` of a cluster head.

    Parameters
    ----------
    logits : torch.Tensor of shape (n_samples, n_clusters)
        Unnormalised cluster scores.

    Returns
    -------
    cost : torch.Tensor of shape (n_samples, n_clusters)
        Non-negative cost, same dtype and device as ``logits``. Computed with
        ``log_softmax`` so that tiny probabilities give large finite costs
        instead of ``inf``.

    Examples
    --------
    >>> import torch
    >>> from skclust_ot.ot import cost_from_logits
    >>> cost = cost_from_logits(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    >>> [[round(c, 4) for c in row] for row in cost.tolist()]
    [[0.6931, 0.6931], [0.3133, 1.3133]]
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}.")
    if logits.ndim != 2:
        raise ValueError(
            f"logits must be 2-D (n_samples, n_clusters), got shape {tuple(logits.shape)}."
        )
    return -torch.log_softmax(logits, dim=1)


@torch.no_grad()
def _solve(cost, rho, epsilon, kl_weight, max_iter, tol, method, warm_start, *,
           translate=True, accelerate=True, max_gap=None, backend=None, fused=None,
           out=None):
    """Validated-input core shared by :func:`p2ot` and :func:`sp2ot`.

    Returns ``plan, virtual, log`` where ``virtual`` is the implicit virtual
    column (length N, or None when rho == 1) and ``log["status"]`` is one of
    "converged", "max_iter", "numerical".

    Private knobs (benchmarks and tests): ``translate=False`` drops the
    translation step, ``accelerate=False`` the Anderson mixing (both off: plain
    generalized scaling / Sinkhorn), ``max_gap`` sets
    the largest number of iterations between convergence checks (1: check
    every iteration), ``backend`` forces "numpy" or "torch".
    """
    be = make_backend(cost, backend)
    if max_gap is None:
        max_gap = _default_max_gap(*cost.shape)
    g = _check_warm_start(warm_start, cost)
    with be.errstate(), be.threads(cost.numel()):
        pb = _Problem(cost, rho, epsilon, kl_weight, be, out)
        v, v_virtual = _initial_column_potentials(pb, g)
        gauge = pb.zero_gauge()

        if method == "log":
            used, n_absorb = "log", 0
            pb.centre_columns()
            # exact row update: the kernel rows sum to alpha from the first iteration on
            u = pb.log_alpha - pb.row_lse(v, v_virtual)
            u, v, v_virtual, gauge, n_iter, err, status = _solve_log(
                pb, u, v, v_virtual, gauge, max_iter, tol, max_gap, accelerate, translate=translate
            )
        else:
            st, n_iter, err, status = _solve_scaling(pb, v, v_virtual, gauge, max_iter, tol,
                                                     max_gap, translate, fused, accelerate)
            used, n_absorb = "scaling", st.n_absorb
            if status == FALLBACK:
                if method == "scaling":
                    warnings.warn(
                        f"p2ot: the scaling iterations hit a zero or non-finite denominator "
                        f"after {n_iter} iterations (a cluster's mass underflows "
                        f"{cost.dtype}); continuing in the log domain. Use method='auto' "
                        "to silence this or method='log' to skip the scaling attempt.",
                        UserWarning,
                        stacklevel=3,
                    )
                used = "scaling+log"
                u, v, v_virtual, gauge, more, err, status = _continue_in_log_domain(
                    pb, st, n_iter, max_iter, tol, max_gap, translate)
                n_iter += more
            else:
                plan, virtual, sums = st.plan()
                u, v, v_virtual, gauge = st.potentials()
        if used != "scaling":
            plan, virtual, sums = _log_plan(pb, u, v, v_virtual)

        log = _summary(pb, plan, virtual, sums)
        log.update(
            potentials=pb.dual_potentials(u, v, v_virtual, gauge),
            n_iter=n_iter,
            converged=status == CONVERGED,
            method=used,
            status=status,
            n_absorb=n_absorb,
            last_error=float(err),
        )
        plan = be.unwrap(plan) if out is None else out  # plan is W, which is out
        if virtual is not None:
            virtual = be.unwrap(virtual)
    return plan, virtual, log


def _continue_in_log_domain(pb, st, n_iter, max_iter, tol, max_gap, translate):
    """The log loop from where the scaling state ``st`` fell back after ``n_iter`` iterations.

    The check schedule and the mixing carry on, the mixing history moved
    from log b to v = v_absorbed + log b, and W goes back to Chat.
    """
    be = pb.be
    u, v, v_virtual, gauge = st.potentials()
    offset = be.empty(pb.n_clusters + pb.has_virtual, acc=True)
    offset[:pb.n_clusters] = be.cast(st.v, acc=True)
    if pb.has_virtual:
        offset[pb.n_clusters] = st.v_virtual
    st.acceleration.mixer.shift(offset)
    for s, e in pb.blocks:  # W back to Chat
        pb.fill_scaled_cost(s, e, pb.W[s:e])
    pb.centred = True
    return _solve_log(pb, u, v, v_virtual, gauge, max_iter - n_iter, tol, max_gap,
                      accelerate=st.acceleration, start=n_iter, translate=translate,
                      sched=st.sched)


def _log_plan(pb, u, v, v_virtual):
    """exp(u + v - Chat), formed in place in W (which holds Chat), and its sums."""
    xp, W = pb.be.xp, pb.W
    sums = _Sums(pb)
    for s, e in pb.blocks:
        x = xp.subtract(u[s:e, None], W[s:e], out=pb.block_buffer(e - s))
        xp.add(x, v[None, :], out=x)
        xp.exp(x, out=x)
        W[s:e] = x
        sums.add(s, e, W[s:e])
    virtual = None
    if pb.has_virtual:
        virtual = xp.exp(u + v_virtual - pb.virtual_cost)
    return W, virtual, sums


def _summary(pb, plan, virtual, sums):
    """Marginal errors of the returned plan, reduced in float64."""
    be = pb.be
    column_mass, rows = sums.columns, sums.rows
    virtual_mass = 0.0
    if virtual is not None:
        rows = rows + be.cast(virtual, acc=True)
        virtual_mass = float(be.sum(virtual, acc=True))
    row_error, mass = be.items(be.sum(be.xp.abs(rows - 1.0 / pb.n_samples)),
                               be.sum(column_mass))
    return {
        "row_error": row_error,
        "virtual_error": abs(virtual_mass - (1.0 - pb.rho)),
        "mass_error": abs(mass - pb.rho),
        "column_mass": be.unwrap(column_mass),
    }


def _warn_if_failed(name, log, max_iter, tol, stacklevel):
    if log["status"] == "numerical":
        warnings.warn(
            f"{name}: numerical errors (NaN/inf) after {log['n_iter']} iterations; "
            "returning the last finite iterate. Try method='log' or a larger epsilon.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )
    elif not log["converged"]:
        warnings.warn(
            f"{name} did not converge in max_iter={max_iter} iterations (row marginal "
            f"error {log['row_error']:.2e} > tol={tol:g}); increase max_iter or epsilon.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


def p2ot(cost, rho, *, epsilon=0.1, kl_weight=1.0, max_iter=1000, tol=1e-6,
         method="auto", warm_start=None, out=None):
    r"""Solve entropic progressive partial optimal transport (P²OT).

    Finds the plan :math:`Q \ge 0` (N×K) minimising

    .. math::

        \langle Q, C\rangle + \lambda\,\mathrm{KL}(Q^\top 1 \,\|\, \tfrac{\rho}{K} 1)
        - \varepsilon H(Q)
        \quad\text{s.t.}\quad Q 1 \le \tfrac{1}{N},\; 1^\top Q 1 = \rho,

    so that the ``rho * N`` most confident samples are (softly) selected and the
    cluster sizes may depart from uniform by an amount controlled by
    ``kl_weight``.

    Parameters
    ----------
    cost : torch.Tensor of shape (n_samples, n_clusters)
        Transport cost, e.g. :func:`cost_from_logits`. May be negative; must be
        finite and floating point. The plan has the same dtype and device.
    rho : float in (0, 1]
        Total transported mass (fraction of samples selected).
    epsilon : float, default=0.1
        Entropic regularisation, > 0.
    kl_weight : float, default=1.0
        Weight :math:`\lambda` > 0 of the KL penalty on the cluster sizes;
        ``math.inf`` enforces exactly uniform cluster sizes ``rho / K``.
    max_iter : int, default=1000
        Maximum number of (column + row) scaling iterations.
    tol : float, default=1e-6
        Stop when the L1 error of the row marginals (including the virtual
        column) falls below ``tol``.
    method : {"auto", "scaling", "log"}, default="auto"
        ``"log"``: log-domain updates with ``logsumexp`` in float64 arithmetic
        (always stable; each iteration evaluates exp over the N×K cost twice,
        10-20 times the cost of a scaling iteration on large CPU problems).
        ``"scaling"``: stabilized scaling iterations with
        absorption; falls back to the log domain, with a warning, if a zero or
        non-finite denominator appears. ``"auto"``: like ``"scaling"`` but the
        fallback is silent.
    warm_start : tuple (f, g) or None, default=None
        Dual potentials to start from, typically ``log["potentials"]`` of a
        previous call. Only the column potentials ``g`` (length K + 1) are
        used: the row potentials are recomputed from ``g`` by one exact row
        update, which keeps the kernel well conditioned and lets ``g`` be
        reused when the rows change (``f`` may be None).
    out : torch.Tensor or None, default=None
        A contiguous tensor with the shape, dtype and device of ``cost``, not
        sharing its memory, to hold the plan: the solver then uses it as its
        one N×K work array instead of allocating one, and returns it. Its
        contents on entry are ignored. For repeated solves of one size
        (reuse the buffer) or when the memory for a second N×K array is
        short.

    Returns
    -------
    plan : torch.Tensor of shape (n_samples, n_clusters)
        Optimal plan at the 1/N scale: row sums <= 1/N, total mass ~ ``rho``.
        ``n_samples * plan`` gives soft pseudo-labels whose row sums are the
        selection weights.
    log : dict
        ``n_iter`` (int), ``converged`` (bool), ``method`` (``"scaling"``,
        ``"log"`` or ``"scaling+log"`` after a fallback), ``row_error`` (L1
        error of the augmented row marginals), ``virtual_error``
        (:math:`|q_{virtual} - (1-\rho)|`), ``mass_error``
        (:math:`|1^\top Q 1 - \rho|`), ``column_mass`` (K float64 tensor of
        real cluster masses), ``potentials`` (``(f, g)`` with f of length N
        and g of length K + 1 such that
        :math:`\hat Q_{ij} = \exp((f_i + g_j - \hat C_{ij})/\varepsilon)`;
        ``g[K]`` is ``-inf`` when ``rho == 1``), ``status``
        (``"converged"``, ``"max_iter"`` or ``"numerical"``), ``last_error``
        (the row error the stopping test saw; ``row_error`` is recomputed
        from the returned plan and can differ from it by float32 rounding)
        and ``n_absorb`` (number of absorptions of the scaling path).

    Warns
    -----
    ConvergenceWarning
        If ``max_iter`` is reached before ``tol``, or if NaN/inf appear (the
        last finite iterate is then returned).

    Notes
    -----
    A zero-cost virtual column turns the inequality into equalities: the
    augmented plan :math:`\hat Q = [Q, q]` has row sums exactly
    :math:`\alpha = 1/N` and column targets
    :math:`\beta = [\rho/K, \dots, \rho/K, 1-\rho]`. Generalized scaling
    (Chizat et al. 2018) alternates :math:`a = \alpha / (M b)` and
    :math:`b = (\beta / M^\top a)^{\varphi}` with
    :math:`\varphi = \lambda/(\lambda+\varepsilon)` on the real columns and
    :math:`\varphi = 1` (hard) on the virtual one. The virtual column is kept
    as an implicit length-N vector and is not returned.

    The scaling path keeps potentials ``(f, g)``, scalings ``(a, b)`` and the
    stabilized kernel :math:`\tilde K_{ij} = \exp((f_i + g_j - C_{ij})/\varepsilon)`;
    the column update in absorbed form is
    :math:`b = (\beta / \tilde K^\top a)^{\varphi} \exp(-(1-\varphi) g/\varepsilon)`,
    and scalings whose log exceeds ``log(finfo.max) / 8`` are absorbed into
    the potentials (Schmitzer 2019). The cold start uses
    :math:`g_j = \min_i C_{ij}` so that no kernel column underflows.

    At the fixed point the real column masses :math:`m_j` satisfy
    :math:`g_j = -\lambda \log(m_j / \beta_j)` and the virtual column carries
    exactly :math:`1-\rho`.

    Three additions to plain generalized scaling, none of which changes the
    fixed point:

    * each iteration also takes the exact dual ascent step along
      :math:`(f + t, g - t)` (closed form for the KL term, cf. Séjourné et
      al. 2022). It leaves the plan unchanged and removes the slow mode in
      which the total real mass relaxes at rate
      :math:`1 - \rho\varepsilon/(\lambda+\varepsilon)` per iteration
      (about 1500 iterations for ``rho=0.1`` at the defaults; typically
      10–50 with the step);
    * the column potentials (K + 1 numbers) are Anderson-mixed [5]: each
      iteration maps them to new ones through one row and one column update,
      and the next iterate combines the last 5 of them so that their
      residuals nearly cancel (a least-squares problem of size 5, no work on
      the kernel). The fixed point, hence the plan, is unchanged; the last
      step is exact, so that the returned plan meets the column conditions
      exactly. Mixing restarts when the error spikes or stalls and stops at
      the rounding noise of the dtype. Each mixing step is a few operations
      on vectors of length K + 1 (nothing N-sized) and, on a GPU, one host
      synchronization;
    * the potentials are stored relative to row and column minima of
      :math:`\hat C/\varepsilon` plus one float64 scalar, so that float32
      keeps enough precision to reach ``tol=1e-6`` even when
      :math:`C/\varepsilon` is in the hundreds.

    Implementation: the solver takes and returns torch tensors; CPU
    float32/float64 problems run in NumPy (OpenBLAS matrix-vector products),
    other devices and dtypes in torch, one loop per solve in one library; the
    mixing solves its least-squares system (at most 5 x 5) on the host with
    SciPy's LAPACK. The only N×K array allocated is the one returned as
    the plan (it holds the stabilized kernel during the iterations); on CPU,
    kernels larger than the caches are swept in row blocks that reuse each
    block from cache for both products. Convergence and NaN/inf are checked
    every iteration at first and then at predicted intervals (each check is
    a host synchronization on a GPU); a check that finds NaN/inf replays the
    iterations since the previous check one by one, so the per-iteration
    safeguards (absorption, log-domain fallback, last finite iterate) act
    exactly where they would have.

    If the true mass of a cluster is below the smallest positive number of
    the dtype (e.g. a cost of 300 in float32), its kernel column underflows
    and the scaling path continues in the log domain (``"scaling+log"``).
    Semi-relaxed problems (``rho == 1``) with small ``epsilon`` converge
    slowly without the mixing (rate about
    :math:`\lambda/(\lambda+\varepsilon)` per iteration), which removes
    most of those iterations.

    References
    ----------
    .. [1] Zhang, C., Ren, H., He, X. "P²OT: Progressive Partial Optimal
       Transport for Deep Imbalanced Clustering." ICLR 2024.
    .. [2] Chizat, L., Peyré, G., Schmitzer, B., Vialard, F.-X. "Scaling
       algorithms for unbalanced optimal transport problems." Math. Comp. 2018.
    .. [3] Schmitzer, B. "Stabilized sparse scaling algorithms for entropy
       regularized transport problems." SIAM J. Sci. Comput. 2019.
    .. [4] Séjourné, T., Vialard, F.-X., Peyré, G. "Faster unbalanced optimal
       transport: translation invariant Sinkhorn and 1-D Frank-Wolfe."
       AISTATS 2022.
    .. [5] Walker, H. F., Ni, P. "Anderson acceleration for fixed-point
       iterations." SIAM J. Numer. Anal. 2011.

    Examples
    --------
    >>> import torch
    >>> from skclust_ot.ot import cost_from_logits, p2ot
    >>> gen = torch.Generator().manual_seed(0)
    >>> logits = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    >>> plan, log = p2ot(cost_from_logits(logits), rho=0.5)
    >>> plan.shape
    torch.Size([64, 4])
    >>> round(plan.sum().item(), 4)
    0.5
    >>> bool((plan.sum(dim=1) <= 1 / 64 + 1e-9).all()), log["converged"]
    (True, True)
    """
    rho, epsilon, kl_weight, max_iter, tol = _check_p2ot_params(
        cost, rho, epsilon, kl_weight, max_iter, tol, method
    )
    out = _check_out(out, cost)
    plan, _, log = _solve(cost, rho, epsilon, kl_weight, max_iter, tol, method, warm_start,
                          out=out)
    _warn_if_failed("p2ot", log, max_iter, tol, stacklevel=3)
    return plan, log
