"""Long-tailed versions of real labelled data sets, for imbalanced clustering.

Class ``k`` of ``K`` keeps ``floor(n_max * r ** (-k / (K - 1)))`` samples
(imbalance ratio ``r``), drawn with a seeded generator.
"""

from ._longtail import load_digits_long_tailed, long_tail_counts, make_long_tailed

__all__ = ["long_tail_counts", "make_long_tailed", "load_digits_long_tailed"]
