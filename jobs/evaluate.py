"""``whalescan eval BUNDLE CHIPS_DIR``: accuracy, precision, recall, F1 and the confusion matrix.

Evaluates ``CHIPS_DIR/val`` when it exists, else ``CHIPS_DIR`` itself (``<class>/*.png``).
Precision, recall and F1 are for the bundle's positive class (``face``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from jobs.options import verbose_option


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int counts: row = true class index, column = predicted class index."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (truth, predicted), 1)
    return m


def classification_report(
    truth: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], positive: str
) -> dict[str, Any]:
    """Metrics of (N,) predicted vs (N,) true class indices into ``classes``."""
    m = confusion_matrix(truth, predicted, len(classes))
    p = classes.index(positive)
    tp = int(m[p, p])
    fp = int(m[:, p].sum()) - tp
    fn = int(m[p, :].sum()) - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    n = int(m.sum())
    return {
        "n": n,
        "accuracy": float(np.trace(m)) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "positive_class": positive,
        "confusion_matrix": {"labels": list(classes), "rows": "true", "matrix": m.tolist()},
    }


def evaluate_bundle(bundle_path: str | Path, chips_dir: str | Path) -> dict[str, Any]:
    """Score every chip of ``chips_dir`` (its ``val/`` if present) with the bundle's classifier."""
    from models.bundle import load_bundle, load_model
    from models.data import ChipDataError, eval_split
    from models.scorer import Normalize
    from models.train_loop import predict_logits

    bundle = load_bundle(bundle_path)
    split = eval_split(chips_dir, classes=bundle.classes)
    if split.chip_size != bundle.input_size:
        raise ChipDataError(
            f"{str(split.root)!r}: chips are {split.chip_size} px, the model takes "
            f"{bundle.input_size} px"
        )
    logits = predict_logits(load_model(bundle), split.images, Normalize(bundle.mean, bundle.std))
    predicted = logits.argmax(1).numpy()
    report = classification_report(split.labels, predicted, bundle.classes, bundle.positive_class)
    return {"bundle": str(bundle.path), "chips": str(split.root), **report}


def format_report(r: dict[str, Any]) -> str:
    labels = r["confusion_matrix"]["labels"]
    width = max(len(s) for s in labels) + 2
    lines = [
        f"{r['chips']}: {r['n']} chips",
        f"accuracy {r['accuracy']:.4f}  precision {r['precision']:.4f}  recall "
        f"{r['recall']:.4f}  f1 {r['f1']:.4f}  (positive: {r['positive_class']})",
        "true \\ predicted".ljust(width + 6) + "".join(s.rjust(width) for s in labels),
    ]
    for label, row in zip(labels, r["confusion_matrix"]["matrix"], strict=True):
        lines.append(label.ljust(width + 6) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


@click.command("eval")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.argument("chips_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@verbose_option
def evaluate(bundle: Path, chips_dir: Path, as_json: bool) -> None:
    """Evaluate model BUNDLE on the chips in CHIPS_DIR (its val/ split if it has one)."""
    from models.bundle import BundleError
    from models.data import ChipDataError

    try:
        report = evaluate_bundle(bundle, chips_dir)
    except (BundleError, ChipDataError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


if __name__ == "__main__":
    evaluate()
