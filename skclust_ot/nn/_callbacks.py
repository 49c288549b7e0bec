"""skorch callbacks: the progressive-mass schedule and full-data pseudo-labels."""

import math
import sys

import torch
from skorch.callbacks import Callback, PrintLog

from ..ot import rho_schedule
from ._samplers import BlockSampler

__all__ = ["RhoScheduler", "FullDataPseudoLabels", "PseudoLabelStats", "EpochTable"]


class RhoScheduler(Callback):
    """Set the transported mass ``rho`` of the pseudo-labeler per optimizer step.

    ``rho(t) = rho0 + (1 - rho0) * exp(-5 (1 - t/T)^2)`` for ``kind="sigmoid"``
    (see :func:`skclust_ot.ot.rho_schedule`), ``t`` the optimizer step and
    ``T`` the total number of steps of the fit. The current value is recorded
    in the history as ``"rho"`` at the end of every epoch.

    Parameters
    ----------
    rho0 : float
        Initial mass fraction in (0, 1].
    kind : {"sigmoid", "linear", "constant"}
        Shape of the ramp.
    """

    def __init__(self, rho0=0.1, kind="sigmoid"):
        self.rho0 = rho0
        self.kind = kind

    def initialize(self):
        self.step_ = 0
        self.total_steps_ = 1
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        iterator = net.get_params_for("iterator_train")
        sampler = iterator.get("sampler")
        n_samples = len(y) if y is not None else len(X)
        if sampler is not None:
            n_samples = len(sampler)  # e.g. padded to the same length on every rank
        # skorch's get_iterator gives iterator_train__batch_size priority
        batch_size = iterator.get("batch_size", net.batch_size)
        batch_size = batch_size if batch_size > 0 else n_samples
        drop_last = iterator.get("drop_last", False)
        per_epoch = n_samples // batch_size if drop_last else math.ceil(n_samples / batch_size)
        self.total_steps_ = max(1, per_epoch * net.max_epochs)
        self.step_ = 0
        self._apply(net)

    def _apply(self, net):
        net.pseudo_labeler.rho = rho_schedule(
            self.step_, self.total_steps_, rho0=self.rho0, kind=self.kind)

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            self._apply(net)

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.step_ += 1

    def on_epoch_begin(self, net, **kwargs):
        self._apply(net)

    def on_epoch_end(self, net, **kwargs):
        net.history.record("rho", net.pseudo_labeler.rho)


class FullDataPseudoLabels(Callback):
    """At the start of each epoch, solve the OT over the logits of all samples.

    Used when the pseudo-labeler's scope is ``"full"``: each view of every
    sample is passed through the network in ``eval`` mode (no gradient, no
    BatchNorm update) and one SP²OT problem is solved per view; the batches of
    the epoch then read their rows of the plans. When the training sampler is
    a :class:`~skclust_ot.nn.BlockSampler`, "every sample" is the block the
    epoch trains on.
    """

    def on_epoch_begin(self, net, dataset_train=None, **kwargs):
        labeler = net.pseudo_labeler
        if labeler.scope != "full":
            return
        sampler = net.get_params_for("iterator_train").get("sampler")
        rows = sampler.upcoming() if isinstance(sampler, BlockSampler) else None
        if rows is not None:  # the epoch trains on one block: solve over it alone
            dataset_train = torch.utils.data.Subset(dataset_train, rows.tolist())
        module = net.inner_module()  # no collectives in these forwards
        module.eval()
        logits = [[] for _ in range(labeler.n_views)]
        with torch.no_grad():
            for Xi, _ in net.get_iterator(dataset_train, training=False):
                Xi = Xi.to(net.device)
                for view in range(labeler.n_views):
                    logits[view].append(module(net.views_(Xi)))
        labeler.refresh([torch.cat(z) for z in logits], rows=rows)


class PseudoLabelStats(Callback):
    """Record solver effort and the number of clusters in use per epoch.

    History keys: ``"ot_iter"`` (solver iterations this epoch),
    ``"ot_not_converged"`` (solves that hit ``max_iter``) and
    ``"n_active"`` (clusters that received at least one sample's argmax in
    the last plan).
    """

    def on_epoch_begin(self, net, **kwargs):
        labeler = net.pseudo_labeler
        self._iter0 = labeler.n_solver_iter
        self._nc0 = labeler.n_not_converged

    def on_epoch_end(self, net, **kwargs):
        labeler = net.pseudo_labeler
        net.history.record("ot_iter", labeler.n_solver_iter - self._iter0)
        net.history.record("ot_not_converged", labeler.n_not_converged - self._nc0)
        weights = labeler.column_weights()
        if weights is not None:
            n_active = int((weights * labeler.n_clusters > 0.01).sum())
            net.history.record("n_active", n_active)


class EpochTable(PrintLog):
    """The per-epoch table of skorch, readable in logs as well as in terminals.

    Numbers are printed with four significant digits (``lr 0.0001`` instead
    of ``0.0000``), and the colour codes that mark a new best value are left
    out when standard output is not a terminal (files, CI logs, notebooks
    that capture the stream).

    Parameters
    ----------
    floatfmt : str, default=".4g"
        Format of the floating-point numbers.
    **kwargs
        Passed to :class:`skorch.callbacks.PrintLog`.
    """

    def __init__(self, floatfmt=".4g", **kwargs):
        super().__init__(floatfmt=floatfmt, **kwargs)

    def format_row(self, row, key, color):
        if not getattr(sys.stdout, "isatty", lambda: False)():
            color = ""
            row = {k: (False if k.endswith("_best") else v) for k, v in row.items()}
        return super().format_row(row, key, color)
