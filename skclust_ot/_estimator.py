"""SP2OTClustering: the scikit-learn estimator (validation and orchestration)."""

import copy
import importlib.util
import math
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.manifold import spectral_embedding
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import LRScheduler, ProgressBar
from torch import nn

from .nn import (
    ClusterModule,
    CosineHead,
    FeatureViews,
    FullDataPseudoLabels,
    MLPEncoder,
    PaddedShuffleSampler,
    PseudoLabeler,
    PseudoLabelStats,
    RhoScheduler,
    SoftTargetCrossEntropy,
    SP2OTNet,
    Standardize,
)
from ._stats import (
    _STATS_CHUNK,
    _column_moments,
    _init_rows,
    _robust_statistics,
    _sample_rows,
    _torch_index,
    _warn_if_outliers_dominate,
)
from .ot import Communicator, knn_graph

__all__ = ["SP2OTClustering", "VARIANTS"]

#: Parameter settings that reproduce the paper's ablations with one estimator.
#: Use as ``SP2OTClustering(**VARIANTS["p2ot"])`` or ``est.set_params(**VARIANTS["uot"])``.
VARIANTS = {
    "sp2ot": {"semantic_weight": 0.02, "kl_weight": 1.0, "rho0": 0.1, "rho_schedule": "sigmoid"},
    "p2ot": {"semantic_weight": 0.0, "kl_weight": 1.0, "rho0": 0.1, "rho_schedule": "sigmoid"},
    "pot": {"semantic_weight": 0.0, "kl_weight": math.inf, "rho0": 0.1, "rho_schedule": "sigmoid"},
    "uot": {"semantic_weight": 0.0, "kl_weight": 1.0, "rho0": 1.0, "rho_schedule": "constant"},
    "balanced": {"semantic_weight": 0.0, "kl_weight": math.inf, "rho0": 1.0,
                 "rho_schedule": "constant"},
}

_OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
_MLP_DEFAULTS = {"hidden_dims": (256,), "embedding_dim": 64, "dropout": 0.0}
# Below this many samples the OT is solved over the whole data set once per
# epoch; above it, per step over a memory bank (DESIGN §6).
_FULL_SCOPE_MAX_SAMPLES = 20_000
_PREDICT_CHUNK = 8192


def _collectively(comm, func, *args, **kwargs):
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


def _resolve_device(device):
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


