"""Array backends of the P²OT loops: NumPy for CPU float32/float64, torch otherwise.

A solve runs its whole loop in one library and converts at its edges without
copying (``Tensor.numpy()`` / ``torch.from_numpy`` share memory):

* CPU tensors of dtype float32 or float64 run in NumPy. Its OpenBLAS
  matrix-vector products reach about twice the memory bandwidth of the BLAS
  bundled with torch on the CPUs we measured, and a NumPy call costs a
  fraction of a torch dispatch, which is what small problems (a few thousand
  entries, thousands of solves per fit) pay for.
* Everything else (CUDA, MPS, half precision) runs in torch; on a GPU the
  loop then never synchronizes except at its convergence checks.

Both backends expose the same small surface: the module ``xp`` for the
elementwise functions both libraries spell alike (``exp``, ``log``, ``add``,
``subtract``, ``multiply``, ``divide``, ``maximum``, ``minimum``,
``logaddexp``, all with ``out=``), plus the methods below for what they spell
differently (reductions over an axis, products, scalars, conversions).
"""

import math

import numpy as np
import torch

__all__ = ["make_backend"]

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}

# rows per block of the blocked passes: about 256 KiB of float32 per block
_BLOCK_ELEMENTS = 1 << 16


def _safe_log(x):
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan


def _safe_exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


#: Problems of up to this many entries (N × K) run their NumPy loop with one
#: BLAS thread; larger ones leave BLAS as it is (``NumpyBackend.threads``).
ONE_BLAS_THREAD_MAX_ENTRIES = 1 << 24

