"""Sparse k-nearest-neighbour graph with Gaussian weights (the SP²OT semantic graph)."""

import torch

from ._validation import _all_finite_tensor, _check_int, _check_real

__all__ = ["knn_graph"]


@torch.no_grad()
def knn_graph(features, n_neighbors=20, *, sigma=2.0, chunk_size=4096):
    r"""Exact k-nearest-neighbour graph as a sparse N×N tensor.

    Parameters
    ----------
    features : torch.Tensor of shape (n_samples, n_features)
        Floating-point features; the graph has the same dtype and device.
    n_neighbors : int, default=20
        Neighbours per sample, excluding the sample itself. Reduced to
        ``n_samples - 1`` when there are fewer samples.
    sigma : float, default=2.0
        Bandwidth of the Gaussian weights, > 0.
    chunk_size : int, default=4096
        Rows of the distance matrix computed at once; memory is
        O(chunk_size × n_samples), never n_samples × n_samples.

    Returns
    -------
    graph : torch.Tensor
        Coalesced sparse COO tensor of shape (n_samples, n_samples) with
        exactly ``min(n_neighbors, n_samples - 1)`` entries per row:
        :math:`S_{ij} = \exp(-\|x_i - x_j\|^2 / (2\sigma^2 d))` for the
        neighbours j of i, d the number of features. Not symmetric.

    Notes
    -----
    Squared distances are computed as
    :math:`\|x_i\|^2 + (\|x_j\|^2 - 2 x_i^\top x_j)` with one fused matrix
    product per chunk (neighbours are ranked by the bracket, which has the
    same order) and clamped at 0, so they carry the rounding of that
    expansion. The cost is O(N² d) time in matrix products and
    O(chunk_size × N) memory. The sample
    itself is excluded by index: exact duplicates of a sample are still
    neighbours (with weight 1). Ties are broken by ``torch.topk``.

    Examples
    --------
    >>> import torch
    >>> from skclust_ot.ot import knn_graph
    >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    >>> graph = knn_graph(x, n_neighbors=1, sigma=1.0)
    >>> graph.indices().tolist()
    [[0, 1, 2, 3], [1, 0, 1, 2]]
    >>> [round(w, 4) for w in graph.values().tolist()]
    [0.6065, 0.6065, 0.1353, 0.0]
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}.")
    if features.ndim != 2:
        raise ValueError(
            f"features must be 2-D (n_samples, n_features), got shape {tuple(features.shape)}."
        )
    if not features.is_floating_point():
        raise ValueError(
            f"features must have a floating-point dtype, got {features.dtype}; "
            "convert them with features.float()."
        )
    n_samples, n_features = features.shape
    if n_features < 1:
        raise ValueError("features must have at least one column.")
    if not _all_finite_tensor(features):
        raise ValueError("features contain NaN or inf.")
    n_neighbors = _check_int(n_neighbors, "n_neighbors", low=1)
    sigma = _check_real(sigma, "sigma", low=0.0)
    chunk_size = _check_int(chunk_size, "chunk_size", low=1)
    n_neighbors = min(n_neighbors, n_samples - 1)

    device, dtype = features.device, features.dtype
    if n_neighbors == 0:
        return torch.sparse_coo_tensor(
            torch.zeros((2, 0), dtype=torch.long, device=device),
            torch.zeros(0, dtype=dtype, device=device),
            (n_samples, n_samples),
            check_invariants=False,
        ).coalesce()

    squared_norms = (features * features).sum(dim=1)
    chunk_size = min(chunk_size, n_samples)
    # one distance buffer for all chunks: fresh multi-GB allocations page-fault
    buffer = torch.empty((chunk_size, n_samples), dtype=dtype, device=device)
    rows, cols, sq_dists = [], [], []
    for start in range(0, n_samples, chunk_size):
        stop = min(start + chunk_size, n_samples)
        chunk = features[start:stop]
        # |x_j|^2 - 2 x_i.x_j in one product: the row constant |x_i|^2 does not
        # change the ranking and is added to the k selected entries only
        part = torch.addmm(squared_norms[None, :], chunk, features.T, beta=1.0, alpha=-2.0,
                           out=buffer[: stop - start])
        local = torch.arange(stop - start, device=device)
        part[local, local + start] = float("inf")  # the sample itself, by index
        dist, idx = torch.topk(part, n_neighbors, dim=1, largest=False, sorted=False)
        dist.add_(squared_norms[start:stop, None]).clamp_(min=0.0)
        rows.append((local + start)[:, None].expand(-1, n_neighbors).reshape(-1))
        cols.append(idx.reshape(-1))
        sq_dists.append(dist.reshape(-1))
    indices = torch.stack([torch.cat(rows), torch.cat(cols)])
    weights = torch.exp(torch.cat(sq_dists) / (-2.0 * sigma**2 * n_features))
    graph = torch.sparse_coo_tensor(
        indices, weights, (n_samples, n_samples), check_invariants=False
    )
    return graph.coalesce()