class SP2OTClustering(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin,
                      BaseEstimator):
    """Clustering of imbalanced data by semantic-regularized progressive partial OT.

    A small network (an encoder followed by a cosine head with one prototype
    per cluster) is trained on its own pseudo-labels. The pseudo-labels are
    the transport plan of SP²OT: a partial optimal transport of a growing
    fraction ``rho`` of the samples (the most confident ones first) onto
    clusters whose sizes may depart from uniform (KL relaxation), with a
    semantic term that pulls neighbouring samples towards the same cluster.
    Predictions are per sample (argmax of the head), so the model clusters
    new data without refitting.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters.
    encoder : {"mlp", "identity"}, torch.nn.Module class or instance, default="mlp"
        ``"mlp"``: a small MLP sized from the data (``encoder_kwargs``:
        ``hidden_dims``, ``embedding_dim``, ``dropout``). ``"identity"``:
        precomputed features (e.g. embeddings from a frozen encoder); only the
        cluster head trains. A module class is instantiated with
        ``encoder_kwargs``; a module instance is deep-copied (never trained
        in place). Custom encoders accept inputs of any shape (e.g. images).
    encoder_kwargs : dict, default=None
        Keyword arguments for the encoder.
    standardize : {"global", "feature", "none"}, default="global"
        Fixed input scaling inside the network (applied at predict too):
        ``"global"`` centres each feature and divides all by one common
        scale, which keeps the data's geometry (relative feature scales, as
        k-means sees them); ``"robust"`` does the same with outlier-proof
        statistics (per-feature medians, one scale from the interquartile
        ranges) and clips values beyond 10 robust standard deviations of
        their feature, so a few far outliers cannot squeeze the bulk of the
        data; ``"feature"`` divides each feature by its own
        standard deviation (as ``StandardScaler``); ``"none"`` passes the
        input unchanged.
    head_scale : float, default=10.0
        Logit scale of the cosine head (an inverse temperature).
    max_epochs : int, default=50
        Training epochs.
    batch_size : int, default=256
        Mini-batch size (capped at the number of samples).
    lr : float, default=1e-4
        Learning rate; decays with a cosine schedule over ``max_epochs``.
        Chosen by the quality benchmark: the start (spectral or k-means) is
        already a good partition, and 1e-4 keeps more of it than 1e-3 while
        the pseudo-labels still move the tail clusters (mean balanced
        accuracy 0.705 vs 0.701, macro-F1 0.684 vs 0.678 over 6 cases × 3
        seeds; also +0.004 / +0.006 with the k-means start).
    optimizer : {"adam", "adamw", "sgd"} or torch optimizer class, default="adam"
    optimizer_kwargs : dict, default=None
        Extra optimizer arguments (e.g. ``{"weight_decay": 1e-4}``).
    rho0 : float, default=0.1
        Initial fraction of the mass transported (``rho`` at step 0).
    rho_schedule : {"sigmoid", "linear", "constant"}, default="sigmoid"
        How ``rho`` grows to 1 over the optimizer steps.
    epsilon : float, default=0.1
        Entropic regularization of the OT problem.
    kl_weight : float, default=1.0
        Weight λ of the KL term on cluster sizes; ``math.inf`` forces equal
        sizes (balanced OT).
    semantic_weight : float, default=0.02
        Weight of the SP²OT semantic (kNN-graph) term, in units of the
        scaled plan ``N·Q``; it fades as ``(1 - rho)``. ``0`` gives P²OT.
        The paper's λ_s0 = 1000 at a 5120-sample bank corresponds to 0.2;
        the default is ten times lower, chosen by the quality benchmark
        (0.2 and 0.1 hurt text embeddings and penguins, 0.02 helped every
        case tried; see ``docs/quality_benchmark.md``).
    n_neighbors : int, default=10
        Neighbours in the kNN graph (semantic term, spectral start,
        neighbour views). 10 rather than the paper's 20 keeps small tail
        clusters from being wired into their big neighbours.
    sigma : float, default=2.0
        Gaussian kernel width of the graph, ``exp(-d²/(2 σ² n_features))``.
    ot_scope : {"auto", "full", "bank"}, default="auto"
        ``"full"``: one OT problem over all samples per view per epoch;
        ``"bank"``: per step over a memory bank of recent logits. ``"auto"``
        uses ``"full"`` up to 20,000 samples.
    memory_size : int, default=None
        Bank size for ``"bank"`` (default ``10 * batch_size``).
    solver_max_iter : int, default=1000
        Scaling iterations per OT solve.
    solver_tol : float, default=1e-6
        Row-marginal error at which a solve stops.
    solver_method : {"auto", "scaling", "log"}, default="auto"
        OT solver path (see :func:`skclust_ot.ot.p2ot`).
    mm_max_iter : int, default=10
        Majorization-minimization steps of the semantic term per solve.
    noise : float, default=0.1
        Gaussian noise of the training views, relative to each feature's std.
    mask_prob : float, default=0.1
        Probability of masking an entry in the training views.
    neighbor_views : float, default=0.0
        Probability that a sample's second training view shows one of its
        ``n_neighbors`` nearest neighbours (in the scaled input space)
        instead of itself, each supervised by the other's pseudo-label
        (neighbour consistency). Used with the ``"full"`` OT scope.
    init : {"auto", "kmeans", "spectral", "random"}, default="auto"
        How training starts. ``"auto"``: ``"spectral"`` up to 20,000
        samples, ``"kmeans"`` above (the spectral embedding needs an exact
        kNN graph and an eigensolver). ``"kmeans"``: k-means in the scaled input space,
        and the head fitted to reproduce that partition (prevents lost
        clusters). ``"spectral"``: the encoder is first taught the spectral
        embedding of the kNN graph (an inductive, graph-aware start), and
        the head reproduces spectral clustering's partition. ``"random"``:
        random prototypes.
    device : str, default="auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    distributed : bool, default=False
        Data-parallel training over the processes of ``torch.distributed``
        (the default process group must be initialized, e.g. in a script
        launched with ``torchrun``). Every rank calls ``fit`` with its own
        shard of rows (shards may differ in size) and the same parameters.
        Gradients are averaged by ``DistributedDataParallel``; each rank's
        batch is ``batch_size // world_size`` rows, so the global batch stays
        ``batch_size``; the pseudo-labels stay global (the OT problem covers
        the logits of all ranks). The start (scaling statistics, k-means or
        spectral init, kNN graph) uses the rows of all ranks, gathered once,
        so each rank needs memory for the whole data. ``labels_`` holds the
        local shard's labels; the fitted model is the same on every rank and
        predicts without a process group. An invalid input on one rank
        raises on all ranks. Not combinable with ``neighbor_views``. See the
        "Scaling up" page of the documentation.
    callbacks : list of skorch callbacks, default=None
        Extra callbacks (or ``(name, callback)`` pairs), copied before use.
    verbose : int, default=0
        ``1`` prints one line per epoch (loss, ``rho``, solver iterations and
        non-converged solves, clusters in use, time); ``2`` adds skorch's
        per-batch progress bar (when ``tqdm`` is installed).
    random_state : int, RandomState instance or None, default=None
        Seeds the network, views, shuffling and k-means. The caller's global
        numpy and torch random states are left untouched.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample.
    cluster_weights_ : ndarray of shape (n_clusters,)
        Cluster-size distribution of the last pseudo-labelling plan.
    net_ : skclust_ot.nn.SP2OTNet
        The fitted skorch net.
    history_ : skorch.history.History
        Per-epoch training history (``train_loss``, ``rho``, ``ot_iter``...).
    n_iter_ : int
        Epochs run.
    device_ : str
        Device actually used.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape ``(n_features_in_,)``
        Names of features seen during fit (only for inputs with string
        column names).

    See Also
    --------
    skclust_ot.ot.sp2ot : The pseudo-labelling solver, usable on its own.
    sklearn.cluster.KMeans : Centroid clustering; tends to split large groups.

    Notes
    -----
    The paper's ablations are parameter settings, collected in
    :data:`skclust_ot.VARIANTS`: balanced OT (``rho0=1``, constant,
    ``kl_weight=inf``), UOT (``rho0=1``, constant), POT (``kl_weight=inf``),
    P²OT (``semantic_weight=0``) and SP²OT (the default).

    References
    ----------
    Zhang, Ren, He. "P²OT: Progressive Partial Optimal Transport for Deep
    Imbalanced Clustering", ICLR 2024; and its extension "SP²OT", 2024
    (arXiv:2404.03446).

    Examples
    --------
    >>> import numpy as np
    >>> from skclust_ot import SP2OTClustering
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (90, 2)), rng.normal(8, 1, (10, 2))])
    >>> est = SP2OTClustering(n_clusters=2, max_epochs=5, random_state=0)
    >>> labels = est.fit_predict(X)
    >>> np.unique(labels).tolist()
    [0, 1]
    >>> est.predict_proba(X[:2]).shape
    (2, 2)
    """

    _parameter_constraints = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "encoder": [StrOptions({"mlp", "identity"}), nn.Module, type],
        "encoder_kwargs": [dict, None],
        "standardize": [StrOptions({"global", "robust", "feature", "none"})],
        "head_scale": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "optimizer": [StrOptions(set(_OPTIMIZERS)), type],
        "optimizer_kwargs": [dict, None],
        "rho0": [Interval(Real, 0, 1, closed="right")],
        "rho_schedule": [StrOptions({"sigmoid", "linear", "constant"})],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "kl_weight": [Interval(Real, 0, None, closed="neither"), Options(Real, {math.inf})],
        "semantic_weight": [Interval(Real, 0, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "sigma": [Interval(Real, 0, None, closed="neither")],
        "ot_scope": [StrOptions({"auto", "full", "bank"})],
        "memory_size": [Interval(Integral, 1, None, closed="left"), None],
        "solver_max_iter": [Interval(Integral, 1, None, closed="left")],
        "solver_tol": [Interval(Real, 0, None, closed="neither")],
        "solver_method": [StrOptions({"auto", "scaling", "log"})],
        "mm_max_iter": [Interval(Integral, 1, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "mask_prob": [Interval(Real, 0, 1, closed="left")],
        "neighbor_views": [Interval(Real, 0, 1, closed="both")],
        "init": [StrOptions({"auto", "kmeans", "spectral", "random"})],
        "device": [str],
        "distributed": ["boolean"],
        "callbacks": [list, None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        encoder="mlp",
        encoder_kwargs=None,
        standardize="global",
        head_scale=10.0,
        max_epochs=50,
        batch_size=256,
        lr=1e-4,
        optimizer="adam",
        optimizer_kwargs=None,
        rho0=0.1,
        rho_schedule="sigmoid",
        epsilon=0.1,
        kl_weight=1.0,
        semantic_weight=0.02,
        n_neighbors=10,
        sigma=2.0,
        ot_scope="auto",
        memory_size=None,
        solver_max_iter=1000,
        solver_tol=1e-6,
        solver_method="auto",
        mm_max_iter=10,
        noise=0.1,
        mask_prob=0.1,
        neighbor_views=0.0,
        init="auto",
        device="auto",
        distributed=False,
        callbacks=None,
        verbose=0,
        random_state=None,
    ):
        self.n_clusters = n_clusters
        self.encoder = encoder
        self.encoder_kwargs = encoder_kwargs
        self.standardize = standardize
        self.head_scale = head_scale
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.optimizer = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        self.rho0 = rho0
        self.rho_schedule = rho_schedule
        self.epsilon = epsilon
        self.kl_weight = kl_weight
        self.semantic_weight = semantic_weight
        self.n_neighbors = n_neighbors
        self.sigma = sigma
        self.ot_scope = ot_scope
        self.memory_size = memory_size
        self.solver_max_iter = solver_max_iter
        self.solver_tol = solver_tol
        self.solver_method = solver_method
        self.mm_max_iter = mm_max_iter
        self.noise = noise
        self.mask_prob = mask_prob
        self.neighbor_views = neighbor_views
        self.init = init
        self.device = device
        self.distributed = distributed
        self.callbacks = callbacks
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ #
    # validation helpers
    # ------------------------------------------------------------------ #
    def _custom_encoder(self):
        return not isinstance(self.encoder, str)

    def _validate_X(self, X, reset):
        X = validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=False,
            dtype=[np.float32, np.float64],
            ensure_min_samples=2 if reset else 1,
            allow_nd=self._custom_encoder(),
        )
        if reset:
            self._sample_shape = X.shape[1:]
        elif X.shape[1:] != self._sample_shape:
            raise ValueError(
                f"X has samples of shape {X.shape[1:]} (features per sample), but "
                f"{type(self).__name__} was fitted on samples of shape {self._sample_shape}."
            )
        return X

    def _check_params_vs_input(self, X, n_samples=None):
        if n_samples is None:
            n_samples = X.shape[0]
        if self.distributed and self.neighbor_views > 0:
            raise ValueError(
                "neighbor_views > 0 is not supported with distributed=True (a sample's "
                "neighbours may live on another rank); set neighbor_views=0."
            )
        if n_samples < self.n_clusters:
            raise ValueError(
                f"n_samples={n_samples} should be >= n_clusters={self.n_clusters}."
            )
        if isinstance(self.encoder, type) and not issubclass(self.encoder, nn.Module):
            raise ValueError(
                f"encoder={self.encoder!r} is a class but not a torch.nn.Module subclass; "
                "pass 'mlp', 'identity', a torch.nn.Module subclass or an instance."
            )
        if not self._custom_encoder() and X.ndim != 2:
            raise ValueError(
                f"encoder={self.encoder!r} expects 2-D input, got {X.ndim}-D; pass a "
                "custom torch.nn.Module encoder for images or other shapes."
            )
        kwargs = self.encoder_kwargs or {}
        if self.encoder == "mlp":
            unknown = set(kwargs) - set(_MLP_DEFAULTS)
            if unknown:
                raise ValueError(
                    f"Unknown encoder_kwargs for encoder='mlp': {sorted(unknown)}; "
                    f"valid keys are {sorted(_MLP_DEFAULTS)}."
                )
        elif (self.encoder == "identity" or isinstance(self.encoder, nn.Module)) and kwargs:
            raise ValueError(
                "encoder_kwargs must be empty when encoder is 'identity' or a module "
                "instance (configure the instance itself)."
            )
        if isinstance(self.optimizer, type) and not issubclass(self.optimizer,
                                                               torch.optim.Optimizer):
            raise ValueError(
                f"optimizer={self.optimizer!r} is not a torch.optim.Optimizer subclass; "
                f"use one of {sorted(_OPTIMIZERS)} or an optimizer class."
            )
        for cb in self.callbacks or []:
            obj = cb[1] if isinstance(cb, tuple) else cb
            if not hasattr(obj, "on_epoch_end"):
                raise ValueError(
                    f"callbacks must be skorch callbacks or (name, callback) pairs; got {cb!r}."
                )

    # ------------------------------------------------------------------ #
    # building blocks
    # ------------------------------------------------------------------ #
    def _build_encoder(self, n_flat_features):
        kwargs = dict(self.encoder_kwargs or {})
        if self.encoder == "mlp":
            params = {**_MLP_DEFAULTS, **kwargs}
            return MLPEncoder(n_flat_features, **params)
        if self.encoder == "identity":
            return nn.Flatten()
        if isinstance(self.encoder, nn.Module):
            return copy.deepcopy(self.encoder)
        return self.encoder(**kwargs)

    @staticmethod
    @torch.no_grad()
    def _calibrate_batchnorm(module, X, device, chunk=_PREDICT_CHUNK):
        """Set BatchNorm running statistics to the exact data statistics.

        Makes eval-mode embeddings (used to fit the initial prototypes) match
        what training sees from its first step.
        """
        norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the chunks
        module.train()
        for i in range(0, X.shape[0], chunk):
            if X[i:i + chunk].shape[0] > 1:
                module.embed(X[i:i + chunk].to(device))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        module.eval()

    @staticmethod
    @torch.no_grad()
    def _embed_all(module, X, device, chunk=_PREDICT_CHUNK):
        module.eval()
        out = None
        for i in range(0, X.shape[0], chunk):
            z = module.embed(X[i:i + chunk].to(device))
            if out is None:  # one preallocated result, no list of chunks
                out = torch.empty((X.shape[0],) + z.shape[1:], dtype=z.dtype, device=z.device)
            out[i:i + z.shape[0]] = z
        return out

    def _kmeans_labels(self, features, seed):
        """k-means (Euclidean) labels of the preprocessed, flattened input."""
        if features.shape[0] > _FULL_SCOPE_MAX_SAMPLES:
            # float32 as given: a float64 copy would double the data's memory
            data = features.cpu().numpy()
            km = MiniBatchKMeans(self.n_clusters, n_init=3, random_state=seed,
                                 batch_size=4096)
        else:
            data = features.double().cpu().numpy()
            km = KMeans(self.n_clusters, n_init=10, random_state=seed)
        with warnings.catch_warnings():
            # Duplicate points may give fewer distinct centroids; the OT
            # balancing separates the prototypes during training.
            warnings.simplefilter("ignore", ConvergenceWarning)
            return km.fit_predict(data)

    def _spectral_embedding(self, knn, seed):
        """Spectral embedding of the symmetrized kNN connectivity graph.

        ``n_clusters`` leading eigenvectors of the normalized graph Laplacian
        (scikit-learn's ``spectral_embedding``), as spectral clustering uses;
        only the graph's edges count, not its kernel weights.
        """
        n_samples = knn.shape[0]
        rows, cols = knn.indices().cpu().numpy()
        adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)),
                                  shape=(n_samples, n_samples))
        adjacency = 0.5 * (adjacency + adjacency.T)
        with warnings.catch_warnings():
            # a disconnected graph still gives a usable embedding
            warnings.simplefilter("ignore", UserWarning)
            return spectral_embedding(adjacency, n_components=self.n_clusters,
                                      drop_first=False, random_state=seed)

    def _fit_encoder_to(self, module, X_t, target, device, n_epochs=30, batch_size=256):
        """Teach the encoder a target embedding (here: the spectral one).

        Mean-squared regression through a temporary linear read-out, so the
        encoder becomes an inductive map to graph-aware features: new samples
        get them without the graph. Only for encoders with parameters.
        """
        params = list(module.encoder.parameters())
        if not params:
            return
        target = torch.as_tensor(target, dtype=torch.float32)
        target = (target - target.mean(0)) / target.std(0).clamp_min(1e-12)
        target = target.to(device)
        readout = nn.Linear(module.head.weight.shape[1], target.shape[1]).to(device)
        optimizer = torch.optim.Adam(params + list(readout.parameters()), lr=1e-3)
        n_samples = X_t.shape[0]
        module.train()
        for _ in range(n_epochs):
            order = torch.randperm(n_samples)
            for start in range(0, n_samples, batch_size):
                batch = order[start:start + batch_size]
                if batch.numel() < 2:
                    continue
                optimizer.zero_grad()
                pred = readout(module.embed(X_t[batch].to(device)))
                loss = torch.nn.functional.mse_loss(pred, target[batch.to(device)])
                loss.backward()
                optimizer.step()
        module.eval()

    @staticmethod
    def _prototypes_from_labels(embeddings, labels, n_clusters):
        """Mean direction of each cluster's normalized embeddings.

        k-means runs in the input space, where Euclidean geometry is
        meaningful; the cosine head then starts from the mean direction of
        each k-means cluster's embeddings, so its first argmax reproduces the
        k-means partition as closely as the initial encoder allows.
        """
        emb = torch.nn.functional.normalize(embeddings.double(), dim=1)
        labels = torch.as_tensor(labels, device=emb.device)
        protos = torch.zeros(n_clusters, emb.shape[1], dtype=emb.dtype, device=emb.device)
        protos.index_add_(0, labels, emb)
        counts = torch.bincount(labels, minlength=n_clusters)
        for k in torch.nonzero(counts == 0).flatten().tolist():
            protos[k] = emb[k % emb.shape[0]]
        return protos

    def _fit_prototypes(self, head, embeddings, labels, n_steps=100):
        """Refine the head so its argmax reproduces the k-means partition.

        Starts from the mean directions, then a short full-batch fit of the
        cosine head alone (cross-entropy to the k-means labels) on the
        initial, fixed embeddings. Training then starts from the k-means
        partition instead of an approximation of it.
        """
        head.set_prototypes(self._prototypes_from_labels(embeddings, labels, self.n_clusters))
        target = torch.as_tensor(labels, dtype=torch.long, device=embeddings.device)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(n_steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(embeddings), target)
            loss.backward()
            optimizer.step()

    # ------------------------------------------------------------------ #
    # fit / predict
    # ------------------------------------------------------------------ #
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the network on SP²OT pseudo-labels and label the data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (any shape ``(n_samples, ...)`` with a custom
            encoder). Never modified.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : SP2OTClustering
            Fitted estimator.
        """
        comm = self._communicator() if self.distributed else None
        X = _collectively(comm, self._validate_X, X, reset=True)
        n_total = X.shape[0]
        if comm is not None:
            n_total = sum(comm.sizes(X.shape[0]))
            _collectively(comm, self._check_same_shape, comm)
        _collectively(comm, self._check_params_vs_input, X, n_total)
        device = _collectively(comm, _resolve_device, self.device)

        if self.random_state is None:
            seed = int(np.random.default_rng().integers(np.iinfo(np.int32).max))
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        if comm is not None:  # rank 0's seed everywhere
            seed = int(comm.sum(torch.tensor([float(seed if comm.rank == 0 else 0)]))[0])

        fork_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(seed)
            net, labeler = self._fit_net(X, device, seed, comm)

        # Assign fitted state only once training finished: an interrupted
        # fit leaves a previous fit (or the unfitted estimator) untouched.
        weights = labeler.column_weights()
        labeler.release()
        self.net_ = net
        self.history_ = net.history
        self.n_iter_ = len(net.history)
        self.device_ = device
        self._n_features_out = self.n_clusters
        self.cluster_weights_ = (
            weights.numpy() if weights is not None
            else np.full(self.n_clusters, 1.0 / self.n_clusters)
        )
        self.labels_ = self._predict_labels(X)
        n_found = np.unique(self.labels_).size
        if n_found < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({n_found}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points "
                "in X or too few epochs.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _validate_params(self):
        # With distributed=True an invalid parameter on one rank is raised on
        # every rank (sklearn validates before fit's body, where the others
        # would otherwise wait in a collective).
        if self.distributed is not True:
            return super()._validate_params()
        try:
            comm = self._communicator()
        except ValueError:
            return super()._validate_params()  # fit reports the missing group
        return _collectively(comm, super()._validate_params)

    def _communicator(self):
        try:
            return Communicator()
        except RuntimeError as exc:
            raise ValueError(
                "distributed=True needs torch.distributed's default process group: call "
                "torch.distributed.init_process_group(...) in every process first (e.g. "
                "in a script launched with torchrun), or set distributed=False."
            ) from exc

    def _check_same_shape(self, comm):
        shapes = [None] * comm.world_size
        torch.distributed.all_gather_object(shapes, tuple(self._sample_shape), group=comm.group)
        if len(set(shapes)) > 1:
            raise ValueError(
                f"X has samples of different shapes on different ranks: {shapes} "
                "(rank order); every rank must pass rows of the same data set."
            )

    def _fit_net(self, X, device, seed, comm=None):
        n_local = X.shape[0]
        with warnings.catch_warnings():
            # float64 data beyond the float32 range overflow here; reported below
            warnings.simplefilter("ignore", RuntimeWarning)
            X_local = torch.from_numpy(np.array(X, dtype=np.float32))

        def check_range():
            if not all(torch.isfinite(X_local[i:i + _STATS_CHUNK]).all()
                       for i in range(0, n_local, _STATS_CHUNK)):
                raise ValueError(
                    "X has values beyond the float32 range (about ±3.4e38) used for "
                    "training; rescale the data (e.g. with StandardScaler) first."
                )
        _collectively(comm, check_range)
        offset, n_rows_max = 0, n_local
        if comm is None:
            X_t = X_local
            X_stats = X  # the caller's values: float64 input keeps its precision
        else:
            # the start (statistics, init, kNN graph) sees the rows of all ranks
            sizes = comm.sizes(n_local)
            offset, n_rows_max = sum(sizes[: comm.rank]), max(sizes)
            X_t = comm.gather_rows(X_local, sizes)
            X_stats = X_t.numpy()
        n_samples = X_t.shape[0]
        # Statistics in float64: the variance of data at 1e±30 scales
        # overflows or underflows in float32.
        mean64, std64 = _column_moments(X_stats)
        mean = torch.from_numpy(mean64).float()
        std = torch.from_numpy(std64).float()
        std = torch.where(torch.isfinite(std), std, torch.zeros_like(std))

        preprocess = None
        if self.standardize == "robust":
            # quantiles from at most 200,000 rows (exact below)
            centre, scale, low, high = _robust_statistics(_sample_rows(X_stats, 200_000, seed))
            preprocess = Standardize(centre, scale, (low - centre) / scale,
                                     (high - centre) / scale)
            # the training views' noise follows the clipped data's spread
            clip_mean, clip_std = _column_moments(X_stats, low, high)
            mean = torch.from_numpy(clip_mean).float()
            std = torch.from_numpy(clip_std).float()
        elif self.standardize == "feature":
            preprocess = Standardize(mean, torch.where(std > 0, std, torch.ones_like(std)))
        elif self.standardize == "global":
            # one scale for all features keeps the data's geometry (what
            # k-means sees) while bringing it to unit size for the network
            scale = torch.tensor(float(np.sqrt(np.mean(np.square(std64)))))
            _warn_if_outliers_dominate(X_stats, float(scale), seed)
            preprocess = Standardize(mean, scale if scale > 0 else torch.ones_like(scale))
        encoder = self._build_encoder(int(np.prod(X.shape[1:])))
        probe = ClusterModule(encoder, nn.Identity(), preprocess).to(device)
        probe.eval()
        with torch.no_grad():
            embedding_dim = probe.embed(X_t[:2].to(device)).shape[1]
        head = CosineHead(embedding_dim, self.n_clusters, scale=self.head_scale)
        module = ClusterModule(encoder, head, preprocess).to(device)

        inputs = preprocess(X_t) if preprocess is not None else X_t
        inputs = inputs.reshape(n_samples, -1).to(device)
        scope = self.ot_scope
        if scope == "auto":
            scope = "full" if n_samples <= _FULL_SCOPE_MAX_SAMPLES else "bank"
        init = self.init
        if init == "auto":
            init = "spectral" if n_samples <= _FULL_SCOPE_MAX_SAMPLES else "kmeans"
        if init == "spectral" and n_samples < 2 * self.n_clusters + 2:
            # too few samples for a meaningful kNN-graph eigenproblem
            init = "kmeans"
        use_neighbors = self.neighbor_views > 0 and scope == "full" and n_samples > 1
        # One exact kNN graph (the O(N²d) step) serves the spectral start and,
        # in the full-data scope, the semantic term and the neighbour views.
        knn = None
        if init == "spectral" or (scope == "full"
                                  and (self.semantic_weight > 0 or use_neighbors)):
            knn = knn_graph(inputs, self.n_neighbors, sigma=self.sigma).coalesce()

        if init == "kmeans":
            labels = self._kmeans_labels(inputs, seed)
            self._calibrate_batchnorm(module, X_t, device)
            rows = _init_rows(labels, self.n_clusters, seed)
            embeddings = self._embed_all(module, X_t[_torch_index(rows)], device)
            self._fit_prototypes(head, embeddings, labels[rows])
        elif init == "spectral":
            spectral = self._spectral_embedding(knn, seed)
            labels = self._kmeans_labels(torch.from_numpy(spectral), seed)
            self._fit_encoder_to(module, X_t, spectral, device)
            self._calibrate_batchnorm(module, X_t, device)
            rows = _init_rows(labels, self.n_clusters, seed)
            embeddings = self._embed_all(module, X_t[_torch_index(rows)], device)
            self._fit_prototypes(head, embeddings, labels[rows])

        batch_size = min(self.batch_size, n_samples)
        memory_size = self.memory_size or 10 * batch_size

        graph = knn if scope == "full" and self.semantic_weight > 0 else None
        if comm is not None and graph is not None:  # this rank's rows of the global graph
            graph = graph.index_select(0, torch.arange(offset, offset + n_local))
        # the bank scope builds small graphs inside each bank from the scaled
        # rows of the bank, scaled on the fly (no scaled copy of all data held)
        graph_features = X_t if scope == "bank" and self.semantic_weight > 0 else None
        graph_transform = preprocess if graph_features is not None else None
        del inputs
        neighbors = knn.indices()[1].reshape(n_samples, -1) if use_neighbors else None

        labeler = PseudoLabeler(
            n_local,
            self.n_clusters,
            scope=scope,
            memory_size=memory_size,
            epsilon=self.epsilon,
            kl_weight=self.kl_weight,
            semantic_weight=self.semantic_weight,
            graph=graph,
            graph_features=graph_features,
            graph_transform=graph_transform,
            n_neighbors=self.n_neighbors,
            sigma=self.sigma,
            solver_kwargs={
                "max_iter": self.solver_max_iter,
                "tol": self.solver_tol,
                "method": self.solver_method,
                "mm_max_iter": self.mm_max_iter,
            },
            comm=comm,
            n_samples_total=n_samples,
            index_offset=offset,
        )
        callbacks = [
            ("rho_scheduler", RhoScheduler(self.rho0, self.rho_schedule)),
            ("pseudo_label_stats", PseudoLabelStats()),
            ("full_data_pseudo_labels", FullDataPseudoLabels()),
            ("lr_scheduler", LRScheduler(torch.optim.lr_scheduler.CosineAnnealingLR,
                                         T_max=self.max_epochs)),
        ]
        if self.verbose >= 2 and importlib.util.find_spec("tqdm") is not None:
            callbacks.append(("progress_bar", ProgressBar()))
        for i, cb in enumerate(self.callbacks or []):
            name, obj = cb if isinstance(cb, tuple) else (f"user_callback_{i}", cb)
            callbacks.append((name, copy.deepcopy(obj)))

        optimizer = self.optimizer
        if isinstance(optimizer, str):
            optimizer = _OPTIMIZERS[optimizer]
        optimizer_kwargs = {f"optimizer__{k}": v for k, v in (self.optimizer_kwargs or {}).items()}
        parallel_kwargs = {"iterator_train__shuffle": True}
        verbose = self.verbose
        if comm is not None:
            # the global batch stays batch_size; every rank takes as many steps
            batch_size = max(1, batch_size // comm.world_size)
            parallel_kwargs = {
                "ddp": True,
                "iterator_train__shuffle": False,
                "iterator_train__sampler": PaddedShuffleSampler(
                    n_local, n_rows_max, seed + 104729 * (comm.rank + 1)),
            }
            verbose = verbose if comm.rank == 0 else 0

        net = SP2OTNet(
            module,
            SoftTargetCrossEntropy,
            views=FeatureViews(mean, std, noise=self.noise, mask_prob=self.mask_prob),
            pseudo_labeler=labeler,
            optimizer=optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=batch_size,
            train_split=None,
            callbacks=callbacks,
            neighbor_views=self.neighbor_views if neighbors is not None else 0.0,
            neighbors=neighbors,
            neighbor_data=X_t if neighbors is not None else None,
            verbose=verbose,
            device=device,
            **parallel_kwargs,
            **optimizer_kwargs,
        )
        net.fit(X_local, torch.arange(n_local))
        net.finish_ddp(None if comm is None else comm.group)
        net.module_.eval()
        # Keep no device tensors outside skorch's CUDA-aware attributes
        # (module_, optimizer_, criterion_), so that a model fitted on a GPU
        # unpickles on a CPU-only machine.
        net.neighbors = None
        net.neighbor_data = None
        net.views_ = net.views
        return net, labeler

    @torch.no_grad()
    def _iter_logits(self, X):
        module = self.net_.module_
        module.eval()
        for start in range(0, X.shape[0], _PREDICT_CHUNK):
            rows = slice(start, start + _PREDICT_CHUNK)
            # a fresh float32 copy: never hands torch a read-only buffer
            chunk = torch.from_numpy(np.array(X[rows], dtype=np.float32))
            if not torch.isfinite(chunk).all():
                raise ValueError(
                    "X has values beyond the float32 range (about ±3.4e38) used by "
                    "the network; rescale the data as it was for fit."
                )
            yield rows, module(chunk.to(self.device_)).cpu()

    def _predict_labels(self, X):
        # Fill a preallocated array: keeping many small per-chunk results
        # alive between the chunks' large temporaries fragmented the heap
        # (RSS grew by 2.4x the input on 1e6 x 64 before this).
        labels = np.empty(X.shape[0], dtype=np.int64)
        for rows, z in self._iter_logits(X):
            labels[rows] = z.argmax(dim=1).numpy()
        return labels

    def predict(self, X):
        """Cluster of each sample (argmax of the head; no balancing across X).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Index of the cluster each sample belongs to.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._predict_labels(X)

    def predict_proba(self, X):
        """Soft cluster assignments (softmax of the head's logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to 1.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        proba = np.empty((X.shape[0], self.n_clusters), dtype=np.float64)
        for rows, z in self._iter_logits(X):
            proba[rows] = torch.softmax(z.double(), dim=1).numpy()
        return proba

    def transform(self, X):
        """Soft cluster assignments, as :meth:`predict_proba`.

        Provided so the estimator works as a transformer in pipelines and
        with ``set_output(transform="pandas")``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
        """
        return self.predict_proba(X)

    def score(self, X, y=None):
        """Mean log-probability of each sample's assigned cluster.

        Higher is better (more confident assignments); 0 is the maximum.
        Comparable between models with the same ``n_clusters`` only.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        total = 0.0
        for _, z in self._iter_logits(X):
            total += torch.log_softmax(z.double(), dim=1).max(dim=1).values.sum().item()
        return total / X.shape[0]

    def __setstate__(self, state):
        super().__setstate__(state)
        net = self.__dict__.get("net_")
        if net is not None and str(net.device) != getattr(self, "device_", None):
            # skorch mapped a CUDA-fitted net to the CPU (no CUDA here): follow it
            self.device_ = str(net.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags
