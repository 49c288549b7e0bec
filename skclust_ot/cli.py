"""The ``skclust-ot`` command: cluster the rows of a CSV, TSV, NPY or Parquet file.

Reads a table, keeps its numeric columns (or the ones named), fits
:class:`skclust_ot.SP2OTClustering` and writes one label per input row (and
optionally the soft assignments) to CSV, NPY or standard output. Problems with
the input or the options end the command with a one-line message on stderr
and exit status 2; the input file is only ever read.

torch, scikit-learn and the estimator are imported only after the options
are parsed, so that ``--help`` and usage errors answer at once.
"""

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ._version import __version__

__all__ = ["main"]

PROG = "skclust-ot"
EXIT_OK = 0
EXIT_INPUT_ERROR = 2

_INPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".npy": "npy", ".parquet": "parquet"}
_OUTPUT_FORMATS = {".csv": "csv", ".npy": "npy"}
# pandas infers these from the name, so "data.csv.gz" reads like "data.csv".
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zip"}
_SHOWN_ROWS = 5
# --standardize: the estimator's `standardize` values; a bare --standardize
# (a flag until 0.x, which ran StandardScaler) means "feature".
_STANDARDIZE = ("global", "feature", "robust", "none")
_STANDARDIZE_BARE = object()  # not a str: argparse passes it through unchecked

_DESCRIPTION = """\
Cluster the rows of a data file with SP2OTClustering (clustering of imbalanced,
long-tailed data by semantic-regularized progressive partial optimal transport).

Input formats, by extension: .csv, .tsv, .parquet (tables) and .npy (a 2-D
numeric array). The numeric columns are used; other columns are reported on
stderr and skipped, never converted. Output: one cluster label per input data
row, in input order, to the -o file (.csv or .npy) or to stdout as CSV. A
summary (cluster sizes, time, device) is printed on stderr.

Header row of .csv/.tsv: the first row names the columns unless every one of
its cells is a number (or empty), in which case the file is read as headerless
(columns 0, 1, ...) and a note says so; the cells 0, 1, ..., n-1 (pandas'
default column names) count as a header. --header or --no-header overrides the
detection.
"""

# One line per entry of skclust_ot.VARIANTS (same names, same order: a test
# checks), for --help without importing the estimator.
_VARIANT_HELP = {
    "sp2ot": "progressive partial OT with the semantic kNN term (default)",
    "p2ot": "progressive partial OT, no semantic term (faster)",
    "pot": "progressive partial OT with equal cluster sizes",
    "uot": "unbalanced OT: free cluster sizes, all samples from the start",
    "balanced": "balanced OT: equal cluster sizes (SeLa-style baseline)",
}

_EPILOG = """\
variants (--variant NAME):
""" + "".join(f"  {name:<10}{text}\n" for name, text in _VARIANT_HELP.items()) + """
examples:
  skclust-ot penguins.csv -k 3 --standardize feature
      cluster the numeric columns into 3 groups, labels as CSV on stdout
  skclust-ot data.parquet -k 10 --columns bill_len,bill_dep -o labels.npy
      use two named columns, write the labels to a NumPy file
  skclust-ot embeddings.npy -k 5 --proba -o clusters.csv --epochs 100 -v
      labels and soft assignments (columns proba_0..proba_4), per-epoch progress
  skclust-ot data.tsv -k 4 --drop-nan --variant balanced -o out.csv --overwrite
      skip rows with missing values (label -1), equal-size clusters baseline

exit status: 0 on success, 2 for a usage or input error (message on stderr).
"""


class InputError(Exception):
    """A problem with the command's input or options: reported in one line, exit 2."""


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**32 - 1, got {text!r}")
    return value


def _device(text):
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(
            f"expected auto, cpu, cuda or cuda:<index>, got {text!r}")
    return text


def _standardize_choice(text):
    if text not in _STANDARDIZE:
        raise argparse.ArgumentTypeError(
            f"expected {', '.join(_STANDARDIZE[:-1])} or {_STANDARDIZE[-1]}, got {text!r}")
    return text


def _build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT",
                        help="data file: .csv, .tsv, .npy or .parquet (never modified)")
    parser.add_argument("--sep", metavar="SEP",
                        help="column separator of .csv/.tsv input, e.g. ';' (\\t or tab "
                             "for a tab; default: ',' for .csv, tab for .tsv)")
    parser.add_argument("-k", "--n-clusters", type=_positive_int, default=8, metavar="K",
                        help="number of clusters (default: 8)")
    parser.add_argument("--columns", metavar="A,B,...",
                        help="comma-separated columns to use (names for tables, 0-based "
                             "indices for .npy and headerless tables); default: every "
                             "numeric column. Use it to leave out ids or known labels")
    header = parser.add_mutually_exclusive_group()
    header.add_argument("--header", dest="header", action="store_const", const=True,
                        default=None,
                        help="the first row of a .csv/.tsv names the columns, even if "
                             "all its cells are numbers")
    header.add_argument("--no-header", dest="header", action="store_const", const=False,
                        help="a .csv/.tsv has no header row: every row is data, the "
                             "columns are named 0, 1, ... (default: detected, see above)")
    parser.add_argument("--drop-nan", action="store_true",
                        help="skip rows with missing (NaN) or infinite values in the used "
                             "columns; they get label -1 so the output stays aligned with "
                             "the input (default: such rows are an error)")
    parser.add_argument("--standardize", type=_standardize_choice, nargs="?",
                        const=_STANDARDIZE_BARE, default="global",
                        metavar="{global,feature,robust,none}",
                        help="input scaling (default: global). global: centre the columns "
                             "and divide them all by one scale, which keeps their relative "
                             "scales, as k-means sees them; feature: each column to zero "
                             "mean and unit variance (as scikit-learn's StandardScaler), "
                             "for columns in unrelated units; robust: as global with "
                             "outlier-proof statistics (medians, interquartile ranges) and "
                             "far values clipped, for data with a few far outliers; none: "
                             "values as they are. A bare --standardize (deprecated) means "
                             "feature")
    parser.add_argument("--variant", choices=sorted(_VARIANT_HELP), default="sp2ot",
                        metavar="NAME",
                        help="OT variant of the pseudo-labels, listed below (default: sp2ot)")
    parser.add_argument("--epochs", type=_positive_int, default=50, metavar="N",
                        help="training epochs (default: 50)")
    parser.add_argument("--device", type=_device, default="auto",
                        metavar="{auto,cpu,cuda}",
                        help="where to train: auto uses CUDA when available (default: auto)")
    parser.add_argument("--seed", type=_seed, default=0, metavar="S",
                        help="random seed; the same file and seed give the same labels "
                             "(default: 0)")
    parser.add_argument("-o", "--output", metavar="PATH",
                        help="write labels to PATH, .csv (column 'label') or .npy; "
                             "-o out.npy --proba also writes out_proba.npy "
                             "(default: CSV on stdout)")
    parser.add_argument("--proba", action="store_true",
                        help="also write the soft assignments (one column per cluster, "
                             "rows sum to 1)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files (default: refuse)")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="show the set-up steps and a per-epoch table (loss, rho, "
                           "solver iterations) on stderr")
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="no progress bar and no summary; notes about the input, "
                           "warnings and errors are still shown (default: a progress "
                           "bar when stderr is a terminal)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _note(message):
    print(f"{PROG}: {message}", file=sys.stderr)


# ---------------------------------------------------------------------- #
# input
# ---------------------------------------------------------------------- #
def _input_format(path):
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix not in _INPUT_FORMATS:
        shown = f"'{suffix}'" if suffix else "no extension"
        raise InputError(
            f"cannot tell the format of '{path}' ({shown}); use a .csv, .tsv, .npy or "
            ".parquet file")
    return _INPUT_FORMATS[suffix]


