"""The memory estimate of a fit, and the check that stops a fit that cannot fit (#14)."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from skorch.callbacks import Callback

from skclust_ot import SP2OTClustering, _memory
from skclust_ot._checks import FitMemoryError, check_memory
from skclust_ot._config import resolve_config
from skclust_ot._memory import available_memory, estimate_fit_memory, peak_bytes

FAST = {"max_epochs": 2, "random_state": 0}


def estimate(n_samples, n_features=64, n_clusters=50, **params):
    est = SP2OTClustering(n_clusters=n_clusters, **params)
    config = resolve_config(est, n_samples, seed=0)
    return estimate_fit_memory(config, n_samples, n_features, n_clusters, params=est)


def phase_total(estimate, phase):
    return sum(estimate[phase].values())


def test_full_scope_training_grows_as_n_times_k_up_to_one_block():
    kw = {"ot_scope": "full", "init": "random"}
    base = phase_total(estimate(5_000, n_clusters=20, **kw), "training")
    assert phase_total(estimate(20_000, n_clusters=20, **kw), "training") == pytest.approx(
        4 * base, rel=0.01)
    # the semantic graph S + Sᵀ grows with N only, the N×K arrays with N·K
    no_graph = {**kw, "semantic_weight": 0.0}
    base = phase_total(estimate(5_000, n_clusters=20, **no_graph), "training")
    assert phase_total(estimate(5_000, n_clusters=80, **no_graph), "training") == 4 * base
    assert phase_total(estimate(15_000, n_clusters=20, **no_graph), "training") == 3 * base


def test_block_training_holds_one_block_whatever_n():
    kw = {"n_clusters": 100, "semantic_weight": 0.02}  # "auto": no block graphs
    one, two = estimate(100_000, **kw), estimate(200_000, **kw)
    assert "kNN graph" not in one  # no graph of all rows: each block has its own
    per_block = {name for name in one["training"] if name.startswith("block")
                 and "kept" not in name}
    assert per_block and all(one["training"][n] == two["training"][n] for n in per_block)
    assert two["training"]["block kNN graphs (kept)"] == 2 * one["training"][
        "block kNN graphs (kept)"]  # 5 blocks, then 10
    assert two["training"]["row → block position"] == 2 * one["training"]["row → block position"]


def test_bank_scope_ot_part_does_not_grow_with_n(monkeypatch):
    import skclust_ot._memory as memory

    monkeypatch.setattr(memory, "_approximate_graph", lambda n_rows, device: False)
    bank = {"ot_scope": "bank", "semantic_weight": 0.02}  # "auto": no graph above 20k rows
    small, large = estimate(100_000, **bank), estimate(10_000_000, **bank)
    assert small["training"] == large["training"]
    assert small["bank kNN graph"] == large["bank kNN graph"]
    bigger_bank = estimate(100_000, **bank, memory_size=20_000)
    assert phase_total(bigger_bank, "training") > 5 * phase_total(small, "training")
    # one full-scope problem over all rows (a distributed fit solves one):
    # N×K plans and a kNN graph over all rows
    full = estimate(1_000_000, ot_scope="full", distributed=True, semantic_weight=0.02)
    assert peak_bytes(full) > 10 * peak_bytes(estimate(1_000_000, **bank))
    # the default weight builds no graph above 20,000 rows, in either scope
    assert "bank kNN graph" not in estimate(100_000, ot_scope="bank")
    assert "kNN graph" not in estimate(1_000_000, ot_scope="full", distributed=True)


def test_peak_is_the_whole_fit_plus_the_largest_phase():
    est = estimate(20_000, ot_scope="full", init="kmeans")
    assert set(est) == {"whole fit", "input statistics", "kNN graph", "start", "training"}
    whole = phase_total(est, "whole fit")
    assert peak_bytes(est) == whole + max(phase_total(est, p) for p in est if p != "whole fit")
    assert est["kNN graph"]["kNN graph distance buffer"] == 4096 * 20_000 * 4


_MEASURE = textwrap.dedent('''
    import json, sys
    import numpy as np
    from skorch.callbacks import Callback
    from skclust_ot import SP2OTClustering

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

    def reset_peak():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    RECORD = {}

    class AtTrainBegin(Callback):
        def on_train_begin(self, net, **kwargs):
            RECORD["start"] = status("VmHWM")
            RECORD["train_base"] = status("VmRSS")
            reset_peak()

    n, d, params = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    X = np.random.default_rng(0).normal(size=(n, d)).astype(np.float32)
    SP2OTClustering(n_clusters=3, max_epochs=1, init="random").fit(X[:300])  # lazy imports
    reset_peak()
    base = status("VmRSS")
    SP2OTClustering(callbacks=[AtTrainBegin()], **params).fit(X)
    print(json.dumps({"start": RECORD["start"] - base,
                      "training": status("VmHWM") - RECORD["train_base"]}))
''')


def _can_measure_peaks():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return Path("/proc/self/status").exists()


@pytest.mark.skipif(not _can_measure_peaks(), reason="needs Linux's VmHWM and clear_refs")
def test_estimate_matches_the_measured_peak(tmp_path):
    # full scope with the semantic term: the kNN graph's build peaks before
    # training, the SP²OT solves (N×K plans) during it
    n, d = 10_000, 64
    params = {"n_clusters": 50, "ot_scope": "full", "init": "random", "max_epochs": 1,
              "mm_max_iter": 3, "random_state": 0}
    script = tmp_path / "measure.py"
    script.write_text(_MEASURE, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script), str(n), str(d), json.dumps(params)],
                         capture_output=True, text=True, check=True, timeout=300)
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    est = estimate(n, n_features=d, **{k: v for k, v in params.items() if k != "n_clusters"})
    before_training = peak_bytes({p: items for p, items in est.items() if p != "training"})
    for name, predicted in (("start", before_training),
                            ("training", phase_total(est, "training"))):
        ratio = measured[name] / predicted
        assert 0.3 <= ratio <= 3.0, (name, measured[name], predicted)


EVENTS = []


class RecordEpochs(Callback):
    def on_train_begin(self, net, **kwargs):
        EVENTS.append("train")

    def on_epoch_begin(self, net, **kwargs):
        EVENTS.append("epoch")


@pytest.mark.parametrize("scope, fix", [("full", "ot_scope='bank'"),
                                        ("bank", "a smaller memory_size/batch_size")])
def test_fit_that_cannot_fit_fails_before_training(monkeypatch, scope, fix):
    monkeypatch.setattr(_memory, "available_memory", lambda: 1_000_000)
    EVENTS.clear()
    X = np.random.default_rng(0).normal(size=(2000, 8))
    est = SP2OTClustering(n_clusters=4, ot_scope=scope, callbacks=[RecordEpochs()], **FAST)
    start = time.perf_counter()
    with pytest.raises(FitMemoryError) as info:
        est.fit(X)
    assert time.perf_counter() - start < 5
    assert EVENTS == []  # no training began
    assert not hasattr(est, "n_features_in_")
    message = str(info.value)
    assert "needs an estimated" in message and "MB" in message
    assert "1.0 MB available" in message and fix in message
    assert "float32 input" in message and "fewer samples" in message
    # a MemoryError, and a ValueError that collectively() raises on every rank
    assert isinstance(info.value, MemoryError) and isinstance(info.value, ValueError)


def test_device_side_items_are_compared_with_the_devices_memory(monkeypatch):
    monkeypatch.setattr(_memory, "available_memory", lambda: 10**15)
    monkeypatch.setattr(_memory, "device_memory", lambda device: 1_000_000)
    est = SP2OTClustering(n_clusters=4, ot_scope="full")
    X = np.zeros((2000, 8), dtype=np.float32)
    config = resolve_config(est, 2000, seed=0)
    check_memory(config, est, X, 2000, "cpu")  # the host has room
    with pytest.raises(FitMemoryError, match="cuda device memory"):
        check_memory(config, est, X, 2000, "cuda")


def test_available_memory_is_a_positive_int_or_none():
    available = available_memory()
    assert available is None or (isinstance(available, int) and available > 0)


def test_available_memory_takes_the_lower_cgroup_limit(monkeypatch):
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: 10 * 2**30)
    values = {"/sys/fs/cgroup/memory.max": 4 * 2**30,
              "/sys/fs/cgroup/memory.current": 2**30}
    monkeypatch.setattr(_memory, "_read_int", values.get)
    assert available_memory() == 3 * 2**30
    monkeypatch.setattr(_memory, "_read_int", lambda path: None)  # "max" or no cgroup
    assert available_memory() == 10 * 2**30
    monkeypatch.setattr(_memory, "_meminfo_available", lambda: None)
    assert available_memory() is None


def test_normal_fit_is_not_blocked(monkeypatch):
    X = np.random.default_rng(0).normal(size=(300, 4))
    est = SP2OTClustering(n_clusters=3, **FAST).fit(X)
    assert est.labels_.shape == (300,)
    # and no check where the available memory is unknown
    monkeypatch.setattr(_memory, "available_memory", lambda: None)
    check_memory(resolve_config(est, 10**9, seed=0), est, X, 10**9, "cpu")


def test_the_graph_estimate_follows_the_method_knn_graph_picks(monkeypatch):
    import skclust_ot._memory as memory

    monkeypatch.setattr(memory, "_approximate_graph", lambda n_rows, device: False)
    # a distributed fit builds the graph of all rows (one process: block graphs)
    kw = {"ot_scope": "full", "distributed": True, "semantic_weight": 0.02}
    exact = estimate(1_000_000, **kw)["kNN graph"]
    monkeypatch.setattr(memory, "_approximate_graph", lambda n_rows, device: True)
    approximate = estimate(1_000_000, **kw)["kNN graph"]
    assert "kNN graph distance buffer" in exact
    assert "kNN graph distance buffer" not in approximate
    assert sum(approximate.values()) < sum(exact.values()) / 5
    # the rule itself: exact up to the threshold and off the CPU
    monkeypatch.undo()
    from skclust_ot.ot._graph import AUTO_EXACT_MAX_SAMPLES

    assert not memory._approximate_graph(AUTO_EXACT_MAX_SAMPLES, "cpu")
    assert not memory._approximate_graph(10 * AUTO_EXACT_MAX_SAMPLES, "cuda")


def test_block_graphs_are_kept_only_when_epochs_come_back_to_them():
    kw = {"n_clusters": 100, "semantic_weight": 0.02}
    many_epochs = estimate(100_000, max_epochs=50, **kw)["training"]
    few_epochs = estimate(100_000, max_epochs=5, **kw)["training"]  # 5 blocks
    assert many_epochs["block kNN graphs (kept)"] == 5 * few_epochs["block kNN graphs (kept)"]


def test_a_large_distributed_fit_holds_its_shard_and_the_landmarks_not_every_row():
    def rows_held(n_samples, **params):
        est = SP2OTClustering(n_clusters=50, distributed=True, **params)
        config = resolve_config(est, n_samples, seed=0)
        whole = estimate_fit_memory(config, n_samples, 64, 50, params=est,
                                    n_local=n_samples // 2)["whole fit"]
        return {name: size for name, size in whole.items() if "rows" in name}

    from skclust_ot import _defaults as defaults

    landmarks = defaults.GRAPH_START_MAX_ROWS * 64 * 4
    # the default (no semantic term above 20,000 rows): the landmarks only
    assert rows_held(10**6) == {"all ranks' sampled rows": landmarks}
    assert rows_held(10**7) == rows_held(10**6)
    # a semantic term over all rows needs every row on every rank
    assert rows_held(10**6, semantic_weight=0.02) == {"all ranks' rows": 10**6 * 64 * 4}
    # small data: every row (at most 20,000 of them)
    assert rows_held(10_000) == {"all ranks' rows": 10_000 * 64 * 4}
