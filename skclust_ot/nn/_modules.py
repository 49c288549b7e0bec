"""Torch modules: input standardization, encoders and the cosine cluster head."""

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Standardize", "MLPEncoder", "CosineHead", "ClusterModule"]


class Standardize(nn.Module):
    """Fixed (non-trainable) affine map ``(x - mean) / scale``, optionally clipped.

    The statistics are buffers, so they travel with ``state_dict``, follow
    ``.to(device)`` and are never touched by the optimizer.

    Parameters
    ----------
    mean, scale : array-like
        Centre and scale (per feature, or one scale for all).
    low, high : array-like or None, default=None
        Bounds of the scaled values, per feature (robust scaling clips far
        outliers so that one row cannot dominate the network's statistics).
    """

    def __init__(self, mean, scale, low=None, high=None):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).clone())
        for name, bound in (("low", low), ("high", high)):
            self.register_buffer(
                name, None if bound is None else torch.as_tensor(bound, dtype=torch.float32)
                .clone())

    def forward(self, x):
        z = (x - self.mean).div_(self.scale)  # one temporary, not two
        # modules pickled before the bounds existed have no such attribute
        low, high = getattr(self, "low", None), getattr(self, "high", None)
        if low is not None or high is not None:
            z = torch.clamp(z, min=low, max=high)
        return z


class MLPEncoder(nn.Module):
    """Small multilayer perceptron for tabular data and embeddings.

    ``Linear -> BatchNorm -> ReLU`` blocks followed by a linear projection to
    ``embedding_dim`` and a non-affine BatchNorm that centres the embedding
    for the cosine head. BatchNorm runs on batch statistics only in training;
    in ``eval`` mode it is a fixed affine map, so predictions are per-sample.

    Parameters
    ----------
    n_features : int
        Input dimension.
    hidden_dims : tuple of int, default=(256,)
        Widths of the hidden layers.
    embedding_dim : int, default=64
        Output dimension.
    dropout : float, default=0.0
        Dropout probability after each hidden block.
    """

    def __init__(self, n_features, hidden_dims=(256,), embedding_dim=64, dropout=0.0):
        super().__init__()
        layers = []
        width = n_features
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, embedding_dim))
        # Centre and scale the embedding: the cosine head only sees
        # directions, and a common offset (which a linear read-out happily
        # learns) would make every sample point the same way.
        layers.append(nn.BatchNorm1d(embedding_dim, affine=False))
        self.layers = nn.Sequential(*layers)
        self.embedding_dim = embedding_dim

    def forward(self, x):
        return self.layers(x.flatten(1))


class CosineHead(nn.Module):
    """Cosine-similarity classifier: ``z_k = s * <x/|x|, w_k/|w_k|>``.

    Parameters
    ----------
    in_features : int
        Embedding dimension.
    n_clusters : int
        Number of prototypes (clusters).
    scale : float, default=10.0
        The fixed logit scale ``s`` (an inverse temperature).
    """

    def __init__(self, in_features, n_clusters, scale=10.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_clusters, in_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.scale = float(scale)

    def forward(self, x):
        x = F.normalize(x.flatten(1), dim=1)
        w = F.normalize(self.weight, dim=1)
        return self.scale * x @ w.T

    @torch.no_grad()
    def set_prototypes(self, prototypes):
        """Replace the prototypes, in place and without tracking gradients.

        The rows are copied as given into ``weight`` (on its device and
        dtype); ``forward`` normalizes them, so their norms do not matter.

        Parameters
        ----------
        prototypes : array-like of shape (n_clusters, in_features)
            One prototype per row, in the order of the clusters.

        Raises
        ------
        ValueError
            If ``prototypes`` does not have the shape of ``weight``.
        """
        prototypes = torch.as_tensor(prototypes, dtype=self.weight.dtype,
                                     device=self.weight.device)
        if prototypes.shape != self.weight.shape:
            raise ValueError(
                f"prototypes must have shape {tuple(self.weight.shape)}, "
                f"got {tuple(prototypes.shape)}."
            )
        self.weight.copy_(prototypes)


class ClusterModule(nn.Module):
    """``head(encoder(preprocess(x)))``: logits of the cluster assignment.

    Parameters
    ----------
    encoder : torch.nn.Module
        Maps a batch of inputs to a batch of embeddings ``(n, d, ...)``; the
        embedding is flattened before the head.
    head : CosineHead
        The cluster head.
    preprocess : torch.nn.Module or None
        A fixed input transform (e.g. :class:`Standardize`).
    """

    def __init__(self, encoder, head, preprocess=None):
        super().__init__()
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.encoder = encoder
        self.head = head

    def embed(self, x):
        """Compute the embeddings that the head receives.

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, ...)
            A batch of inputs.

        Returns
        -------
        embedding : torch.Tensor of shape (n_samples, n_embedding)
            ``encoder(preprocess(x))``, flattened after the first dimension.
        """
        return self.encoder(self.preprocess(x)).flatten(1)

    def forward(self, x):
        return self.head(self.embed(x))
