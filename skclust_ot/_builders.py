"""Builders of a fit's parts: input scaling, network, pseudo-labeler, callbacks, skorch net.

Each builder takes the estimator's parameters (read only) and the resolved
:class:`~skclust_ot._config.FitConfig`, and returns one object; none of them
trains. :meth:`SP2OTClustering.fit` calls them in the order of the recipe.
"""

import copy
import importlib.util
from dataclasses import dataclass

import numpy as np
import torch
from skorch.callbacks import LRScheduler, ProgressBar
from torch import nn

from . import _defaults as defaults
from ._stats import (
    _column_moments,
    _robust_statistics,
    _sample_rows,
    _warn_if_outliers_dominate,
)
from .nn import (
    ClusterModule,
    CosineHead,
    FeatureViews,
    FullDataPseudoLabels,
    MLPEncoder,
    PseudoLabeler,
    PseudoLabelStats,
    RhoScheduler,
    SoftTargetCrossEntropy,
    SP2OTNet,
    Standardize,
)

__all__ = [
    "Preprocessing",
    "build_callbacks",
    "build_encoder",
    "build_module",
    "build_net",
    "build_pseudo_labeler",
    "fit_preprocessing",
]


@dataclass(frozen=True)
class Preprocessing:
    """The network's fixed input scaling and the spread of the training views.

    Attributes
    ----------
    transform : skclust_ot.nn.Standardize or None
        Applied inside the network (at predict too); None for
        ``standardize="none"``.
    view_mean, view_std : torch.Tensor of shape (n_features,)
        Per-feature mean and standard deviation of the (clipped) input,
        which the training views' noise and masking follow.
    """

    transform: nn.Module
    view_mean: torch.Tensor
    view_std: torch.Tensor

    def apply(self, rows):
        """``rows`` as the network sees them after scaling."""
        return rows if self.transform is None else self.transform(rows)


def fit_preprocessing(standardize, data, seed):
    """Statistics of ``data`` (float64, in row blocks) and the scaling they define.

    Parameters
    ----------
    standardize : {"global", "robust", "feature", "none"}
        The estimator's ``standardize`` parameter.
    data : ndarray of shape (n_samples, ...)
        The training rows (float32 or float64; never modified).
    seed : int
        Seeds the row samples of the robust statistics and the outlier check.

    Returns
    -------
    preprocessing : Preprocessing
    """
    if standardize == "robust":
        sample = _sample_rows(data, defaults.ROBUST_STATISTICS_MAX_ROWS, seed)
        centre, scale, low, high = _robust_statistics(sample)
        transform = Standardize(centre, scale, (low - centre) / scale, (high - centre) / scale)
        # the training views' noise follows the clipped data's spread
        clip_mean, clip_std = _column_moments(data, low, high)
        return Preprocessing(transform, torch.from_numpy(clip_mean).float(),
                             torch.from_numpy(clip_std).float())
    mean64, std64 = _column_moments(data)
    mean = torch.from_numpy(mean64).float()
    std = torch.from_numpy(std64).float()
    std = torch.where(torch.isfinite(std), std, torch.zeros_like(std))
    transform = None
    if standardize == "feature":
        transform = Standardize(mean, torch.where(std > 0, std, torch.ones_like(std)))
    elif standardize == "global":
        # one scale for all features keeps the data's geometry (what k-means
        # sees) while bringing it to unit size for the network
        scale = torch.tensor(float(np.sqrt(np.mean(np.square(std64)))))
        _warn_if_outliers_dominate(data, float(scale), seed)
        transform = Standardize(mean, scale if scale > 0 else torch.ones_like(scale))
    return Preprocessing(transform, mean, std)


def build_encoder(encoder, encoder_kwargs, n_flat_features):
    """The encoder the ``encoder`` parameter names (a module instance is deep-copied)."""
    kwargs = dict(encoder_kwargs or {})
    if encoder == "mlp":
        return MLPEncoder(n_flat_features, **{**defaults.MLP_DEFAULTS, **kwargs})
    if encoder == "identity":
        return nn.Flatten()
    if isinstance(encoder, nn.Module):
        return copy.deepcopy(encoder)
    return encoder(**kwargs)


