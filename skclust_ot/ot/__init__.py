"""Optimal-transport solvers: P²OT, SP²OT, the kNN semantic graph and mass schedules.

The solvers take and return torch tensors and follow the device and dtype of
their input. On the CPU the P²OT loops run in NumPy (``_backend``, OpenBLAS
matrix-vector products), on other devices in torch; either way the Anderson
mixing solves its small (at most 5 x 5) least-squares system on the host with
SciPy's LAPACK.
"""

from ..exceptions import ConvergenceWarning
from ._distributed import Communicator, p2ot_distributed, sp2ot_distributed
from ._graph import knn_graph
from ._p2ot import cost_from_logits, p2ot
from ._schedules import rho_schedule
from ._sp2ot import sp2ot

__all__ = [
    "Communicator",
    "ConvergenceWarning",
    "cost_from_logits",
    "knn_graph",
    "p2ot",
    "p2ot_distributed",
    "rho_schedule",
    "sp2ot",
    "sp2ot_distributed",
]
