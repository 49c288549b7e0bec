"""Order of the examples in the sphinx-gallery (docs/conf.py names it).

The quick start first, then from the simplest to the most involved;
scripts not listed here follow, in file-name order.
"""

ORDER = [
    "plot_quickstart_tabular.py",
    "plot_text_embeddings.py",
    "plot_pipeline_gridsearch.py",
    "plot_ablation.py",
    "plot_custom_encoder_cnn.py",
    "train_distributed.py",
]


class ExampleOrder:
    """Sort key of sphinx-gallery's ``within_subsection_order``."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        rank = ORDER.index(filename) if filename in ORDER else len(ORDER)
        return (rank, filename)

    def __repr__(self):
        return f"<{type(self).__name__}>"
