"""Build the two sample activation stores used by `make demo` and the tests.

Two multilayer perceptrons of the same architecture (64 → 128 → 96 → 64 → 48 → 32 → 10, ReLU) are
trained on scikit-learn's bundled 8×8 digits images (1797 samples, no download) from random seeds
0 and 1. The input pixels, the post-activation output of every hidden layer and the logits, on all 1797 images, are
written with repsim's own store writer as float32 HDF5 stores:

    sample_data/digits_seed0.h5, sample_data/digits_seed1.h5

Run: `make sample-data` (or `python sample_data/make_sample_data.py`). Needs scikit-learn.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from repsim_cli._atomic import atomic_path
from repsim_cli.store import StoreWriter

HIDDEN = (128, 96, 64, 48, 32)
HERE = Path(__file__).parent


def layer_activations(model: MLPClassifier, x: np.ndarray) -> dict[str, np.ndarray]:
    """Forward pass of a fitted MLPClassifier: {'input', 'fc1', ..., 'logits'} as float32 (n, width)."""
    out = {"input": x.astype(np.float32)}
    h = x
    for i, (w, b) in enumerate(zip(model.coefs_, model.intercepts_), start=1):
        h = h @ w + b
        last = i == len(model.coefs_)
        if not last:
            h = np.maximum(h, 0.0)
        out["logits" if last else f"fc{i}"] = h.astype(np.float32)
    return out


def main() -> None:
    digits = load_digits()
    x = digits.data / 16.0
    y = digits.target
    ids = np.array([f"digit_{i:04d}" for i in range(len(x))], dtype=object)
    for seed in (0, 1):
        model = MLPClassifier(hidden_layer_sizes=HIDDEN, max_iter=300, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x, y)
        acts = layer_activations(model, x)
        out = HERE / f"digits_seed{seed}.h5"
        source = {"model": f"sklearn MLPClassifier{HIDDEN}, seed {seed}",
                  "inputs": "sklearn.datasets.load_digits (1797 8x8 images, scaled to [0, 1])",
                  "command": "python sample_data/make_sample_data.py",
                  "train_accuracy": float(model.score(x, y))}
        with atomic_path(out) as tmp:
            writer = StoreWriter(tmp, ids, source=source)
            for name, a in acts.items():
                writer.add_layer(name, a.shape[1:], np.float32, {"reduction": "none", "module": name})
                writer.write_rows(name, 0, a)
            writer.finalize()
        print(f"wrote {out} (train accuracy {model.score(x, y):.3f})")


if __name__ == "__main__":
    main()