_BLAS_CONTROLLER = {}


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries loaded.

    Building one scans the process's shared libraries (~0.4 ms), so it is
    kept, and rebuilt whenever Python has imported modules since: an
    import (SciPy's linear algebra, say) may load another BLAS.
    """
    import sys

    if _BLAS_CONTROLLER.get("modules") != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER["controller"] = ThreadpoolController()
        _BLAS_CONTROLLER["modules"] = len(sys.modules)
    return _BLAS_CONTROLLER["controller"]


class NumpyBackend:
    """CPU float32/float64: NumPy arrays, Python floats for scalars."""

    name = "numpy"
    xp = np

    def __init__(self, dtype):
        self.torch_dtype = dtype
        self.dtype = np.dtype(_NUMPY_DTYPES[dtype])
        self.acc = np.dtype(np.float64)
        self.device = torch.device("cpu")
        self.block_elements = _BLOCK_ELEMENTS

    # conversions ---------------------------------------------------------- #
    @staticmethod
    def wrap(tensor):
        return tensor.detach().numpy()

    @staticmethod
    def unwrap(array):
        return torch.from_numpy(np.asarray(array))

    def errstate(self):
        return np.errstate(all="ignore")

    @staticmethod
    def threads(n_entries):
        """One BLAS thread while the loop of an N×K problem of ``n_entries`` runs.

        The limit is restored afterwards, and applies up to
        ``ONE_BLAS_THREAD_MAX_ENTRIES``. A small problem's products are short
        BLAS calls, and the loop also reduces with torch's own thread pool:
        two pools whose idle workers spin left a 2-core machine
        oversubscribed. With BLAS on one thread (``benchmarks/bench_threads.py``,
        2 cores, torch on 2 threads) a 10,000 × 100 SP²OT solve took 0.094 s
        instead of 0.231 s (medians of 5), 10⁵ × 100 the same time, and a
        default 10,000-row, 100-cluster fit 28 s instead of 51 s. A large
        problem's matrix-vector products stream the whole N×K matrix, where
        BLAS threads add bandwidth on a machine with more cores, so its BLAS
        is left as it is. Every solve of a fit is at most 20,000 rows × K.
        """
        if n_entries > ONE_BLAS_THREAD_MAX_ENTRIES:
            return _NullContext()
        return _blas_controller().limit(limits=1, user_api="blas")

    # creation ------------------------------------------------------------- #
    def empty(self, shape, acc=False):
        return np.empty(shape, dtype=self.acc if acc else self.dtype)

    def full(self, shape, value, acc=False):
        return np.full(shape, value, dtype=self.acc if acc else self.dtype)

    def cast(self, x, acc=False):
        return np.asarray(x, dtype=self.acc if acc else self.dtype)

    def copy(self, x):
        return x.copy()

    @staticmethod
    def assign(dst, src):
        np.copyto(dst, src)

    # reductions and products --------------------------------------------- #
    # NumPy reduces a 2-D array along an axis 3-15x slower than torch does
    # (short inner loops for axis 1, no vectorization across rows for axis 0),
    # so those go through torch on the same memory; float64 sums of float32
    # blocks are a BLAS product of a float64 copy of the block with ones.
    @staticmethod
    def amax(x, axis):
        if x.ndim == 1:
            return float(x.max())
        return torch.amax(torch.from_numpy(x), dim=axis).numpy()

    @staticmethod
    def amin(x, axis):
        if x.ndim == 1:
            return float(x.min())
        return torch.amin(torch.from_numpy(x), dim=axis).numpy()

    def sum(self, x, axis=None, acc=False):
        if x.ndim == 2 and axis is not None:
            if acc:
                x = x.astype(np.float64, copy=False)  # one block at most
                ones = np.ones(x.shape[axis])
                return x @ ones if axis == 1 else ones @ x
            return torch.sum(torch.from_numpy(x), dim=axis).numpy()
        return x.sum(axis=axis, dtype=self.acc if acc else None)

    # np.dot dispatches to BLAS gemv with a third of np.matmul's call overhead
    @staticmethod
    def block_sums(x):
        """(row sums, column sums) of a 2-D block, accumulated in float64."""
        x = x.astype(np.float64, copy=False)
        return x @ np.ones(x.shape[1]), np.ones(x.shape[0]) @ x

    @staticmethod
    def matvec(matrix, vector, out):
        return np.dot(matrix, vector, out=out)

    @staticmethod
    def rmatvec(vector, matrix, out):
        return np.dot(vector, matrix, out=out)

    @staticmethod
    def dot(x, y):
        return float(np.dot(x, y))

    @staticmethod
    def abs_max(x):
        return float(np.abs(x).max())

    # scalars -------------------------------------------------------------- #
    @staticmethod
    def scalar(value):
        """A Python float (the gauge)."""
        return float(value)

    @staticmethod
    def sval(value):
        return float(value)

    slog = staticmethod(_safe_log)
    sexp = staticmethod(_safe_exp)

    @staticmethod
    def items(*values):
        return [float(v) for v in values]


class TorchBackend:
    """Any device and floating dtype: torch tensors, 0-d tensors for scalars."""

    name = "torch"
    xp = torch

    def __init__(self, dtype, device):
        self.torch_dtype = self.dtype = dtype
        # float64 reductions where the backend has them (MPS has no float64)
        self.acc = torch.float32 if device.type == "mps" else torch.float64
        self.device = device
        # one block on accelerators; blocks of the NumPy size on CPU
        self.block_elements = _BLOCK_ELEMENTS if device.type == "cpu" else None

    @staticmethod
    def wrap(tensor):
        return tensor.detach()

    @staticmethod
    def unwrap(tensor):
        return tensor

    @staticmethod
    def errstate():
        return _NullContext()

    @staticmethod
    def threads(n_entries):
        return _NullContext()

    @staticmethod
    def _shape(shape):
        return (shape,) if isinstance(shape, int) else tuple(shape)

    def empty(self, shape, acc=False):
        return torch.empty(self._shape(shape), dtype=self.acc if acc else self.dtype,
                           device=self.device)

    def full(self, shape, value, acc=False):
        return torch.full(self._shape(shape), value, dtype=self.acc if acc else self.dtype,
                          device=self.device)

    def cast(self, x, acc=False):
        dtype = self.acc if acc else self.dtype
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=dtype)
        return torch.as_tensor(x, dtype=dtype, device=self.device)

    @staticmethod
    def copy(x):
        return x.clone()

    @staticmethod
    def assign(dst, src):
        dst.copy_(src)

    @staticmethod
    def amax(x, axis):
        return torch.amax(x, dim=axis)

    @staticmethod
    def amin(x, axis):
        return torch.amin(x, dim=axis)

    def sum(self, x, axis=None, acc=False):
        dtype = self.acc if acc else None
        if axis is None:
            return torch.sum(x, dtype=dtype)
        return torch.sum(x, dim=axis, dtype=dtype)

    def block_sums(self, x):
        """(row sums, column sums) of a 2-D block, accumulated in float64 (or float32 on MPS)."""
        return torch.sum(x, dim=1, dtype=self.acc), torch.sum(x, dim=0, dtype=self.acc)

    @staticmethod
    def matvec(matrix, vector, out):
        return torch.mv(matrix, vector, out=out)

    @staticmethod
    def rmatvec(vector, matrix, out):
        return torch.mv(matrix.T, vector, out=out)

    @staticmethod
    def dot(x, y):
        return torch.dot(x, y)

    @staticmethod
    def abs_max(x):
        return x.abs().max()

    def scalar(self, value):
        """A 0-d tensor in the accumulation dtype (the gauge)."""
        return torch.as_tensor(value, dtype=self.acc, device=self.device)

    def sval(self, value):
        """A 0-d tensor in the working dtype (virtual-column quantities)."""
        return torch.as_tensor(value, device=self.device).to(self.dtype).reshape(())

    @staticmethod
    def slog(x):
        return torch.log(x)

    @staticmethod
    def sexp(x):
        return torch.exp(x)

    def items(self, *values):
        # one host synchronization for all the checked scalars
        return torch.stack([self.cast(v, acc=True).reshape(()) for v in values]).tolist()


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def make_backend(tensor, backend=None):
    """The backend for ``tensor``: NumPy for CPU float32/float64 unless told otherwise."""
    if backend not in (None, "numpy", "torch"):
        raise ValueError(f"backend must be None, 'numpy' or 'torch', got {backend!r}.")
    numpy_ok = tensor.device.type == "cpu" and tensor.dtype in _NUMPY_DTYPES
    if backend == "numpy" and not numpy_ok:
        raise ValueError("the NumPy backend needs a CPU float32/float64 tensor.")
    if numpy_ok and backend != "torch":
        return NumpyBackend(tensor.dtype)
    return TorchBackend(tensor.dtype, tensor.device)
