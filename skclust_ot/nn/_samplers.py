"""Training samplers: the rows each epoch visits, in which order."""

import torch

__all__ = ["BlockSampler", "PaddedShuffleSampler"]


class PaddedShuffleSampler(torch.utils.data.Sampler):
    """A fresh permutation of ``range(n_samples)`` per epoch, padded to ``length``.

    Data-parallel training needs the same number of optimizer steps on every
    rank (each step all-reduces gradients); ranks holding fewer rows repeat
    some of them (from a second permutation) to reach the common ``length``.

    Parameters
    ----------
    n_samples : int
        Rows held by this rank.
    length : int
        Indices yielded per epoch (>= ``n_samples``), the same on every rank.
    seed : int
        Seed of the permutations (different per rank).
    """

    def __init__(self, n_samples, length, seed):
        self.n_samples = n_samples
        self.length = length
        self.seed = seed
        self.epoch = 0

    def __len__(self):
        return self.length

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        self.epoch += 1
        parts, total = [], 0
        while total < self.length:
            perm = torch.randperm(self.n_samples, generator=gen)
            parts.append(perm)
            total += perm.numel()
        return iter(torch.cat(parts)[: self.length].tolist())


class BlockSampler(torch.utils.data.Sampler):
    """Epoch ``e`` is a fresh permutation of the rows of block ``e mod len(blocks)``.

    Large data sets are trained block by block: every epoch sees one block
    of rows, and :class:`FullDataPseudoLabels` solves that epoch's OT
    problem over the same block (it asks :meth:`upcoming` which one).

    Parameters
    ----------
    blocks : sequence of array-like of int
        Disjoint row indices, one array per block.
    seed : int
        Seed of the permutations.
    """

    def __init__(self, blocks, seed):
        self.blocks = [torch.as_tensor(b, dtype=torch.long) for b in blocks]
        self.seed = seed
        self.epoch = 0

    def __len__(self):
        return max(b.numel() for b in self.blocks)

    def upcoming(self):
        """Return the rows the next epoch (the next ``iter``) yields, in index order.

        Returns
        -------
        rows : torch.LongTensor
            The block's row indices.
        """
        return self.blocks[self.epoch % len(self.blocks)]

    def __iter__(self):
        rows = self.upcoming()
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        self.epoch += 1
        return iter(rows[torch.randperm(rows.numel(), generator=gen)].tolist())