def _import_pandas(fmt):
    try:
        import pandas
    except ImportError:
        raise InputError(
            f"reading {fmt.upper()} files needs pandas: pip install pandas"
            + (" pyarrow" if fmt == "parquet" else "")) from None
    return pandas


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _is_number(cell):
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _looks_like_data(cells):
    """Whether a first row of text cells is data rather than column names.

    Data: every cell is a number or empty (a missing value), at least one is
    a number, and the cells are not 0, 1, ..., n-1 (the column names pandas
    writes for an unnamed frame).
    """
    cells = [c.strip() for c in cells]
    numbers = [c for c in cells if c]
    if not numbers or not all(_is_number(c) for c in numbers):
        return False
    return numbers != [str(i) for i in range(len(numbers))]


def _has_header(pd, path, sep, header):
    """``header`` (True/False from the options) or detected from the first row."""
    if header is not None:
        return header
    first = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str,
                        keep_default_na=False)
    if len(first) and _looks_like_data(first.iloc[0].tolist()):
        _note(f"the first row of '{path}' is all numbers, so it is read as data (no "
              "header row; columns 0, 1, ...); pass --header if it names the columns")
        return False
    return True


def _separator(fmt, sep):
    if sep is None:
        return "\t" if fmt == "tsv" else ","
    if fmt not in ("csv", "tsv"):
        raise InputError(f"--sep applies to .csv and .tsv input, not .{fmt}")
    if sep in ("\\t", "tab"):
        return "\t"
    if not sep:
        raise InputError("--sep is empty; give the column separator, e.g. --sep ';'")
    return sep


_SEMICOLON_HINT = "it looks separated by ';', not ','; pass --sep ';'"


def _hint_separator(frame, path, fmt, sep_given):
    """A note when a .csv read with ',' has one column (or no numeric one) holding ';'."""
    if sep_given or fmt != "csv":
        return
    head = frame.head(20)
    if len(head.columns) > 1 and any(_is_numeric(head[c]) for c in head.columns):
        return
    texts = [str(c) for c in head.columns] + [
        str(v) for c in head.columns if not _is_numeric(head[c]) for v in head[c]]
    if any(";" in t for t in texts):
        _note(f"'{path}': {_SEMICOLON_HINT}")


def _semicolon_separated(pd, path):
    """Whether the first rows of ``path`` split into several columns at ';'."""
    try:
        return pd.read_csv(path, sep=";", header=None, nrows=5, dtype=str).shape[1] > 1
    except Exception:  # any parser failure: no hint
        return False


