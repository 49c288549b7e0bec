"""The private scikit-learn imports sit behind one guarded module (#15)."""

import importlib
import sys

import pytest
import sklearn
import sklearn.base
import sklearn.utils._param_validation as param_validation


def test_the_compat_module_exposes_the_private_apis():
    from skclust_ot import _sklearn_compat as compat

    assert compat._fit_context is sklearn.base._fit_context
    assert compat.Interval is param_validation.Interval
    assert compat.Options is param_validation.Options
    assert compat.StrOptions is param_validation.StrOptions
    assert compat.SKLEARN_TESTED[0] == ">=1.6"


def test_a_missing_private_api_names_the_installed_version_and_tested_range(monkeypatch):
    monkeypatch.delitem(sys.modules, "skclust_ot._sklearn_compat", raising=False)
    monkeypatch.setitem(sys.modules, "sklearn.utils._param_validation", None)  # "removed"
    with pytest.raises(ImportError) as info:
        importlib.import_module("skclust_ot._sklearn_compat")
    message = str(info.value)
    assert f"scikit-learn {sklearn.__version__}" in message
    assert ">=1.6" in message and "1.9.1" in message
    assert "_param_validation" in message
