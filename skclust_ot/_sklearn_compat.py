"""scikit-learn's private APIs that skclust_ot uses, imported in this one place.

``sklearn.base._fit_context`` (parameter validation around ``fit``) and
``sklearn.utils._param_validation`` (the constraint classes of
``_parameter_constraints``) are private: a scikit-learn release may move or
drop them. Importing them here turns such a change into one ImportError that
names the installed version and the tested range, instead of an error from
deep inside the estimator's module.
"""

import sklearn

__all__ = ["Interval", "Options", "StrOptions", "_fit_context", "SKLEARN_TESTED"]

#: scikit-learn versions skclust_ot is tested with (the lowest is the
#: requirement in pyproject.toml).
SKLEARN_TESTED = (">=1.6", "1.9.1")

try:
    from sklearn.base import _fit_context
    from sklearn.utils._param_validation import Interval, Options, StrOptions
except ImportError as exc:
    raise ImportError(
        f"skclust_ot needs scikit-learn's private _fit_context (sklearn.base) and "
        f"sklearn.utils._param_validation, which the installed scikit-learn "
        f"{sklearn.__version__} does not provide ({exc}). skclust_ot is tested with "
        f"scikit-learn {SKLEARN_TESTED[0]}, up to {SKLEARN_TESTED[1]}: install one of "
        f"those, e.g. pip install 'scikit-learn{SKLEARN_TESTED[0]},<={SKLEARN_TESTED[1]}'."
    ) from exc