def _read_csv(pd, path, sep, has_header):
    """``pd.read_csv``, refusing rows with more fields than the header row.

    (By default pandas silently makes the extra leading fields the index:
    their values would be lost from the features.)
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        data = pd.read_csv(path, sep=sep, header=0 if has_header else None,
                           index_col=False, engine="python" if len(sep) > 1 else None)
    if any(issubclass(w.category, pd.errors.ParserWarning)
           and "Length of header" in str(w.message) for w in caught):
        n = len(data.columns)
        raise ValueError(f"some data rows have more fields than its header row "
                         f"({n} name{'s' if n != 1 else ''})")
    return data


def _read_table(path, fmt, header=None, sep=None):
    """The file as a DataFrame (tables) or a 2-D ndarray (.npy), and whether it had a header.

    ``header`` (.csv/.tsv only): True or False as given by the options, None
    to detect it from the first row. ``sep``: the --sep option (None: by
    extension).
    """
    if not path.exists():
        raise InputError(f"input file '{path}' does not exist")
    if path.is_dir():
        raise InputError(f"input '{path}' is a directory, not a file")
    if header is not None and fmt not in ("csv", "tsv"):
        option = "--header" if header else "--no-header"
        raise InputError(f"{option} applies to .csv and .tsv input, not .{fmt}")
    has_header = fmt == "parquet"
    separator = _separator(fmt, sep)
    try:
        if fmt == "npy":
            data = np.load(path, allow_pickle=False)
        else:
            pd = _import_pandas(fmt)
            if fmt == "parquet":
                data = pd.read_parquet(path)
            else:
                has_header = _has_header(pd, path, separator, header)
                data = _read_csv(pd, path, separator, has_header)
                _hint_separator(data, path, fmt, sep is not None)
    except InputError:
        raise
    except ImportError as exc:  # pandas without a parquet engine
        raise InputError(
            f"cannot read '{path}': {_first_line(exc)} (pip install pyarrow)") from None
    except PermissionError:
        raise InputError(f"cannot read '{path}': permission denied") from None
    except Exception as exc:  # parsers raise many types for a malformed file
        hint = ""
        if fmt == "csv" and sep is None and _semicolon_separated(pd, path):
            hint = f"; {_SEMICOLON_HINT}"
        raise InputError(
            f"cannot read '{path}' as {fmt.upper()}: {_first_line(exc)}{hint}") from None
    return data, has_header


def _select_npy_columns(array, columns, path):
    if array.ndim != 2:
        hint = (" For a single feature save x.reshape(-1, 1)." if array.ndim == 1 else
                " Images and other shapes need a custom encoder: use the Python API "
                "(SP2OTClustering(encoder=...)).")
        raise InputError(
            f"'{path}' holds an array of shape {array.shape}; expected 2-D "
            f"(n_samples, n_features).{hint}")
    if array.dtype.kind not in "iuf":
        raise InputError(
            f"'{path}' holds an array of dtype {array.dtype}; expected numbers "
            "(integer or float)")
    names = [str(i) for i in range(array.shape[1])]
    if columns is None:
        return array.astype(np.float64), names
    indices = []
    for name in columns:
        if not re.fullmatch(r"\d+", name) or int(name) >= array.shape[1]:
            raise InputError(
                f"--columns: '{name}' is not a column of '{path}'; for .npy input give "
                f"0-based indices below {array.shape[1]}")
        indices.append(int(name))
    return array[:, indices].astype(np.float64), [names[i] for i in indices]


def _is_numeric(series):
    from pandas.api import types

    return (types.is_numeric_dtype(series.dtype) and not types.is_bool_dtype(series.dtype)
            and not types.is_complex_dtype(series.dtype))


def _select_table_columns(frame, columns, path):
    if columns is not None:
        names = list(map(str, frame.columns))
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(
                f"--columns: {', '.join(repr(c) for c in missing)} not found in '{path}'; "
                f"its columns are {', '.join(repr(c) for c in names[:20])}"
                + (", ..." if len(names) > 20 else ""))
        by_name = dict(zip(names, frame.columns))
        selected = frame[[by_name[c] for c in columns]]
        bad = [f"'{c}' ({selected[by_name[c]].dtype})" for c in columns
               if not _is_numeric(selected[by_name[c]])]
        if bad:
            raise InputError(
                f"--columns: {', '.join(bad)} not numeric; choose numeric columns "
                "(text is never converted to numbers)")
    else:
        numeric = [c for c in frame.columns if _is_numeric(frame[c])]
        skipped = [c for c in frame.columns if c not in numeric]
        if skipped:
            _note("skipping non-numeric column(s): " + ", ".join(
                f"'{c}' ({frame[c].dtype})" for c in skipped))
        if not numeric:
            raise InputError(
                f"'{path}' has no numeric columns (found {len(frame.columns)} "
                "non-numeric); clustering needs numbers")
        selected = frame[numeric]
    return selected.to_numpy(dtype=np.float64), [str(c) for c in selected.columns]


def _warn_index_like(X, names):
    """A column 0, 1, 2, ... is usually a saved row index, not a feature."""
    n = X.shape[0]
    if n < 3:
        return
    for j, name in enumerate(names):
        column = X[:, j]
        if (np.array_equal(column, np.arange(n)) or np.array_equal(column, np.arange(1, n + 1))):
            _note(f"warning: column '{name}' counts rows (0, 1, 2, ...), like a saved "
                  "index; it is used as a feature unless you pass --columns without it")


def _describe_rows(rows, has_header):
    shown = ", ".join(str(r) for r in rows[:_SHOWN_ROWS])
    more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
    header = ", header excluded" if has_header else ""
    return f"{len(rows)} row(s) ({shown}{more}; counting from 0{header})"


def _check_finite(X, names, drop_nan, has_header):
    """Boolean mask of the rows kept; raise on missing values without --drop-nan."""
    bad = ~np.isfinite(X)
    bad_rows = np.flatnonzero(bad.any(axis=1))
    if bad_rows.size == 0:
        return np.ones(X.shape[0], dtype=bool)
    bad_cols = [names[j] for j in np.flatnonzero(bad.any(axis=0))]
    cols = ", ".join(f"'{c}'" for c in bad_cols[:_SHOWN_ROWS])
    if len(bad_cols) > _SHOWN_ROWS:
        cols += f" and {len(bad_cols) - _SHOWN_ROWS} more"
    where = f"{_describe_rows(bad_rows.tolist(), has_header)} in column(s) {cols}"
    if not drop_nan:
        raise InputError(
            f"missing or infinite values in {where}; pass --drop-nan to skip those rows, "
            "or fill them first")
    _note(f"dropping {where}; they get label -1")
    return ~bad.any(axis=1)


def _load_features(args):
    path = Path(args.input)
    fmt = _input_format(path)
    data, has_header = _read_table(path, fmt, args.header, args.sep)
    columns = None
    if args.columns is not None:
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
        if not columns:
            raise InputError("--columns is empty; give comma-separated column names")
    if len(data) == 0:
        raise InputError(f"'{path}' has no data rows")
    if fmt == "npy":
        X, names = _select_npy_columns(data, columns, path)
    else:
        X, names = _select_table_columns(data, columns, path)
    _warn_index_like(X, names)
    keep = _check_finite(X, names, args.drop_nan, has_header=has_header and fmt != "parquet")
    n_kept = int(keep.sum())
    if n_kept < max(2, args.n_clusters):
        after = " after dropping rows with missing values" if n_kept < X.shape[0] else ""
        raise InputError(
            f"{n_kept} row(s){after} but {args.n_clusters} cluster(s) requested; need at "
            f"least as many rows as clusters (and 2), lower -k/--n-clusters")
    return X, names, keep


# ---------------------------------------------------------------------- #
# output
# ---------------------------------------------------------------------- #
def _output_paths(args):
    """Output files to write, checked before the (long) fit."""
    if args.output is None:
        return None, []
    out = Path(args.output)
    fmt = _OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the output format of '{out}'; use a .csv or .npy file name, "
            "or leave out -o for CSV on stdout")
    paths = [out]
    if fmt == "npy" and args.proba:
        paths.append(out.with_name(out.stem + "_proba.npy"))
    source = Path(args.input).resolve()
    for p in paths:
        if p.resolve() == source:
            raise InputError(f"output '{p}' is the input file; choose another -o")
        if p.is_dir():
            raise InputError(f"output '{p}' is a directory; give a file name")
        if p.exists() and not args.overwrite:
            raise InputError(f"output file '{p}' exists; pass --overwrite to replace it")
        if not p.parent.is_dir():
            raise InputError(f"output directory '{p.parent}' does not exist")
    return fmt, paths


def _csv_text(labels, proba):
    header = ["label"]
    columns = [labels.astype(str)]
    if proba is not None:
        header += [f"proba_{j}" for j in range(proba.shape[1])]
        text = np.char.mod("%.6g", proba)
        text[np.isnan(proba)] = ""
        columns += list(text.T)
    rows = [",".join(header)]
    rows += [",".join(values) for values in zip(*columns)]
    return "\n".join(rows) + "\n"


def _write_atomic(path, write):
    """Write through a temporary file so a failure leaves no half-written output."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_outputs(fmt, paths, labels, proba, quiet=False):
    if fmt is None:
        sys.stdout.write(_csv_text(labels, proba))
        sys.stdout.flush()
        return
    try:
        if fmt == "csv":
            text = _csv_text(labels, proba).encode()
            _write_atomic(paths[0], lambda handle: handle.write(text))
        else:
            _write_atomic(paths[0], lambda handle: np.save(handle, labels))
            if proba is not None:
                _write_atomic(paths[1], lambda handle: np.save(handle, proba))
    except OSError as exc:
        raise InputError(
            f"cannot write '{paths[0]}': {exc.strerror or exc}; no output written") from None
    if not quiet:
        _note("wrote " + " and ".join(f"'{p}'" for p in paths))


