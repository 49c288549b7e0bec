"""The skorch net that trains a cluster module on SP²OT pseudo-labels."""

import copy
import inspect

import numpy as np
import torch
from skorch import NeuralNet
from skorch.dataset import Dataset, unpack_data
from skorch.utils import to_tensor
from torch import nn

from ._callbacks import EpochTable

__all__ = ["SoftTargetCrossEntropy", "SP2OTNet"]

# Hooks called inside skorch's fit_loop: a KeyboardInterrupt raised there by a
# callback is skorch's way of asking training to stop (EarlyStopping does it).
_LOOP_HOOKS = frozenset({"on_epoch_begin", "on_epoch_end", "on_batch_begin", "on_batch_end"})


class _StopTraining(Exception):
    """A callback asked the training loop to stop (private signal of SP2OTNet)."""

    def __init__(self, callback, hook):
        super().__init__(f"training stopped by callback {callback!r} in {hook}")
        self.callback = callback
        self.hook = hook


def _is_own_callback(cb):
    """skclust_ot's own callbacks never stop training on purpose."""
    return type(cb).__module__.startswith("skclust_ot.")


class SoftTargetCrossEntropy(nn.Module):
    """``mean_i( -sum_k t_ik log softmax(z_i)_k )`` with unnormalized targets.

    Targets are rows of ``N * Q``: a row's mass is the sample's selection
    weight in ``[0, 1]``, so samples the partial transport left out contribute
    (almost) nothing.
    """

    def forward(self, logits, targets):
        return -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()


def _dense(v):
    return isinstance(v, torch.Tensor) or (isinstance(v, np.ndarray) and v.dtype.kind in "biuf")


def _indexable_by_batch(dataset):
    """Whether ``dataset[list_of_indices]`` is the batch of those rows: a skorch
    ``Dataset`` (or a ``Subset`` of one) over a dense array or tensor."""
    while isinstance(dataset, torch.utils.data.Subset):
        dataset = dataset.dataset
    return (type(dataset) is Dataset and _dense(dataset.X)
            and (dataset.y is None or _dense(dataset.y)))


def _take(data, rows):
    """``data[rows]`` for a dense array or tensor and an int64 index array."""
    if data is None:
        return None
    return data[torch.from_numpy(rows)] if isinstance(data, torch.Tensor) else data[rows]


class _BatchRows(torch.utils.data.Dataset):
    """A skorch ``Dataset`` (under any ``Subset`` layers) read a batch at a time.

    ``self[batch]`` is what ``dataset[batch]`` gives for a list of positions,
    but the rows are taken with one int64 index array: skorch's indexing
    goes through scikit-learn's ``_safe_indexing``, which checks the type of
    every element of a list key (about 1.7 ms per batch of 256, as much as
    the training step's forward pass on 50 features).
    """

    def __init__(self, dataset):
        self.rows = None  # positions in the base dataset; None: the identity
        while isinstance(dataset, torch.utils.data.Subset):
            picked = np.asarray(dataset.indices, dtype=np.int64)
            self.rows = picked if self.rows is None else picked[self.rows]
            dataset = dataset.dataset
        self.base = dataset

    def __len__(self):
        return len(self.base) if self.rows is None else len(self.rows)

    def __getitem__(self, batch):
        rows = np.asarray(batch, dtype=np.int64)
        if self.rows is not None:
            rows = self.rows[rows]
        return self.base.transform(_take(self.base.X, rows), _take(self.base.y, rows))


