"""Network parameters saved with skorch's mechanism load in later versions."""

import importlib.util
from pathlib import Path

import numpy as np

from skclust_ot import SP2OTClustering

FIXTURES = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location(
    "make_params_fixture", FIXTURES / "make_params_fixture.py")
_fixture = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixture)
PARAMS, data = _fixture.PARAMS, _fixture.data


def test_saved_params_from_v0_load_and_predict_the_same():
    # a model of the same configuration, trained differently (another seed),
    # takes the committed v0 parameters and must reproduce v0's predictions
    est = SP2OTClustering(**{**PARAMS, "random_state": 1}).fit(data())
    est.net_.load_params(f_params=str(FIXTURES / "sp2ot_params_v0.pt"))
    expected = np.load(FIXTURES / "sp2ot_proba_v0.npy")
    np.testing.assert_allclose(est.predict_proba(data()), expected, rtol=1e-5, atol=1e-6)


def test_save_params_round_trip(tmp_path):
    X = data()
    a = SP2OTClustering(**PARAMS).fit(X)
    a.net_.save_params(f_params=str(tmp_path / "p.pt"))
    b = SP2OTClustering(**{**PARAMS, "random_state": 5}).fit(X)
    assert not np.allclose(a.predict_proba(X), b.predict_proba(X))
    b.net_.load_params(f_params=str(tmp_path / "p.pt"))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
