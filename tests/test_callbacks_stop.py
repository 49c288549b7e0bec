"""skorch callbacks in a fit: a callback's stop ends training, a Ctrl-C does not.

skorch callbacks stop training by raising ``KeyboardInterrupt`` from a hook
(EarlyStopping does). That must end the fit normally with the epochs run so
far, while a real Ctrl-C (here: a KeyboardInterrupt raised from the training
step itself) must propagate and leave the previous fit intact.
"""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, Checkpoint, EarlyStopping, LRScheduler

from skclust_ot import SP2OTClustering
from skclust_ot.nn import SP2OTNet

FAST = dict(n_clusters=3, random_state=0)


def fit_or_fail(est, X):
    """``est.fit(X)``; a KeyboardInterrupt is a test failure, not pytest's session abort."""
    try:
        return est.fit(X)
    except KeyboardInterrupt:
        pytest.fail("the fit ended in KeyboardInterrupt instead of stopping normally")


class _StopAtBatch(Callback):
    """Asks training to stop, skorch-style, at the end of a given batch."""

    def __init__(self, batch):
        self.batch = batch
        self.seen = 0

    def on_batch_end(self, net, **kwargs):
        self.seen += 1
        if self.seen == self.batch:
            raise KeyboardInterrupt


def _quiet(*args, **kwargs):
    pass


def test_early_stopping_ends_the_fit_normally(blobs):
    X, _ = blobs
    max_epochs = 60
    # train_loss rises with rho, so it stops improving long before max_epochs
    est = SP2OTClustering(max_epochs=max_epochs, callbacks=[
        EarlyStopping(monitor="train_loss", patience=3, sink=_quiet)], **FAST)
    assert fit_or_fail(est, X) is est
    assert 4 <= est.n_iter_ < max_epochs
    assert len(est.history_) == est.n_iter_
    assert est.labels_.shape == (X.shape[0],)
    assert est.net_.stopped_by_ == ("user_callback_0", "on_epoch_end")
    np.testing.assert_array_equal(est.predict(X), est.labels_)


def test_a_full_run_is_not_marked_as_stopped(blobs):
    X, _ = blobs
    est = SP2OTClustering(max_epochs=2, **FAST).fit(X)
    assert est.n_iter_ == 2 and est.net_.stopped_by_ is None


def test_checkpoint_saves_with_this_nets_history_keys(blobs, tmp_path):
    X, _ = blobs
    est = SP2OTClustering(max_epochs=3, callbacks=[
        Checkpoint(monitor="train_loss_best", dirname=str(tmp_path))], **FAST).fit(X)
    assert est.n_iter_ == 3
    assert (tmp_path / "params.pt").is_file() and (tmp_path / "history.json").is_file()
    assert any(row["event_cp"] for row in est.history_)


def test_a_user_lr_scheduler_runs_beside_the_estimators_own(blobs):
    X, _ = blobs
    epochs, lr = 4, 1e-3
    halve = LRScheduler(torch.optim.lr_scheduler.MultiplicativeLR, lr_lambda=lambda _: 0.5,
                        event_name="user_lr")
    est = SP2OTClustering(max_epochs=epochs, lr=lr, callbacks=[halve], **FAST).fit(X)
    assert "lr_scheduler" in dict(est.net_.callbacks_)  # the estimator's cosine decay
    recorded = est.history_[:, "user_lr"]
    assert len(recorded) == epochs
    final = est.net_.optimizer_.param_groups[0]["lr"]
    # the cosine decay alone ends at 0 after T_max = max_epochs steps; compare
    # the second-to-last step instead, where both have acted
    assert recorded[-1] < recorded[0] * 0.5 ** (epochs - 2) + 1e-12
    assert final < lr * 0.5 ** (epochs - 1) + 1e-12


def test_a_callback_raising_keyboard_interrupt_in_a_batch_hook_stops(blobs):
    X, _ = blobs
    # 175 rows at the default batch size are several batches per epoch
    est = SP2OTClustering(max_epochs=5, batch_size=64, callbacks=[_StopAtBatch(5)], **FAST)
    fit_or_fail(est, X)
    n_batches = -(-X.shape[0] // 64)
    assert est.n_iter_ == 5 // n_batches + 1  # the last epoch is partial
    assert est.net_.stopped_by_ == ("user_callback_0", "on_batch_end")
    assert est.labels_.shape == (X.shape[0],)


def test_ctrl_c_in_the_training_step_propagates_and_keeps_the_previous_fit(
        blobs, monkeypatch):
    X, _ = blobs
    est = SP2OTClustering(max_epochs=3, **FAST).fit(X)
    labels, net = est.labels_.copy(), est.net_
    step = SP2OTNet.train_step_single
    calls = []

    def interrupted(self, batch, **fit_params):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a real Ctrl-C would, mid-step
        return step(self, batch, **fit_params)

    monkeypatch.setattr(SP2OTNet, "train_step_single", interrupted)
    with pytest.raises(KeyboardInterrupt):
        est.set_params(max_epochs=6).fit(X[::-1])
    assert est.net_ is net and est.n_iter_ == 3
    np.testing.assert_array_equal(est.labels_, labels)
    np.testing.assert_array_equal(est.predict(X), labels)


def test_keyboard_interrupt_in_the_nets_own_callbacks_propagates(blobs, monkeypatch):
    # skclust_ot's callbacks never stop on purpose: a Ctrl-C during their
    # (possibly long) pseudo-label refresh is a real interrupt
    from skclust_ot.nn import FullDataPseudoLabels

    def interrupted(self, net, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(FullDataPseudoLabels, "on_epoch_begin", interrupted)
    est = SP2OTClustering(max_epochs=2, **FAST)
    with pytest.raises(KeyboardInterrupt):
        est.fit(blobs[0])
    assert not hasattr(est, "labels_")


def test_keyboard_interrupt_in_on_train_begin_propagates(blobs):
    class Refuse(Callback):
        def on_train_begin(self, net, **kwargs):
            raise KeyboardInterrupt

    est = SP2OTClustering(max_epochs=2, callbacks=[Refuse()], **FAST)
    with pytest.raises(KeyboardInterrupt):
        est.fit(blobs[0])
    assert not hasattr(est, "labels_")
