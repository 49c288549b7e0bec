"""Neural-network layer: modules, views, pseudo-labelling and the skorch net."""

from ._augment import FeatureViews
from ._callbacks import FullDataPseudoLabels, PseudoLabelStats, RhoScheduler
from ._modules import ClusterModule, CosineHead, MLPEncoder, Standardize
from ._net import SoftTargetCrossEntropy, SP2OTNet
from ._pseudo import PseudoLabeler
from ._samplers import BlockSampler, PaddedShuffleSampler

__all__ = [
    "BlockSampler",
    "ClusterModule",
    "CosineHead",
    "FeatureViews",
    "FullDataPseudoLabels",
    "MLPEncoder",
    "PaddedShuffleSampler",
    "PseudoLabelStats",
    "PseudoLabeler",
    "RhoScheduler",
    "SP2OTNet",
    "SoftTargetCrossEntropy",
    "Standardize",
]
