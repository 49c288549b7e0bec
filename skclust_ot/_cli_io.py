"""The command line's files: reading a table into features, writing labels.

Part of the top layer with :mod:`skclust_ot.cli` (which parses the options
and runs the fit); nothing in the library imports either. Problems raise
:class:`InputError`, which the command reports in one line (exit status 2).
"""

import contextlib
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

PROG = "skclust-ot"

_INPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".npy": "npy", ".parquet": "parquet"}
_OUTPUT_FORMATS = {".csv": "csv", ".npy": "npy"}
# pandas infers these from the name, so "data.csv.gz" reads like "data.csv".
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".zip"}
_SHOWN_ROWS = 5


class InputError(Exception):
    """A problem with the command's input or options: reported in one line, exit 2."""


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