class SP2OTNet(NeuralNet):
    """A skorch ``NeuralNet`` whose training step uses OT pseudo-labels.

    ``fit(X, y)`` expects ``y`` to be the sample indices ``arange(n)``: the
    pseudo-labeler uses them to find each batch's rows in the full-data plan.
    Each step draws two views of the batch, runs them through the module in
    one pass, asks the pseudo-labeler for soft targets per view and minimizes
    the swapped cross-entropy (targets of view 1 supervise view 2 and vice
    versa).

    Parameters
    ----------
    module : torch.nn.Module
        The cluster module (encoder + head), producing logits.
    criterion : torch.nn.Module class, default=SoftTargetCrossEntropy
        The loss, instantiated by skorch and called as
        ``criterion(logits, targets)`` with the logits of one view and the
        soft targets of the other.
    views : callable or None, default=None
        Produces one random view of a batch per call (e.g.
        :class:`FeatureViews`); a copy, moved with ``.to(device)``, is used
        in training. ``None``: no augmentation (the identity).
    pseudo_labeler : skclust_ot.nn.PseudoLabeler or None, default=None
        Produces the targets; required for training.
    neighbor_views : float, default=0.0
        Probability that the second view of a sample shows one of its
        nearest neighbours instead (neighbour consistency); its target is
        the neighbour's own row of the plan.
    neighbors : torch.LongTensor of shape (n_samples, k) or None, default=None
        Nearest-neighbour indices for ``neighbor_views``; ``None`` turns
        neighbour views off.
    neighbor_data : torch.Tensor or None, default=None
        The training inputs, indexed by ``neighbors``.
    ddp : bool, default=False
        Wrap the module in ``torch.nn.parallel.DistributedDataParallel``
        (over ``ddp_group``): gradients are averaged over the ranks at every
        step. Buffers (BatchNorm running
        statistics) are not broadcast at each forward; call
        :meth:`finish_ddp` after training to average them and unwrap.
    ddp_group : torch.distributed.ProcessGroup or None, default=None
        The process group of ``ddp`` (``None``: the default group, which
        must be initialized).
    **kwargs
        Passed to :class:`skorch.NeuralNet`.

    Attributes
    ----------
    stopped_by_ : tuple of (str, str) or None
        ``(callback name, hook)`` of the callback that stopped the last
        training early (see Notes); ``None`` when it ran all its epochs.

    Notes
    -----
    skorch callbacks stop training by raising ``KeyboardInterrupt`` from a
    hook (:class:`skorch.callbacks.EarlyStopping` does so from
    ``on_epoch_end``). Such a stop ends training normally: ``on_train_end``
    runs and the fit completes with the epochs run so far (the last one may
    be partial when the stop came from a batch hook). Any other
    ``KeyboardInterrupt`` -- a real Ctrl-C in the training step, in the
    net's own hooks or in skclust_ot's own callbacks (where the pseudo-label
    refresh spends its time) -- is not swallowed, unlike skorch's default:
    it propagates, and :class:`~skclust_ot.SP2OTClustering` then keeps its
    previous fitted state instead of a half-trained one.

    A Ctrl-C cannot be told apart from a callback's deliberate stop: one
    that lands while a user or skorch callback runs an epoch or batch hook
    (usually microseconds per batch) is taken as a stop. With
    ``distributed=True`` a callback must stop every rank at the same epoch.
    """

    def __init__(self, module, criterion=SoftTargetCrossEntropy, *, views=None,
                 pseudo_labeler=None, neighbor_views=0.0, neighbors=None,
                 neighbor_data=None, ddp=False, ddp_group=None, **kwargs):
        super().__init__(module, criterion, **kwargs)
        self.ddp = ddp
        self.ddp_group = ddp_group
        self.views = views
        self.pseudo_labeler = pseudo_labeler
        self.neighbor_views = neighbor_views
        self.neighbors = neighbors
        self.neighbor_data = neighbor_data
        self.stopped_by_ = None

    def get_default_callbacks(self):
        """Return skorch's default callbacks, with a more readable printed table.

        The ``"print_log"`` entry is a fresh
        ``skclust_ot.nn._callbacks.EpochTable`` (four significant digits, no
        colour codes outside a terminal) instead of skorch's ``PrintLog``;
        the other entries are skorch's.

        Returns
        -------
        callbacks : list of (str, skorch.callbacks.Callback)
            The ``(name, callback)`` pairs of skorch's defaults, in their
            order.
        """
        return [(name, EpochTable() if name == "print_log" else cb)
                for name, cb in super().get_default_callbacks()]

    def get_iterator(self, dataset, training=False):
        """Return skorch's iterator, reading each batch of in-memory rows with one index.

        PyTorch's ``DataLoader`` calls the dataset once per row and stacks the
        rows (1.6 million calls in a default fit on 16,000 rows). Over a
        skorch ``Dataset`` of arrays or tensors (or a ``Subset`` of one) the
        loader here samples the same indices in the same order, from the same
        random stream, and reads the batch ``X[idx]`` in one go: the batches
        are identical. Other datasets, a custom iterator, ``batch_sampler`` or
        ``collate_fn`` use skorch's as it is.

        Parameters
        ----------
        dataset : torch.utils.data.Dataset
            The data to iterate over (usually skorch's ``Dataset``).
        training : bool, default=False
            Whether to use the ``iterator_train__*`` or the
            ``iterator_valid__*`` settings.

        Returns
        -------
        torch.utils.data.DataLoader
            Yields ``(X, y)`` batches.
        """
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        iterator = self.iterator_train if training else self.iterator_valid
        if (iterator is not torch.utils.data.DataLoader or not _indexable_by_batch(dataset)
                or {"batch_sampler", "collate_fn"} & set(kwargs)):
            return super().get_iterator(dataset, training=training)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        if batch_size == -1:
            batch_size = len(dataset)
        sampler = kwargs.pop("sampler", None)
        shuffle = kwargs.pop("shuffle", False)
        if sampler is None:  # as DataLoader builds it (the same draws of torch's RNG)
            sampler = (torch.utils.data.RandomSampler(dataset, generator=kwargs.get("generator"))
                       if shuffle else torch.utils.data.SequentialSampler(dataset))
        batches = torch.utils.data.BatchSampler(sampler, batch_size,
                                                kwargs.pop("drop_last", False))
        return torch.utils.data.DataLoader(_BatchRows(dataset), batch_size=None,
                                           sampler=batches, **kwargs)

    def initialize_module(self):
        super().initialize_module()
        if self.ddp:
            param = next(self.module_.parameters())
            device_ids = [param.device] if param.device.type == "cuda" else None
            ddp = nn.parallel.DistributedDataParallel
            # buffers are averaged once after training (finish_ddp), not
            # synchronized at every forward; torch >= 2.13 renamed the switch
            no_sync = ({"forward_sync_buffers": False}
                       if "forward_sync_buffers" in inspect.signature(ddp).parameters
                       else {"broadcast_buffers": False})
            self.module_ = ddp(self.module_, device_ids=device_ids,
                               process_group=self.ddp_group, **no_sync)
        if self.views is None:
            self.views_ = lambda x: x
        else:
            self.views_ = copy.deepcopy(self.views).to(self.device)
        return self

    def inner_module(self):
        """Return the trained module itself, unwrapped from DistributedDataParallel.

        Returns
        -------
        module : torch.nn.Module
            ``module_``, or the module it wraps when it is a
            ``DistributedDataParallel``.
        """
        module = self.module_
        return module.module if isinstance(module, nn.parallel.DistributedDataParallel) \
            else module

    @torch.no_grad()
    def finish_ddp(self, group=None):
        """Average floating-point buffers over the ranks and unwrap the module.

        The parameters are already equal on every rank (same start, averaged
        gradients); the BatchNorm running statistics saw each rank's own
        batches, and their average is what one process would have tracked.
        With ``ddp=True`` this is a collective call: every rank of ``group``
        must make it. Integer buffers (such as BatchNorm's
        ``num_batches_tracked``) are left as they are. Afterwards
        ``module_`` is the unwrapped module and ``ddp`` is ``False``, so a
        later ``initialize()`` does not wrap it again; with ``ddp=False``
        only that happens.

        Parameters
        ----------
        group : torch.distributed.ProcessGroup or None, default=None
            The ranks to average over; ``None``: the default process group.

        Returns
        -------
        self : SP2OTNet
            The net, with its module unwrapped.
        """
        module = self.inner_module()
        if self.ddp:
            import torch.distributed as dist

            world = dist.get_world_size(group)
            for buf in module.buffers():
                if buf.is_floating_point():
                    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
                    buf.div_(world)
        self.module_ = module
        self.ddp = False  # trained: a later initialize() must not wrap again
        return self

    def _partners(self, index):
        """Sample shown in the second view: itself, or with probability
        ``neighbor_views`` one of its k nearest neighbours."""
        if not self.neighbor_views or self.neighbors is None:
            return None
        index = index.to(self.neighbors.device)
        n, k = index.shape[0], self.neighbors.shape[1]
        picked = self.neighbors[index, torch.randint(k, (n,), device=index.device)]
        swap = torch.rand(n, device=index.device) < self.neighbor_views
        return torch.where(swap, picked, index)

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, index = unpack_data(batch)
        Xi = to_tensor(Xi, device=self.device)
        n = Xi.shape[0]
        partners = self._partners(torch.as_tensor(index))
        X2 = Xi if partners is None else self.neighbor_data[partners].to(self.device)
        logits = self.infer(torch.cat([self.views_(Xi), self.views_(X2)]), **fit_params)
        z1, z2 = logits[:n], logits[n:]
        view_index = None if partners is None else [index, partners]
        t1, t2 = self.pseudo_labeler.targets(index, z1.detach(), z2.detach(),
                                             view_index=view_index)
        loss = 0.5 * (self.get_loss(z2, t1, X=Xi, training=True)
                      + self.get_loss(z1, t2, X=Xi, training=True))
        loss.backward()
        return {"loss": loss, "y_pred": z1}

    def notify(self, method_name, **cb_kwargs):
        """Call the hook ``method_name`` of the net, then of every callback.

        As skorch's, except that a ``KeyboardInterrupt`` raised by a user
        (or skorch) callback in an epoch or batch hook becomes the private
        stop signal that ``partial_fit`` catches (see the class Notes).

        Parameters
        ----------
        method_name : str
            Name of the hook, such as ``"on_epoch_end"``; each hook is called
            with the net as its first argument.
        **cb_kwargs
            Keyword arguments passed to every hook.
        """
        getattr(self, method_name)(self, **cb_kwargs)
        for name, cb in self.callbacks_:
            try:
                getattr(cb, method_name)(self, **cb_kwargs)
            except KeyboardInterrupt as exc:
                if method_name not in _LOOP_HOOKS or _is_own_callback(cb):
                    raise
                raise _StopTraining(name, method_name) from exc

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        if not self.initialized_:
            self.initialize()
        self.stopped_by_ = None
        self.notify("on_train_begin", X=X, y=y)
        try:
            self.fit_loop(X, y, **fit_params)
        except _StopTraining as stop:
            self.stopped_by_ = (stop.callback, stop.hook)
        self.notify("on_train_end", X=X, y=y)
        return self
