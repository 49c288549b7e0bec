"""Where a fit's rows live: one process, or a shard per ``torch.distributed`` rank.

:class:`Shards` is the only place that knows about data-parallel training.
The estimator asks it the same questions either way (how many rows in all,
the rows the start must see, this rank's slice of a global graph, the
skorch arguments of a rank) and gets the single-process answer when there
is no communicator.
"""

import builtins
import contextlib
import datetime
import gc
import traceback

import numpy as np
import torch

from .nn import BlockSampler, PaddedShuffleSampler
from .ot import Communicator

__all__ = ["Shards", "agree_on_failure", "check_same_shape", "collectively", "communicator",
           "row_blocks", "training_communicator"]

# rank r's sampler seed is seed + this * (r + 1): distinct streams per rank
_RANK_SEED_STRIDE = 104729


def row_blocks(n_samples, n_blocks, seed):
    """``range(n_samples)`` in ``n_blocks`` seeded random blocks of near-equal size, each sorted."""
    order = np.random.default_rng(seed).permutation(n_samples)
    return [np.sort(block) for block in np.array_split(order, n_blocks)]


def collectively(comm, func, *args, **kwargs):
    """``func(*args, **kwargs)``; with a communicator, its ValueError/TypeError
    is raised on every rank (no rank is left waiting in a collective)."""
    if comm is None:
        return func(*args, **kwargs)
    error = result = None
    try:
        result = func(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        error = exc
    comm.agree(error)
    return result


def communicator():
    """The default process group's :class:`~skclust_ot.ot.Communicator` (ValueError if none)."""
    try:
        return Communicator()
    except RuntimeError as exc:
        raise ValueError(
            "distributed=True needs torch.distributed's default process group: call "
            "torch.distributed.init_process_group(...) in every process first (e.g. "
            "in a script launched with torchrun), or set distributed=False."
        ) from exc


def training_communicator(comm, timeout_s):
    """A fresh group over ``comm``'s ranks whose collectives give up after ``timeout_s``.

    A fit's collectives after its first rendezvous run over this group: the
    ranks are then in step, so a rank that waits longer than ``timeout_s``
    in one collective waits for a rank that hangs, and its collective
    raises instead of waiting for the default group's timeout (30 minutes
    for gloo); a rank that raises closes the group at once
    (:meth:`Shards.abandon`), which fails the others' collectives sooner.
    The first rendezvous of a fit keeps the default group, so that ranks
    that reach ``fit`` at different times (one loads its shard more slowly)
    do not time out.
    """
    group = torch.distributed.new_group(timeout=datetime.timedelta(seconds=timeout_s))
    return Communicator(group=group, device=comm.device)


def _is_communication_error(error):
    """Whether ``error`` is a collective that failed or timed out (not a root cause)."""
    backend_error = getattr(torch.distributed, "DistBackendError", ())
    text = str(error)
    return isinstance(error, backend_error) or (
        isinstance(error, RuntimeError)
        and any(s in text for s in ("Timed out", "timed out", "Connection closed",
                                    "Connection reset", "Broken pipe")))


def agree_on_failure(comm, error, stage):
    """Every rank of a failed fit raises the root cause, whichever rank it came from.

    Called on every rank whose fit failed inside its collectives (over
    ``comm``, the default group: the training group may be broken). A rank
    whose own error is a root cause re-raises it; a rank whose own error is
    a failed or timed-out collective raises the first root cause of
    another rank instead, as ``"rank r failed during <stage>: ..."``
    (chained to its own error), or its own error when no rank has one.
    """
    mine = None if _is_communication_error(error) else (type(error).__name__, str(error))
    gathered = [None] * comm.world_size
    torch.distributed.all_gather_object(gathered, mine, group=comm.group)
    if mine is not None:
        raise error
    cause = next(((r, info) for r, info in enumerate(gathered) if info is not None), None)
    if cause is None:
        raise error
    rank, (name, message) = cause
    cls = getattr(builtins, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError
    raise cls(f"rank {rank} failed during {stage}: {name}: {message}") from error


def check_same_shape(comm, sample_shape):
    """ValueError on every rank unless all ranks hold samples of one shape."""
    shapes = [None] * comm.world_size
    torch.distributed.all_gather_object(shapes, tuple(sample_shape), group=comm.group)
    if len(set(shapes)) > 1:
        raise ValueError(
            f"X has samples of different shapes on different ranks: {shapes} "
            "(rank order); every rank must pass rows of the same data set."
        )


class Shards:
    """This process's rows of the training set, and what follows from them.

    Parameters
    ----------
    comm : skclust_ot.ot.Communicator or None
        The process group of a distributed fit, or None for one process.
    n_local : int
        Rows passed to ``fit`` in this process.
    """

    def __init__(self, comm, n_local):
        self.comm = comm
        self.n_local = n_local
        self.sizes = [n_local] if comm is None else comm.sizes(n_local)
        self.offset = sum(self.sizes[: self.rank])

    @property
    def rank(self):
        return 0 if self.comm is None else self.comm.rank

    @property
    def world_size(self):
        return 1 if self.comm is None else self.comm.world_size

    @property
    def n_total(self):
        """Rows over all ranks."""
        return sum(self.sizes)

    def collectively(self, func, *args, **kwargs):
        """See :func:`collectively`."""
        return collectively(self.comm, func, *args, **kwargs)

    def common_seed(self, seed):
        """Rank 0's seed on every rank."""
        if self.comm is None:
            return seed
        return int(self.comm.sum(torch.tensor([float(seed if self.rank == 0 else 0)]))[0])

    def all_rows(self, local_rows):
        """The rows of all ranks (rank order): the start and the graph see them all."""
        if self.comm is None:
            return local_rows
        return self.comm.gather_rows(local_rows, self.sizes)

    def sampled_rows(self, local_rows, picked):
        """The rows ``picked`` (sorted indices over all ranks' rows, in rank
        order) gathered from every rank; only those are sent."""
        if self.comm is None:
            return local_rows[torch.from_numpy(picked)]
        bounds = np.cumsum([0] + self.sizes)
        starts = np.searchsorted(picked, bounds)
        mine = picked[starts[self.rank]:starts[self.rank + 1]] - self.offset
        return self.comm.gather_rows(local_rows[torch.from_numpy(mine)],
                                     np.diff(starts).tolist())

    def local_graph(self, graph):
        """This rank's rows of a graph over the rows of all ranks."""
        if self.comm is None or graph is None:
            return graph
        return graph.index_select(0, torch.arange(self.offset, self.offset + self.n_local))

    def net_kwargs(self, batch_size, seed, verbose, epoch_rows=None, n_blocks=1):
        """skorch keywords for this rank: batch size, sampler, DDP, verbosity.

        The global batch stays ``batch_size``: each rank takes
        ``batch_size // world_size`` rows per step, and every rank takes as
        many steps (shorter shards are padded by the sampler). With
        ``epoch_rows`` below the number of rows, a distributed epoch is a
        fresh random subset of ``epoch_rows`` rows (split evenly over the
        ranks). One process with ``n_blocks > 1``: a
        :class:`~skclust_ot.nn.BlockSampler` over :func:`row_blocks`.
        """
        if self.comm is None:
            kwargs = {"batch_size": batch_size, "verbose": verbose,
                      "iterator_train__shuffle": n_blocks == 1}
            if n_blocks > 1:
                kwargs["iterator_train__sampler"] = BlockSampler(
                    row_blocks(self.n_local, n_blocks, seed), seed + _RANK_SEED_STRIDE)
            return kwargs
        length = max(self.sizes)
        if epoch_rows is not None:
            length = min(length, -(-epoch_rows // self.world_size))
        return {
            "batch_size": max(1, batch_size // self.world_size),
            "ddp": True,
            "ddp_group": self.comm.group,
            "iterator_train__shuffle": False,
            "iterator_train__sampler": PaddedShuffleSampler(
                self.n_local, length, seed + _RANK_SEED_STRIDE * (self.rank + 1)),
            "verbose": verbose if self.rank == 0 else 0,
        }

    def for_training(self, timeout_s):
        """These shards over a fresh group with a ``timeout_s`` collective timeout
        (see :func:`training_communicator`); themselves for one process."""
        if self.comm is None:
            return self
        return Shards(training_communicator(self.comm, timeout_s), self.n_local)

    def release(self):
        """Destroy the group of :meth:`for_training` (a no-op for the default group)."""
        if self.comm is not None and self.comm.group is not None:
            torch.distributed.destroy_process_group(self.comm.group)

    def abandon(self, error):
        """Close the group of :meth:`for_training` after ``error`` ended the fit on this rank.

        At once, before the ranks agree on the failure: the group is freed
        (its sockets close only when nothing refers to it any more, so the
        locals of the failed frames, which hold the network and its DDP
        wrapper, are cleared from ``error``'s traceback), and a rank blocked
        on this one in a collective fails now ("Connection closed by peer")
        instead of at the group's timeout. No rank keeps a group with a broken
        collective until the interpreter exits. A failure to release is
        secondary to ``error`` and is not reported.
        """
        if self.comm is None:
            return
        traceback.clear_frames(error.__traceback__)
        with contextlib.suppress(Exception):
            self.release()
        self.comm = None
        gc.collect()  # the network's reference cycles hold the group too

    def finish(self, net):
        """Average buffers over the ranks and unwrap the DDP module."""
        net.finish_ddp(None if self.comm is None else self.comm.group)
