"""
Your own torch encoder: a small CNN on digit images
===================================================

The built-in encoders are an MLP (``encoder="mlp"``, for tabular data) and
none at all (``encoder="identity"``, for precomputed embeddings). For raw
data with structure, such as images, pass your own ``torch.nn.Module``:
a class (instantiated with ``encoder_kwargs``) or an instance (copied, never
trained in place). The module takes a batch of samples in their own shape,
here ``(batch, 1, 8, 8)``, and returns one embedding vector per sample,
``(batch, embedding_dim)``; the estimator adds the cluster head on top.

The data are scikit-learn's 8x8 handwritten digits made long-tailed (170
images of 0 down to 17 of 9). Run it with
``python examples/plot_custom_encoder_cnn.py``; ``SKCLUST_OT_EXAMPLE_FAST=1``
trains for 2 epochs. The picture goes to the folder in
``SKCLUST_OT_EXAMPLE_OUT`` (default: the current folder).
"""

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.cluster import KMeans
from torch import nn

from skclust_ot import SP2OTClustering
from skclust_ot.datasets import load_digits_long_tailed
from skclust_ot.metrics import clustering_report
from skclust_ot.plotting import plot_cluster_sizes

FAST = os.environ.get("SKCLUST_OT_EXAMPLE_FAST") == "1"
OUT = Path(os.environ.get("SKCLUST_OT_EXAMPLE_OUT", "."))


# %%
# The encoder
# -----------
class SmallCNN(nn.Module):
    """Two 3x3 convolutions, then a linear map to the embedding."""

    def __init__(self, channels=16, embedding_dim=32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.MaxPool2d(2),                                    # 8x8 -> 4x4
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),                            # 4x4 -> 2x2
        )
        self.project = nn.Linear(2 * channels * 4, embedding_dim)

    def forward(self, x):
        return self.project(self.features(x).flatten(1))


# %%
# Images in, clusters out
# -----------------------
digits = load_digits_long_tailed(n_max=60 if FAST else 170, imbalance_ratio=10,
                                 random_state=0, return_X_y=False)
images = digits.images[:, None].astype(np.float32)  # (n, 1, 8, 8): one channel
y = digits.target
print(f"{images.shape[0]} images of shape {images.shape[1:]}, "
      f"digit counts {np.bincount(y).tolist()}")

est = SP2OTClustering(
    n_clusters=10,
    encoder=SmallCNN,
    encoder_kwargs={"channels": 16, "embedding_dim": 32},
    max_epochs=2 if FAST else 40,
    random_state=0,
)
labels = est.fit_predict(images)
km_labels = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(digits.data)

for name, found in [("SP2OT + CNN", labels), ("KMeans (pixels)", km_labels)]:
    report = clustering_report(y, found)
    print(f"{name:<16} balanced accuracy {report['balanced_accuracy']:.3f}  "
          f"macro-F1 {report['macro_f1']:.3f}  tail accuracy {report['tail']:.3f}")

# %%
# Pictures: the cluster sizes, and the first images of each cluster, one row
# per cluster, largest first (tiled into one image, which draws fast).
order = np.argsort(-np.bincount(labels, minlength=10), kind="stable")
n_shown = 12
tiles = np.ones((10, n_shown, 10, 10))  # 8x8 digits with a white border
for row, cluster in enumerate(order):
    members = images[labels == cluster][:n_shown, 0]
    tiles[row, :len(members), 1:9, 1:9] = 1 - members / members.max(initial=1)
mosaic = tiles.transpose(0, 2, 1, 3).reshape(10 * 10, n_shown * 10)

fig, (ax_sizes, ax_images) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained",
                                          width_ratios=[1, 1.2])
plot_cluster_sizes(est, y_true=y, ax=ax_sizes)
ax_images.imshow(mosaic, cmap="gray")
ax_images.set_yticks(np.arange(10) * 10 + 5, [f"cluster {k}" for k in order])
ax_images.set_xticks([])
ax_images.set_title("First images of each cluster")
path = OUT / "custom_encoder_cnn.png"
fig.savefig(path, dpi=100)
print(f"saved the pictures to {path.resolve()}")