# ---------------------------------------------------------------------- #
# the command
# ---------------------------------------------------------------------- #
def _check_device(device):
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(
                f"--device {device} was requested but CUDA is not available here; use "
                "--device auto (CUDA when present, else CPU) or --device cpu")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise InputError(
                f"--device {device} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible")


def _progress(args):
    """The progress-bar callback: by default when stderr is a terminal."""
    if args.quiet or args.verbose or not _stderr_is_terminal():
        return None
    from skorch.callbacks import Callback

    class EpochProgress(Callback):
        """One bar over the epochs (tqdm when installed, else a counter line)."""

        def __init__(self, total):
            self.total = total
            self.bar = None

        def __deepcopy__(self, memo):
            return self  # the estimator copies callbacks; close() must reach this one

        def on_train_begin(self, net, **kwargs):
            self.bar = _bar(self.total)

        def on_epoch_end(self, net, **kwargs):
            row = net.history[-1]
            self.bar.update(row.get("train_loss"), row.get("rho"))

        def on_train_end(self, net, **kwargs):
            self.close()

        def close(self):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return EpochProgress(args.epochs)


def _stderr_is_terminal():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class _CounterBar:
    """``epoch i/N`` rewritten in place on stderr (when tqdm is not installed)."""

    def __init__(self, total):
        self.total, self.done, self.width = total, 0, 0
        self._show("")

    def _show(self, extra):
        text = f"{PROG}: training, epoch {self.done}/{self.total}{extra}"
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = max(self.width, len(text))

    def update(self, loss, rho):
        self.done += 1
        extra = "" if loss is None else f", loss {loss:.4g}"
        extra += "" if rho is None else f", rho {rho:.3f}"
        self._show(extra)

    def close(self):
        sys.stderr.write("\r" + " " * self.width + "\r")
        sys.stderr.flush()


