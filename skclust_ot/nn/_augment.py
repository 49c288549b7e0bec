"""Feature-space views for tabular data and embeddings."""

import torch

__all__ = ["FeatureViews"]


class FeatureViews:
    """Random feature-space view of a batch: centred feature masking plus noise.

    A view of ``x`` is ``mean + (x - mean) * m / (1 - p) + noise * std * e``
    where ``m ~ Bernoulli(1 - p)`` per entry and ``e ~ N(0, 1)``. Masking
    moves a feature to its mean and rescales the kept deviations, so a view
    has the same mean as the data and the network's BatchNorm statistics
    learned on views still fit clean data at predict time. Noise is relative
    to each feature's standard deviation, so the view does not depend on the
    units of the features.

    Parameters
    ----------
    mean, std : array-like
        Per-entry mean and standard deviation of the training data (the shape
        of one sample).
    noise : float, default=0.1
        Gaussian noise level as a fraction of each feature's std.
    mask_prob : float, default=0.1
        Probability of masking each entry.

    Notes
    -----
    A plain object rather than an ``nn.Module``: it has no trainable state,
    and skorch reserves module attributes for its ``initialize_*`` methods.
    Randomness comes from torch's default generator, which the estimator
    seeds inside ``torch.random.fork_rng`` so that fits are reproducible
    without touching the caller's global random state.
    """

    def __init__(self, mean, std, noise=0.1, mask_prob=0.1):
        self.mean = torch.as_tensor(mean, dtype=torch.float32).clone()
        self.std = torch.as_tensor(std, dtype=torch.float32).clone()
        self.noise = float(noise)
        self.mask_prob = float(mask_prob)

    def to(self, device):
        """Move the statistics to ``device``, in place.

        Parameters
        ----------
        device : str or torch.device
            The device of the batches the views will be drawn from.

        Returns
        -------
        self : FeatureViews
            This object, with ``mean`` and ``std`` on ``device``.
        """
        self.mean = self.mean.to(device)
        self.std = self.std.to(device)
        return self

    def __call__(self, x):
        """Draw one random view of a batch.

        Each call draws a fresh mask and fresh noise (from torch's default
        generator); with ``mask_prob=0`` and ``noise=0`` the batch is
        returned unchanged.

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, ...)
            A batch of floating-point samples, each of the shape of ``mean``,
            on the device of the statistics (see :meth:`to`).

        Returns
        -------
        view : torch.Tensor
            The view, of the shape of ``x``; ``x`` itself is not modified.
        """
        out = x
        if self.mask_prob > 0:
            keep = torch.rand_like(x) >= self.mask_prob
            out = self.mean + (out - self.mean) * keep / (1.0 - self.mask_prob)
        if self.noise > 0:
            out = out + self.noise * self.std * torch.randn_like(x)
        return out
