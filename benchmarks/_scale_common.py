"""Synthetic long-tailed data and Linux peak-memory helpers shared by the scale benchmarks."""

D, K, RATIO, CENTRE_SCALE = 64, 100, 10.0, 1.0


def cluster_sizes(n, k=K, ratio=RATIO):
    """Exponential long tail: size_j ∝ ratio^(-j/(k-1)), at least 1, summing to n."""
    import numpy as np

    if n < k:
        raise ValueError(f"N = {n} < K = {k}")
    weights = ratio ** (-np.arange(k) / (k - 1))
    exact = n * weights / weights.sum()
    sizes = np.maximum(np.floor(exact).astype(np.int64), 1)
    rest = n - sizes.sum()
    order = np.argsort(-(exact - np.floor(exact)))  # largest remainders first
    sizes[order[:rest]] += 1
    return sizes


def make_data(n, seed, d=D, k=K):
    """Long-tailed Gaussian blobs, float32, built in chunks (no N×d temporary)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = (CENTRE_SCALE * rng.standard_normal((k, d))).astype(np.float32)
    labels = np.repeat(np.arange(k), cluster_sizes(n, k))
    rng.shuffle(labels)
    X = rng.standard_normal((n, d), dtype=np.float32)
    for s in range(0, n, 1 << 16):
        X[s:s + (1 << 16)] += centres[labels[s:s + (1 << 16)]]
    return X, labels


# memory helpers (Linux /proc; fall back to ru_maxrss)
def _status():
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split()[:2]
                out[key[:-1]] = int(value)  # KiB
    return out


def _reset_peak():
    """Reset VmHWM to the current RSS; return whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