class _TqdmBar:
    def __init__(self, total):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc="training", unit="epoch", file=sys.stderr,
                        leave=False, dynamic_ncols=True)

    def update(self, loss, rho):
        postfix = {}
        if loss is not None:
            postfix["loss"] = f"{loss:.4g}"
        if rho is not None:
            postfix["rho"] = f"{rho:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()


def _bar(total):
    import importlib.util

    return (_TqdmBar if importlib.util.find_spec("tqdm") else _CounterBar)(total)


def _standardize_value(args):
    return "feature" if args.standardize is _STANDARDIZE_BARE else args.standardize


def _standardize(args):
    if args.standardize is _STANDARDIZE_BARE:
        _note("a bare --standardize is deprecated; it means --standardize feature "
              "(also: global, robust, none)")
    return _standardize_value(args)


def _fit(X, args):
    """Fitted estimator, labels, soft assignments (or None), and the warning classes seen."""
    from . import VARIANTS, SP2OTClustering
    from .exceptions import ConvergenceWarning, OutlierWarning

    progress = _progress(args)
    est = SP2OTClustering(
        n_clusters=args.n_clusters,
        max_epochs=args.epochs,
        device=args.device,
        random_state=args.seed,
        standardize=_standardize(args),
        verbose=int(args.verbose),
        callbacks=None if progress is None else [("progress", progress)],
        **VARIANTS[args.variant],
    )
    # Progress goes to stderr so that labels on stdout stay clean CSV.
    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("always")
        try:
            labels = est.fit(X).labels_
        finally:
            if progress is not None:
                progress.close()
        proba = est.predict_proba(X) if args.proba else None
    # Library deprecations concern developers, not the person running the command;
    # the summary reports empty clusters, with their likely cause.
    shown = [w for w in caught if not issubclass(
        w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning))
        and not (issubclass(w.category, ConvergenceWarning)
                 and "distinct clusters" in str(w.message))]
    for w in shown:
        message = str(w.message)
        if issubclass(w.category, OutlierWarning):  # its advice, as an option
            message = message.replace("standardize='robust'", "--standardize robust")
        _note(f"warning: {message}")
    return est, labels, proba, {w.category for w in shown}


