"""``skclust_ot.show_versions()`` (#15)."""

import platform
import re
import sys

import numpy
import scipy
import sklearn
import skorch
import torch

import skclust_ot


def test_show_versions_is_exported():
    assert "show_versions" in skclust_ot.__all__
    from skclust_ot import show_versions

    assert callable(show_versions)


def _lines(capsys):
    skclust_ot.show_versions()
    out = capsys.readouterr().out
    return out, {m.group(1): m.group(2) for m in re.finditer(r"^ *([^:\n]+): (.*)$", out,
                                                              re.MULTILINE)}


def test_show_versions_prints_the_system_and_the_dependencies(capsys):
    out, info = _lines(capsys)
    for title in ("System:", "Python dependencies:", "torch:"):
        assert title in out
    assert info["python"].startswith(platform.python_version())
    assert info["executable"] == sys.executable
    assert info["machine"] == platform.platform()
    assert info["skclust_ot"] == skclust_ot.__version__
    assert info["torch"] == torch.__version__
    assert info["numpy"] == numpy.__version__
    assert info["scipy"] == scipy.__version__
    assert info["scikit-learn"] == sklearn.__version__
    assert info["skorch"] == skorch.__version__
    for name in ("joblib", "pandas", "POT"):
        assert name in info  # a version, or None when not installed


def test_show_versions_reports_torchs_cuda(capsys):
    _, info = _lines(capsys)
    assert info["CUDA build"] == str(torch.version.cuda)
    assert info["CUDA available"] == str(torch.cuda.is_available())
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name(0) in info["CUDA devices"]
    else:
        assert info["CUDA devices"] == "None"


def test_a_missing_optional_dependency_shows_none(capsys, monkeypatch):
    import skclust_ot._versions as versions

    monkeypatch.setattr(versions, "_DEPENDENCIES",
                        versions._DEPENDENCIES + [("not-a-package", "not-a-package-xyz")])
    _, info = _lines(capsys)
    assert info["not-a-package"] == "None"
