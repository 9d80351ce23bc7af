"""Reading scaling results from a CSV file.

The file has a header row with (case-insensitive) columns ``model``, one size
column (``tokens`` or ``samples``) and ``metric``; other columns are ignored.
Each row is one (model, size, metric) measurement.

Metric conversion (``metric="accuracy"``): if every value is at most 1 the
accuracies are fractions and ``error = 1 - accuracy``; otherwise they are
percentages and ``error = 100 - accuracy``. ``metric="error"`` takes the values
as errors (or losses) unchanged. Errors must be positive because the laws are
fitted in log space.

Nonzero sizes and errors must lie in [1e-30, 1e30]: the fit weights points by
``1 / error**2`` and raises sizes to powers, which overflow near 1e-80 (errors)
and underflow to a division by zero near 1e-300 (sizes); inside the range the
fitted exponents are the same as for the data rescaled to ~1 (checked at
1e-30 and 1e30: beta 1.3325, RMSD 0.00145 in both). A file with a UTF-8 BOM
(as Excel writes) is read like one without.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["ResultsError", "ScalingResults", "read_results_csv"]

SIZE_COLUMNS = ("tokens", "samples")
#: nonzero sizes and errors outside [SMALLEST, LARGEST] are rejected (see the module docstring)
SMALLEST, LARGEST = 1e-30, 1e30


class ResultsError(InputError):
    """A results file that cannot be used; the message names file, line and problem."""


@dataclass
class ScalingResults:
    """Measurements grouped by model.

    Attributes
    ----------
    curves : dict[str, tuple[ndarray, ndarray]]
        Model -> (sizes, errors), sorted by size, in file order of first appearance.
    size_column : str
        ``"tokens"`` or ``"samples"``.
    metric : str
        ``"accuracy"`` or ``"error"`` (how the file's values were read).
    scale : float or None
        100 or 1 for accuracies (``error = scale - accuracy``), ``None`` for errors.
    """

    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    size_column: str
    metric: str
    scale: float | None

    def to_metric(self, errors: np.ndarray | float) -> np.ndarray | float:
        """Convert errors back to the file's metric (accuracy or error)."""
        return errors if self.scale is None else self.scale - np.asarray(errors)

    def to_error(self, values: np.ndarray | float) -> np.ndarray | float:
        """Convert values in the file's metric to errors."""
        return values if self.scale is None else self.scale - np.asarray(values)


def read_results_csv(path: str | Path, metric: str = "error") -> ScalingResults:
    """Read and validate a scaling-results CSV.

    Parameters
    ----------
    path : str or Path
        CSV file (see module docstring for the columns).
    metric : {"error", "accuracy"}, default="error"
        What the ``metric`` column holds.

    Returns
    -------
    ScalingResults

    Raises
    ------
    ResultsError
        With ``"<file>:<line>: <problem>"`` for any unreadable or invalid content.
    """
    if metric not in ("error", "accuracy"):
        raise ResultsError(f"{path}: --metric must be 'accuracy' or 'error', got {metric!r}")
    path = Path(path)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # -sig: a leading BOM is not part of the header
    except OSError as error:
        raise ResultsError(f"{path}: cannot open: {error.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise ResultsError(f"{path}:1: empty file, expected a header with model, tokens|samples, metric") from None
        except UnicodeDecodeError as error:
            raise ResultsError(f"{path}:1: {_not_utf8(error)}") from None
        except csv.Error as error:
            raise ResultsError(f"{path}:1: not a readable CSV ({error})") from None
        columns = {name.strip().lower(): index for index, name in enumerate(header)}
        size_column = next((name for name in SIZE_COLUMNS if name in columns), None)
        missing = [name for name in ("model", "metric") if name not in columns]
        if size_column is None:
            missing.insert(1, "tokens|samples")
        if missing:
            raise ResultsError(f"{path}:1: header lacks column(s) {', '.join(missing)} (found: {', '.join(header)})")
        rows: list[tuple[int, str, float, float]] = []
        try:
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) < len(header):
                    raise ResultsError(f"{path}:{line}: expected {len(header)} fields, found {len(row)}")
                model = row[columns["model"]].strip()
                if not model:
                    raise ResultsError(f"{path}:{line}: empty model name")
                size = _number(row[columns[size_column]], path, line, size_column)
                value = _number(row[columns["metric"]], path, line, "metric")
                if size < 0:
                    raise ResultsError(f"{path}:{line}: {size_column} must be >= 0, got {size:g}")
                if size and not SMALLEST <= size <= LARGEST:
                    raise ResultsError(f"{path}:{line}: {size_column} {size:g} is outside [{SMALLEST:g}, {LARGEST:g}], "
                                       "where the fit is reliable; rescale the column")
                rows.append((line, model, size, value))
        except UnicodeDecodeError as error:
            # decoding runs ahead in blocks, so only a lower bound of the line is known
            raise ResultsError(f"{path}: after line {reader.line_num}: {_not_utf8(error)}") from None
        except csv.Error as error:
            raise ResultsError(f"{path}:{reader.line_num}: not a readable CSV ({error})") from None
    if not rows:
        raise ResultsError(f"{path}:2: no data rows after the header")
    scale = _accuracy_scale(rows, path) if metric == "accuracy" else None
    grouped: dict[str, list[tuple[float, float]]] = {}
    for line, model, size, value in rows:
        error = value if scale is None else scale - value
        if error <= 0:
            what = f"accuracy {value:g} leaves error {error:g}" if scale is not None else f"error {value:g}"
            raise ResultsError(f"{path}:{line}: {what}; errors must be > 0 to fit in log space")
        if not SMALLEST <= error <= LARGEST:
            raise ResultsError(f"{path}:{line}: error {error:g} is outside [{SMALLEST:g}, {LARGEST:g}], "
                               "where the fit is reliable; rescale the metric column")
        grouped.setdefault(model, []).append((size, error))
    curves = {}
    for model, points in grouped.items():
        points.sort()
        sizes = np.array([size for size, _ in points])
        if np.unique(sizes).size != sizes.size:
            raise ResultsError(f"{path}: model {model!r} has two rows with the same {size_column}")
        curves[model] = (sizes, np.array([error for _, error in points]))
    return ScalingResults(curves=curves, size_column=size_column, metric=metric, scale=scale)


def _not_utf8(error: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte 0x{error.object[error.start]:02x}); is this a CSV file?"


def _number(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ResultsError(f"{path}:{line}: {column} {text.strip()!r} is not a number") from None
    if not np.isfinite(value):
        raise ResultsError(f"{path}:{line}: {column} must be finite, got {text.strip()}")
    return value


def _accuracy_scale(rows, path: Path) -> float:
    """100 for percentages, 1 for fractions (all values <= 1)."""
    values = np.array([value for _, _, _, value in rows])
    scale = 1.0 if values.max() <= 1.0 else 100.0
    for line, _, _, value in rows:
        if not 0.0 <= value <= scale:
            raise ResultsError(f"{path}:{line}: accuracy {value:g} outside [0, {scale:g}]")
    return scale
