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
import time
import warnings

import numpy as np

from ._cli_io import PROG, InputError, _load_features, _note, _output_paths, _write_outputs
from ._version import __version__

__all__ = ["main"]

EXIT_OK = 0
EXIT_INPUT_ERROR = 2

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
    "sp2ot": "progressive partial OT with the semantic kNN term at every size",
    "p2ot": "progressive partial OT, no semantic term (faster)",
    "pot": "progressive partial OT with equal cluster sizes",
    "uot": "unbalanced OT: free cluster sizes, all samples from the start",
    "balanced": "balanced OT: equal cluster sizes (SeLa-style baseline)",
}

_EPILOG = """\
variants (--variant NAME; without one, the estimator's defaults: sp2ot up to
20,000 rows, p2ot above, where the semantic term changed nothing measurable):
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
    parser.add_argument("--variant", choices=sorted(_VARIANT_HELP), default=None,
                        metavar="NAME",
                        help="OT variant of the pseudo-labels, listed below (default: the "
                             "estimator's defaults, sp2ot up to 20,000 rows and p2ot above)")
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
        **(VARIANTS[args.variant] if args.variant else {}),
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
          f"({args.variant or 'defaults'}, {epochs}) in {seconds:.1f} s on {est.device_}")
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