def _empty_clusters_cause(args, warned):
    """The likely reason why some of the asked clusters ended empty."""
    from .exceptions import OutlierWarning

    if any(issubclass(c, OutlierWarning) for c in warned):
        return ("a few far outliers set the scale and squeeze the rest of the data "
                "together (see the warning above); try --standardize robust, or remove "
                "the outliers")
    outliers = ("" if _standardize_value(args) == "robust" else
                "a few far outliers (try --standardize robust), ")
    return (f"the data may hold fewer separable groups than the {args.n_clusters} asked "
            f"(try a smaller -k), {outliers}many duplicate rows, or too short a training "
            "(try more --epochs)")


def _summary(est, labels, n_rows, n_columns, seconds, args, warned=()):
    sizes = np.bincount(labels, minlength=args.n_clusters)
    n_found = int(np.count_nonzero(sizes))
    if not args.quiet:
        _report(est, sizes, n_found, n_rows, n_columns, seconds, args)
    if n_found < args.n_clusters:
        _note(f"{args.n_clusters - n_found} cluster(s) ended empty; likely cause: "
              + _empty_clusters_cause(args, warned))


def _report(est, sizes, n_found, n_rows, n_columns, seconds, args):
    order = np.argsort(-sizes, kind="stable")
    listed = ", ".join(f"{k}: {sizes[k]}" for k in order)
    epochs = f"{est.n_iter_} epoch{'s' if est.n_iter_ != 1 else ''}"
    into = (f"{args.n_clusters} clusters" if n_found == args.n_clusters else
            f"{n_found} non-empty cluster{'s' if n_found != 1 else ''} of the "
            f"{args.n_clusters} asked")
    _note(f"clustered {n_rows} rows x {n_columns} columns into {into} "
          f"({args.variant}, {epochs}) in {seconds:.1f} s on {est.device_}")
    _note(f"cluster sizes, largest first: {listed}")


def _run(args):
    out_fmt, out_paths = _output_paths(args)
    _check_device(args.device)
    X, names, keep = _load_features(args)
    if args.verbose:
        _note(f"using {len(names)} column(s): {', '.join(names)}")
    start = time.perf_counter()
    est, kept_labels, kept_proba, warned = _fit(X[keep], args)
    seconds = time.perf_counter() - start

    labels = np.full(X.shape[0], -1, dtype=np.int64)
    labels[keep] = kept_labels
    proba = None
    if kept_proba is not None:
        proba = np.full((X.shape[0], args.n_clusters), np.nan)
        proba[keep] = kept_proba
    _write_outputs(out_fmt, out_paths, labels, proba, quiet=args.quiet)
    _summary(est, kept_labels, int(keep.sum()), X.shape[1], seconds, args, warned)


def main(argv=None):
    """Run the ``skclust-ot`` command.

    Parameters
    ----------
    argv : list of str, default=None
        Command-line arguments without the program name; ``None`` reads
        ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 2 for a usage or input error (reported on stderr).
    """
    args = _build_parser().parse_args(argv)
    try:
        _run(args)
    except InputError as exc:
        _note(f"error: {exc}")
        return EXIT_INPUT_ERROR
    except KeyboardInterrupt:
        _note("interrupted")
        return 130
    except BrokenPipeError:
        # stdout was closed early (e.g. piped into `head`): not an error.
        # Point stdout at devnull so Python's exit-time flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
