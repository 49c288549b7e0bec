"""Named sizes and budgets of the estimator: where a data size changes the recipe.

Every number here is used by the layers above (``_config``, ``_start``,
``_builders``, ``_estimator``); keeping them in one module at the bottom means
no module has to import a constant back from the estimator. The reasons they
have these values are in ``docs/design.md`` ("Defaults and budgets").
"""

#: An epoch trains on at most this many rows: all of them up to this size;
#: above it, in one process, one of ``ceil(N / EPOCH_MAX_ROWS)`` seeded random
#: blocks in turn, whose pseudo-labels are solved over the block alone (a
#: distributed fit: a fresh random subset, with one sharded solve over all
#: rows). So an epoch's cost in one process does not grow with N.
EPOCH_MAX_ROWS = 20_000
#: The graph-aware starts (spectral, consensus) run on all rows up to this
#: many, and above it on a seeded random sample of this many rows (landmarks,
#: with their own exact kNN graph and eigenproblem); the encoder, taught the
#: landmarks' spectral embedding, carries the start to the other rows.
GRAPH_START_MAX_ROWS = 20_000
#: ``semantic_weight="auto"``: the SP²OT semantic term's weight on data of at
#: most ``SEMANTIC_MAX_ROWS`` rows (chosen on the quality benchmark, whose
#: cases all fall below that size)...
SEMANTIC_WEIGHT = 0.02
#: ...and above it no semantic term (P²OT): there an epoch's problem is one
#: block of the rows, whose graph links a row only to its neighbours within
#: the block. On Fashion-MNIST at 28,605 and 70,000 rows and on 20,341 tweet
#: embeddings the term left balanced accuracy the same to 0.001 and cost a
#: fifth of the fit at 1e5 x 384 (docs/design.md, "Semantic weight").
SEMANTIC_MAX_ROWS = 20_000
#: A distributed fit of more rows than this that needs no kNN graph of all
#: rows (the default above ``SEMANTIC_MAX_ROWS``) gathers on each rank only a
#: seeded sample of ``GRAPH_START_MAX_ROWS`` rows (the landmarks), not every
#: rank's rows: the statistics, the start and the network's fit to it run on
#: the sample, the training on each rank's own shard.
DISTRIBUTED_SAMPLE_MIN_ROWS = 20_000
#: The spectral start needs at least ``2 * n_clusters + this`` samples for a
#: meaningful graph eigenproblem; below, the k-means start is used.
SPECTRAL_START_MIN_EXTRA_SAMPLES = 2
#: The spectral start also over-clusters, then merges: k-means on the spectral
#: embedding of ``OVERCLUSTER_FACTOR * n_clusters`` components gives as many
#: fine clusters (at most one per ``OVERCLUSTER_MIN_ROWS`` samples, and at
#: least ``n_clusters + 1``), and the pair of clusters joined by the densest
#: edges of the kNN graph is merged until ``n_clusters`` remain. A small class
#: keeps a fine cluster of its own instead of being cut into a big one. The
#: merged partition replaces spectral clustering's where it has both the
#: smaller ratio cut on the graph and the larger mean silhouette in the input
#: space. Chosen on the quality benchmark's tuning half (docs/design.md,
#: "Over-clustering the spectral start" and "The merge's referee").
OVERCLUSTER_FACTOR = 2
OVERCLUSTER_MIN_ROWS = 10
#: ...and at most this many fine clusters (or ``n_clusters`` when larger, which
#: then means no over-clustering): the eigenproblem's cost grows faster than
#: its number of components (on 20,000 landmarks, 100 components took 17 s
#: with LOBPCG and 200 took 47 s, its k-means 3 s and 17 s), so for many
#: clusters the start keeps spectral clustering's own size.
OVERCLUSTER_MAX_CLUSTERS = 64
#: The silhouette that chooses between the merged and the K-way partition is
#: exact up to this many samples, and of a seeded sample of this many above
#: (its cost is quadratic in the rows it sees).
START_REFEREE_MAX_ROWS = 5_000
#: Up to this many samples the k-means start runs exact ``KMeans`` in float64;
#: above it, ``MiniBatchKMeans`` on the float32 data.
EXACT_KMEANS_MAX_SAMPLES = 20_000
#: The head's prototypes are fitted on at most this many rows.
INIT_MAX_ROWS = 20_000
#: Robust statistics (``standardize="robust"``) come from at most this many rows.
ROBUST_STATISTICS_MAX_ROWS = 200_000

#: Eigensolver of the spectral start (``sklearn.manifold.spectral_embedding``).
#: LOBPCG: ARPACK's shift-invert factorization took 287 s on the 20,000-row
#: kNN graph of sentence embeddings (LOBPCG 0.7 s, the same partitions on
#: Fashion-MNIST, 13 of 15 tuning cases unchanged; docs/design.md).
SPECTRAL_EIGEN_SOLVER = "lobpcg"
#: Neighbour counts of the spectral candidates of the consensus start.
CONSENSUS_NEIGHBORS = (5, 10, 15, 20, 30)

#: Restarts of the exact k-means start.
KMEANS_N_INIT = 10
#: Restarts and batch size of the mini-batch k-means start.
MINIBATCH_KMEANS_N_INIT = 3
MINIBATCH_KMEANS_BATCH_SIZE = 4096

#: Budget of the regression that teaches the encoder a target embedding.
ENCODER_FIT_EPOCHS = 30
ENCODER_FIT_BATCH_SIZE = 256
ENCODER_FIT_LR = 1e-3
#: Budget of the full-batch fit of the head's prototypes to the start's labels.
PROTOTYPE_FIT_STEPS = 100
PROTOTYPE_FIT_LR = 0.05

#: Memory bank size as a multiple of the batch size (when ``memory_size=None``).
MEMORY_BANK_BATCHES = 10
#: Rows per forward pass when the whole data set is embedded or predicted.
PREDICT_CHUNK = 8192

#: Default architecture of ``encoder="mlp"`` (overridden by ``encoder_kwargs``).
MLP_DEFAULTS = {"hidden_dims": (256,), "embedding_dim": 64, "dropout": 0.0}

#: A distributed fit's collectives after its first rendezvous give up after
#: this many seconds: a rank that hangs mid-training is reported on every
#: rank within about this time, instead of after the default group's timeout
#: (a rank that raises closes the group at once: ``Shards.abandon``).
DISTRIBUTED_TIMEOUT_S = 45
