"""Optimal-transport solvers: P²OT, SP²OT, the kNN semantic graph and mass schedules.

Pure torch: every function follows the device and dtype of its input tensors.
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
