"""``show_versions``: the versions a bug report needs, as scikit-learn's."""

import importlib.metadata
import platform
import sys

from ._version import __version__

__all__ = ["show_versions"]

# (name shown, distribution name) of the libraries skclust_ot uses; the last
# ones are optional (the command line, plots, progress bar, test oracle).
_DEPENDENCIES = [
    ("torch", "torch"),
    ("numpy", "numpy"),
    ("scipy", "scipy"),
    ("scikit-learn", "scikit-learn"),
    ("skorch", "skorch"),
    ("joblib", "joblib"),
    ("pandas", "pandas"),
    ("pyarrow", "pyarrow"),
    ("matplotlib", "matplotlib"),
    ("tqdm", "tqdm"),
    ("POT", "POT"),
]


def _system_info():
    return {
        "python": sys.version.replace("\n", " "),
        "executable": sys.executable,
        "machine": platform.platform(),
    }


def _dependency_info():
    info = {"skclust_ot": __version__}
    for shown, distribution in _DEPENDENCIES:
        try:
            info[shown] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            info[shown] = None
    return info


def _torch_info():
    """How torch was built and which accelerators it sees (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    available = torch.cuda.is_available()
    info = {
        "CUDA build": torch.version.cuda,  # None for a CPU-only build
        "CUDA available": available,
        "CUDA devices": (", ".join(torch.cuda.get_device_name(i)
                                   for i in range(torch.cuda.device_count()))
                         if available else None),
        "cuDNN": torch.backends.cudnn.version() if available else None,
        "MPS available": bool(getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()),
        "threads": torch.get_num_threads(),
    }
    if getattr(torch.version, "hip", None):
        info["ROCm build"] = torch.version.hip
    return info


def show_versions():
    """Print the versions of Python, the platform, skclust_ot and its dependencies.

    Paste its output into bug reports. Besides the libraries' versions it
    shows how torch was built (CUDA version, or ``None`` for a CPU-only
    build), whether CUDA is available and the names of the visible devices,
    as :func:`sklearn.show_versions` does for scikit-learn.

    Examples
    --------
    >>> import skclust_ot
    >>> skclust_ot.show_versions()  # doctest: +SKIP
    """
    sections = [("System", _system_info()), ("Python dependencies", _dependency_info())]
    torch_info = _torch_info()
    if torch_info is not None:
        sections.append(("torch", torch_info))
    for title, info in sections:
        print(f"\n{title}:")
        width = max(len(k) for k in info)
        for key, value in info.items():
            print(f"{key:>{width + 4}}: {value}")
