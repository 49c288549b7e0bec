"""The ``skclust-ot`` command on real files.

Every input format runs the real command as a subprocess. The many error
paths call ``main`` in this process (same code, same files, same exit status)
because each subprocess pays about 3 s of torch and scikit-learn start-up; one
error case also runs as a subprocess, to check the status reaches the shell.
"""

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

N_ROWS = 60
N_CLUSTERS = 3
HAS_PARQUET = importlib.util.find_spec("pyarrow") is not None
needs_parquet = pytest.mark.skipif(not HAS_PARQUET, reason="writing Parquet needs pyarrow")
# One thread: tiny fits, and a loaded machine (see conftest.py).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(*args):
    return [sys.executable, "-m", "skclust_ot.cli", *map(str, args)]


def run_cli(*args, cwd=None):
    return subprocess.run(_command(*args), capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=120)


def run_in_process(args, cwd, capsys, monkeypatch):
    """``main(args)`` in this process: the error paths, without a start-up each."""
    from skclust_ot.cli import main

    monkeypatch.chdir(cwd)
    try:
        status = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def three_blobs_frame():
    """Three separated groups of sizes 36, 16, 8, plus a text column."""
    rng = np.random.default_rng(0)
    sizes = [36, 16, 8]
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 3.0], [0.0, 6.0, -3.0]])
    X = np.vstack([rng.normal(c, 0.5, (n, 3)) for c, n in zip(centres, sizes)])
    frame = pd.DataFrame(X, columns=["width", "height", "depth"])
    frame.insert(1, "species", np.repeat(["a", "b", "c"], sizes))
    return frame


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli_data")
    frame = three_blobs_frame()
    frame.to_csv(directory / "blobs.csv", index=False)
    if HAS_PARQUET:
        frame.to_parquet(directory / "blobs.parquet")
    np.save(directory / "blobs.npy", frame[["width", "height", "depth"]].to_numpy())

    with_nan = frame.copy()
    with_nan.loc[[4, 11], "height"] = np.nan
    with_nan.loc[20, "depth"] = np.inf
    with_nan.to_csv(directory / "nan.csv", index=False)
    if HAS_PARQUET:
        with_nan.to_parquet(directory / "nan.parquet")
    frame[["species"]].to_csv(directory / "text_only.csv", index=False)
    frame.head(2).to_csv(directory / "two_rows.csv", index=False)
    (directory / "garbage.parquet").write_bytes(b"this is not a parquet file\n")
    (directory / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    (directory / "blobs.xlsx").write_bytes(b"PK\x03\x04")
    (directory / "existing.csv").write_text("label\n7\n")
    return directory


def assert_success(result):
    assert result.returncode == 0, result.stderr
    assert "cluster sizes" in result.stderr
    assert "on cpu" in result.stderr


def test_help_describes_formats_and_examples(capsys, monkeypatch, tmp_path):
    status, stdout, _ = run_in_process(["--help"], tmp_path, capsys, monkeypatch)
    assert status == 0
    for text in (".csv", ".tsv", ".npy", ".parquet", "--drop-nan", "--overwrite",
                 "examples:", "StandardScaler", "sp2ot", "balanced"):
        assert text in stdout


def test_csv_to_stdout_skips_text_column(data_dir):
    path = data_dir / "blobs.csv"
    before = digest(path)
    result = run_cli(path, "-k", N_CLUSTERS, "--epochs", 2, "--device", "cpu", "-v")
    assert_success(result)
    assert digest(path) == before
    assert "'species'" in result.stderr and "skipping non-numeric" in result.stderr
    # progress (-v) goes to stderr, so stdout is clean CSV
    assert "epoch" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "label"
    labels = np.array(lines[1:], dtype=int)
    assert labels.shape == (N_ROWS,)
    assert set(labels) <= set(range(N_CLUSTERS))


def test_tsv_to_csv_with_proba_and_drop_nan(data_dir, tmp_path):
    source = data_dir / "nan.csv"
    tsv = tmp_path / "nan.tsv"
    pd.read_csv(source).to_csv(tsv, sep="\t", index=False)
    before = digest(tsv)
    out = tmp_path / "labels.csv"
    out.write_text("old\n")
    result = run_cli(tsv, "-k", N_CLUSTERS, "--epochs", 2, "--device", "cpu",
                     "--proba", "--drop-nan", "-o", out, "--overwrite")
    assert_success(result)
    assert digest(tsv) == before
    assert result.stdout == ""
    assert "dropping 3 row(s) (4, 11, 20" in result.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["label"] + [f"proba_{j}" for j in range(N_CLUSTERS)]
    assert len(table) == N_ROWS
    dropped = [4, 11, 20]
    assert (table.loc[dropped, "label"] == -1).all()
    assert table.loc[dropped].iloc[:, 1:].isna().all().all()
    kept = table.drop(index=dropped)
    assert kept["label"].between(0, N_CLUSTERS - 1).all()
    np.testing.assert_allclose(kept.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-4)


def test_npy_to_npy_with_proba(data_dir, tmp_path):
    path = data_dir / "blobs.npy"
    before = digest(path)
    out = tmp_path / "labels.npy"
    result = run_cli(path, "-k", N_CLUSTERS, "--epochs", 2, "--device", "cpu",
                     "--variant", "p2ot", "--proba", "-o", out)
    assert_success(result)
    assert digest(path) == before
    labels = np.load(out)
    proba = np.load(tmp_path / "labels_proba.npy")
    assert labels.shape == (N_ROWS,) and labels.dtype.kind == "i"
    assert proba.shape == (N_ROWS, N_CLUSTERS)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(proba.argmax(axis=1), labels)


@needs_parquet
def test_parquet_selected_columns_standardized(data_dir, tmp_path):
    path = data_dir / "blobs.parquet"
    before = digest(path)
    out = tmp_path / "labels.csv"
    result = run_cli(path, "-k", N_CLUSTERS, "--epochs", 2, "--device", "cpu",
                     "--columns", "width,height", "--standardize", "--seed", 3, "-o", out)
    assert_success(result)
    assert digest(path) == before
    assert "skipping" not in result.stderr  # explicit columns: nothing to report
    assert "x 2 columns" in result.stderr
    labels = pd.read_csv(out)["label"]
    assert len(labels) == N_ROWS


# (name, arguments relative to data_dir, expected text in the error line)
ERROR_CASES = {
    "missing_file": (["nowhere.csv"], "does not exist"),
    "unknown_format": (["blobs.xlsx"], "'.xlsx'"),
    "unreadable_parquet": (["garbage.parquet"], "cannot read"),
    "unreadable_npy": (["garbage.npy"], "cannot read"),
    "no_numeric_columns": (["text_only.csv"], "no numeric columns"),
    "nan_in_data": (["nan.csv"], "--drop-nan"),
    "nan_in_parquet": (["nan.parquet"], "'height'"),
    "too_few_rows": (["two_rows.csv", "-k", "3"], "lower -k"),
    "missing_column": (["blobs.csv", "--columns", "width,weight"], "'weight' not found"),
    "text_column_selected": (["blobs.csv", "--columns", "width,species"], "not numeric"),
    "npy_column_out_of_range": (["blobs.npy", "--columns", "0,9"], "0-based"),
    "output_exists": (["blobs.csv", "-o", "existing.csv"], "--overwrite"),
    "output_is_input": (["blobs.csv", "-o", "blobs.csv", "--overwrite"], "is the input"),
    "unknown_output_format": (["blobs.csv", "-o", "labels.txt"], ".csv or .npy"),
    "zero_clusters": (["blobs.csv", "-k", "0"], "positive integer"),
    "unknown_variant": (["blobs.csv", "--variant", "kmeans"], "invalid choice"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input_gives_one_line_error(case, data_dir, capsys, monkeypatch):
    args, expected = ERROR_CASES[case]
    if "parquet" in case and not HAS_PARQUET:
        pytest.skip("writing Parquet needs pyarrow")
    digests = {p.name: digest(p) for p in data_dir.iterdir()}
    status, stdout, stderr = run_in_process(args, data_dir, capsys, monkeypatch)
    assert status == 2, stderr
    assert stdout == ""
    error_lines = [line for line in stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, stderr
    assert expected in error_lines[0]
    assert {p.name: digest(p) for p in data_dir.iterdir()} == digests
    assert not (data_dir / "labels.txt").exists()


def test_nan_error_names_rows_and_columns(data_dir, capsys, monkeypatch):
    _, _, stderr = run_in_process(["nan.csv"], data_dir, capsys, monkeypatch)
    assert "3 row(s) (4, 11, 20" in stderr
    assert "'height'" in stderr and "'depth'" in stderr


def test_error_exit_status_reaches_the_shell(data_dir):
    path = data_dir / "nan.csv"
    before = digest(path)
    result = run_cli(path, "-k", N_CLUSTERS, "-o", data_dir / "never.csv")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1].startswith("skclust-ot: error: missing")
    assert "Traceback" not in result.stderr
    assert digest(path) == before
    assert not (data_dir / "never.csv").exists()


# --------------------------------------------------------------------------- #
# header row of .csv/.tsv (#15): one output row per input data row
# --------------------------------------------------------------------------- #
def _numbers(n_rows=N_ROWS):
    return three_blobs_frame()[["width", "height", "depth"]].to_numpy()[:n_rows]


def _write_headerless(path, sep=","):
    np.savetxt(path, _numbers(), delimiter=sep, fmt="%.6f")


# (file writer, extra arguments, whether the note about the first row is expected)
HEADER_CASES = {
    "named_header": (lambda p: three_blobs_frame().to_csv(p, index=False), [], False),
    "headerless_detected": (_write_headerless, [], True),
    "headerless_given": (_write_headerless, ["--no-header"], False),
    "headerless_tsv": (lambda p: _write_headerless(p, sep="\t"), [], True),
    "pandas_default_header": (
        lambda p: pd.DataFrame(_numbers()).to_csv(p, index=False), [], False),
    "numeric_names_forced": (
        lambda p: pd.DataFrame(_numbers(), columns=["2019", "2020", "2021"]).to_csv(
            p, index=False), ["--header"], False),
    "headerless_with_missing_value": (
        lambda p: (_write_headerless(p), p.write_text(",1.5,2\n" + p.read_text())),
        ["--drop-nan"], True),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_output_has_one_row_per_input_data_row(case, tmp_path, capsys, monkeypatch):
    write, extra, note = HEADER_CASES[case]
    source = tmp_path / ("data.tsv" if "tsv" in case else "data.csv")
    write(source)
    n_data_rows = len(source.read_text().splitlines()) - (0 if "headerless" in case else 1)
    status, _, stderr = run_in_process(
        [source, "-k", N_CLUSTERS, "--epochs", 1, "--device", "cpu", "-o", "out.csv",
         *extra], tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert len(pd.read_csv(tmp_path / "out.csv")) == n_data_rows
    assert f"clustered {n_data_rows - ('missing' in case)} rows" in stderr
    assert ("is read as data (no header row" in stderr) == note


def test_headerless_columns_are_named_by_index(tmp_path, capsys, monkeypatch):
    _write_headerless(tmp_path / "data.csv")
    status, _, stderr = run_in_process(
        ["data.csv", "-k", N_CLUSTERS, "--epochs", 1, "--device", "cpu", "--no-header",
         "--columns", "0,2", "-o", "out.csv"], tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert "x 2 columns" in stderr


def test_header_options_are_for_text_tables_only(data_dir, capsys, monkeypatch):
    status, _, stderr = run_in_process(["blobs.npy", "--no-header"], data_dir, capsys,
                                       monkeypatch)
    assert status == 2 and "--no-header applies to .csv and .tsv" in stderr


# --------------------------------------------------------------------------- #
# empty clusters and outliers (#15)
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def outliers_csv(tmp_path_factory):
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(300, n_features=4, centers=10, random_state=0)
    X = np.vstack([X, np.full((3, 4), 1e4)])  # three far outliers
    path = tmp_path_factory.mktemp("outliers") / "outliers.csv"
    pd.DataFrame(X, columns=list("abcd")).to_csv(path, index=False)
    return path


def _summary_line(stderr):
    return next(line for line in stderr.splitlines() if "clustered" in line)


def test_summary_counts_non_empty_clusters_and_names_the_outliers(
        outliers_csv, tmp_path, capsys, monkeypatch):
    status, _, stderr = run_in_process(
        [outliers_csv, "-k", 10, "--epochs", 3, "--device", "cpu", "-o", "out.csv"],
        tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    summary = _summary_line(stderr)
    assert "non-empty cluster" in summary and "of the 10 asked" in summary
    assert "into 10 clusters" not in summary
    n_found = int(summary.split(" into ")[1].split()[0])
    labels = pd.read_csv(tmp_path / "out.csv")["label"]
    assert labels.nunique() == n_found < 10
    assert "likely cause: a few far outliers" in stderr
    # the warning's advice is given as the option that follows it
    assert "Use --standardize robust" in stderr and "standardize='robust'" not in stderr
    # the summary replaces the estimator's own empty-cluster warning
    assert "duplicate points" not in stderr


def test_standardize_robust_reaches_the_estimator(outliers_csv, tmp_path, capsys,
                                                  monkeypatch):
    import skclust_ot.cli as cli

    seen = {}
    original = cli._fit

    def spy(X, args):
        result = original(X, args)
        seen["standardize"] = result[0].standardize
        return result

    monkeypatch.setattr(cli, "_fit", spy)
    status, _, stderr = run_in_process(
        [outliers_csv, "-k", 10, "--epochs", 3, "--device", "cpu", "-o", "out.csv",
         "--standardize", "robust"], tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert seen["standardize"] == "robust"
    assert "dominated by a few far values" not in stderr


@pytest.mark.parametrize("value", ["global", "feature", "none"])
def test_standardize_values(value, data_dir, tmp_path, capsys, monkeypatch):
    status, _, stderr = run_in_process(
        [data_dir / "blobs.csv", "-k", N_CLUSTERS, "--epochs", 1, "--device", "cpu",
         "-o", tmp_path / "out.csv", "--standardize", value], tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert "deprecated" not in stderr


def test_bare_standardize_is_deprecated_and_means_feature(data_dir, tmp_path, capsys,
                                                          monkeypatch):
    status, _, stderr = run_in_process(
        [data_dir / "blobs.csv", "-k", N_CLUSTERS, "--epochs", 1, "--device", "cpu",
         "-o", tmp_path / "out.csv", "--standardize"], tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert "means --standardize feature" in stderr


def test_unknown_standardize_value_is_a_usage_error(data_dir, capsys, monkeypatch):
    status, _, stderr = run_in_process(["blobs.csv", "--standardize", "minmax"], data_dir,
                                       capsys, monkeypatch)
    assert status == 2 and "expected global, feature, robust or none" in stderr


# --------------------------------------------------------------------------- #
# polish (#15): --version, python -m skclust_ot, --sep, a fast --help, progress
# --------------------------------------------------------------------------- #
def test_version(capsys, monkeypatch, tmp_path):
    from skclust_ot import __version__

    status, stdout, _ = run_in_process(["--version"], tmp_path, capsys, monkeypatch)
    assert status == 0 and stdout.strip() == f"skclust-ot {__version__}"


def test_python_dash_m_skclust_ot_runs_the_command(data_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "skclust_ot", *map(str, [
            data_dir / "blobs.csv", "-k", N_CLUSTERS, "--epochs", 1, "--device", "cpu",
            "-o", tmp_path / "out.csv"])],
        capture_output=True, text=True, env=ENV, timeout=120)
    assert_success(result)
    assert len(pd.read_csv(tmp_path / "out.csv")) == N_ROWS


def test_help_imports_neither_torch_nor_scikit_learn():
    code = ("import sys\n"
            "from skclust_ot.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = ('torch', 'sklearn', 'skorch', 'scipy', 'pandas')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_variant_names_match_the_estimators():
    from skclust_ot import VARIANTS
    from skclust_ot.cli import _VARIANT_HELP

    assert list(_VARIANT_HELP) == list(VARIANTS)


def _write_semicolon(path):
    pd.DataFrame(_numbers(), columns=["a", "b", "c"]).to_csv(path, sep=";", index=False)


@pytest.mark.parametrize("sep", [";", "tab", "\\t"])
def test_sep_reads_other_separators(sep, tmp_path, capsys, monkeypatch):
    source = tmp_path / "data.csv"
    if sep == ";":
        _write_semicolon(source)
    else:
        pd.DataFrame(_numbers()).to_csv(source, sep="\t", index=False)
    status, _, stderr = run_in_process(
        [source, "-k", N_CLUSTERS, "--epochs", 1, "--device", "cpu", "-o", "out.csv",
         "--sep", sep], tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert "x 3 columns" in stderr
    assert len(pd.read_csv(tmp_path / "out.csv")) == N_ROWS


def test_a_semicolon_file_read_with_commas_gets_a_hint(tmp_path, capsys, monkeypatch):
    _write_semicolon(tmp_path / "data.csv")
    status, _, stderr = run_in_process(["data.csv", "-k", N_CLUSTERS], tmp_path, capsys,
                                       monkeypatch)
    assert status == 2
    assert "pass --sep ';'" in stderr


def test_a_semicolon_file_with_decimal_commas_gets_a_hint(tmp_path, capsys, monkeypatch):
    rows = ["a;b;c"] + [f"{i},5;{i};{2 * i},25" for i in range(10)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    status, _, stderr = run_in_process(["data.csv", "-k", N_CLUSTERS], tmp_path, capsys,
                                       monkeypatch)
    assert status == 2
    assert "pass --sep ';'" in stderr


def test_rows_longer_than_the_header_are_an_error(tmp_path, capsys, monkeypatch):
    (tmp_path / "data.csv").write_text("a,b\n" + "".join(f"{i},{i},{i}\n" for i in range(9)))
    status, _, stderr = run_in_process(["data.csv", "-k", 2], tmp_path, capsys, monkeypatch)
    assert status == 2
    assert "rows have more fields than its header row (2 names)" in stderr


def test_sep_is_for_text_tables_only(data_dir, capsys, monkeypatch):
    status, _, stderr = run_in_process(["blobs.npy", "--sep", ";"], data_dir, capsys,
                                       monkeypatch)
    assert status == 2 and "--sep applies to .csv and .tsv" in stderr


def _fit_blobs(data_dir, tmp_path, capsys, monkeypatch, *extra):
    return run_in_process(
        [data_dir / "blobs.csv", "-k", N_CLUSTERS, "--epochs", 3, "--device", "cpu",
         "-o", tmp_path / "out.csv", *extra], tmp_path, capsys, monkeypatch)


def test_progress_bar_when_stderr_is_a_terminal(data_dir, tmp_path, capsys, monkeypatch):
    import skclust_ot.cli as cli

    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    status, stdout, stderr = _fit_blobs(data_dir, tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert "training" in stderr and "epoch" in stderr
    assert "clustered 60 rows" in stderr and stdout == ""


def test_progress_without_tqdm_is_a_counter(data_dir, tmp_path, capsys, monkeypatch):
    import skclust_ot.cli as cli

    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    monkeypatch.setattr(cli, "_TqdmBar", cli._CounterBar)
    status, _, stderr = _fit_blobs(data_dir, tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert "training, epoch 3/3" in stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal(data_dir, tmp_path, capsys,
                                                       monkeypatch):
    status, _, stderr = _fit_blobs(data_dir, tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    assert "training" not in stderr and "clustered 60 rows" in stderr


def test_quiet_silences_progress_and_summary(data_dir, tmp_path, capsys, monkeypatch):
    import skclust_ot.cli as cli

    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    status, _, stderr = _fit_blobs(data_dir, tmp_path, capsys, monkeypatch, "-q")
    assert status == 0, stderr
    assert "training" not in stderr and "clustered" not in stderr
    assert "wrote" not in stderr
    assert "skipping non-numeric column(s): 'species'" in stderr  # about the input: kept
    assert len(pd.read_csv(tmp_path / "out.csv")) == N_ROWS


def test_quiet_and_verbose_exclude_each_other(data_dir, capsys, monkeypatch):
    status, _, stderr = run_in_process(["blobs.csv", "-q", "-v"], data_dir, capsys,
                                       monkeypatch)
    assert status == 2 and "not allowed with" in stderr


@pytest.mark.parametrize("variant", [None, "sp2ot", "p2ot"])
def test_without_a_variant_the_estimator_keeps_its_defaults(variant, data_dir, tmp_path,
                                                             capsys, monkeypatch):
    import skclust_ot.cli as cli
    from skclust_ot import VARIANTS

    seen = {}
    original = cli._fit

    def spy(X, args):
        result = original(X, args)
        seen["params"] = result[0].get_params()
        return result

    monkeypatch.setattr(cli, "_fit", spy)
    argv = [data_dir / "blobs.csv", "-k", N_CLUSTERS, "--epochs", 1, "--device", "cpu",
            "-o", tmp_path / "out.csv"] + ([] if variant is None else ["--variant", variant])
    status, _, stderr = run_in_process(argv, tmp_path, capsys, monkeypatch)
    assert status == 0, stderr
    expected = {"semantic_weight": "auto"} if variant is None else VARIANTS[variant]
    assert {k: seen["params"][k] for k in expected} == expected
    assert f"({variant or 'defaults'}, 1 epoch)" in stderr