def build_module(params, preprocessing, sample_rows, device):
    """Encoder and cosine head in one :class:`~skclust_ot.nn.ClusterModule`.

    The head's width is the encoder's output width, read from a forward
    pass of two sample rows.
    """
    encoder = build_encoder(params.encoder, params.encoder_kwargs,
                            int(np.prod(sample_rows.shape[1:])))
    probe = ClusterModule(encoder, nn.Identity(), preprocessing.transform).to(device)
    probe.eval()
    with torch.no_grad():
        embedding_dim = probe.embed(sample_rows.to(device)).shape[1]
    head = CosineHead(embedding_dim, params.n_clusters, scale=params.head_scale)
    return ClusterModule(encoder, head, preprocessing.transform).to(device)


def build_pseudo_labeler(params, config, shards, *, graph=None, graph_features=None,
                         graph_transform=None):
    """The :class:`~skclust_ot.nn.PseudoLabeler` of this rank's rows.

    ``graph`` is the global kNN graph's rows of this rank (full scope);
    ``graph_features`` and ``graph_transform`` let the bank scope build
    graphs inside each bank.
    """
    return PseudoLabeler(
        shards.n_local,
        params.n_clusters,
        scope=config.scope,
        memory_size=config.memory_size,
        epsilon=params.epsilon,
        kl_weight=params.kl_weight,
        semantic_weight=config.semantic_weight,
        graph=graph,
        graph_features=graph_features,
        graph_transform=graph_transform,
        n_neighbors=params.n_neighbors,
        sigma=params.sigma,
        solver_kwargs={
            "max_iter": params.solver_max_iter,
            "tol": params.solver_tol,
            "method": params.solver_method,
            "mm_max_iter": params.mm_max_iter,
        },
        comm=shards.comm,
        n_samples_total=shards.n_total,
        index_offset=shards.offset,
        size_prior=params.size_prior,
        # a block's graph is worth keeping only if an epoch comes back to it
        keep_block_graphs=config.n_blocks < params.max_epochs,
    )


def build_callbacks(params):
    """The training's callbacks (mass schedule, statistics, lr decay), then the user's copies."""
    callbacks = [
        ("rho_scheduler", RhoScheduler(params.rho0, params.rho_schedule)),
        ("pseudo_label_stats", PseudoLabelStats()),
        ("full_data_pseudo_labels", FullDataPseudoLabels()),
        ("lr_scheduler", LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR,
                                     T_max=params.max_epochs)),
    ]
    if params.verbose >= 2 and importlib.util.find_spec("tqdm") is not None:
        callbacks.append(("progress_bar", ProgressBar()))
    for i, cb in enumerate(params.callbacks or []):
        name, obj = cb if isinstance(cb, tuple) else (f"user_callback_{i}", cb)
        callbacks.append((name, copy.deepcopy(obj)))
    return callbacks


def build_net(params, config, module, labeler, preprocessing, shards, device, *,
              neighbors=None, neighbor_data=None):
    """The :class:`~skclust_ot.nn.SP2OTNet` that trains ``module`` on ``labeler``'s targets.

    ``neighbors`` (n_samples × k indices) and ``neighbor_data`` (the rows
    they index) enable the neighbour views.
    """
    views = FeatureViews(preprocessing.view_mean, preprocessing.view_std,
                         noise=params.noise, mask_prob=params.mask_prob)
    return SP2OTNet(
        module,
        SoftTargetCrossEntropy,
        views=views,
        pseudo_labeler=labeler,
        optimizer=config.optimizer,
        lr=params.lr,
        max_epochs=params.max_epochs,
        train_split=None,
        callbacks=build_callbacks(params),
        neighbor_views=params.neighbor_views if neighbors is not None else 0.0,
        neighbors=neighbors,
        neighbor_data=neighbor_data,
        device=device,
        **shards.net_kwargs(config.batch_size, config.seed, params.verbose, config.epoch_rows,
                            config.n_blocks),
        **config.optimizer_kwargs,
    )
