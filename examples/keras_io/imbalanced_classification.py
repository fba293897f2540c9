"""keras-io's "Imbalanced classification: credit card fraud detection" on fusednn.

Changed from the Keras script: the imports (fusednn for keras) and the data. The Kaggle
credit-card file cannot be downloaded here, so scikit-learn's make_classification makes
a stand-in of the same form: 30 numeric features, a rare positive ("fraud") class
(0.5% here; 0.17% in the real data, whose 285k rows would make this slow to test), the
last 20% held out for validation. Everything else is the Keras script: normalisation by
the training statistics, the MLP 256-256-Dropout-256-Dropout-1, Adam(1e-2), binary
cross-entropy, the confusion metrics (fn, fp, tn, tp, precision, recall), class_weight
{0: 1 / count_0, 1: 1 / count_1}, batches of 2048, a ModelCheckpoint per epoch.

    python examples/keras_io/imbalanced_classification.py --epochs 30
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from sklearn.datasets import make_classification

import fusednn as fd


def synthetic_transactions(samples: int, seed: int):
    """(features float32 (samples, 30), targets int (samples, 1)), ~0.5% positive."""
    features, targets = make_classification(
        n_samples=samples, n_features=30, n_informative=12, n_redundant=4,
        weights=[0.995], flip_y=0.0, class_sep=1.0, random_state=seed)
    return features.astype(np.float32), targets.reshape(-1, 1)


def build_model(input_shape):
    return fd.Sequential([
        fd.Input(shape=input_shape),
        fd.layers.Dense(256, activation="relu"),
        fd.layers.Dense(256, activation="relu"),
        fd.layers.Dropout(0.3),
        fd.layers.Dense(256, activation="relu"),
        fd.layers.Dropout(0.3),
        fd.layers.Dense(1, activation="sigmoid"),
    ])


def main(samples=60_000, epochs=30, batch_size=2048, seed=0, checkpoint_dir=None,
         verbose=2):
    """Trains as the Keras example does; returns (History, validation logs)."""
    fd.utils.set_random_seed(seed)
    features, targets = synthetic_transactions(samples, seed)

    num_val_samples = int(len(features) * 0.2)
    train_features, val_features = features[:-num_val_samples], features[-num_val_samples:]
    train_targets, val_targets = targets[:-num_val_samples], targets[-num_val_samples:]
    counts = np.bincount(train_targets[:, 0])
    print(f"Number of positive samples in training data: {counts[1]} "
          f"({100 * float(counts[1]) / len(train_targets):.2f}% of total)")
    weight_for_0, weight_for_1 = 1.0 / counts[0], 1.0 / counts[1]

    mean = np.mean(train_features, axis=0)
    train_features -= mean
    val_features -= mean
    std = np.std(train_features, axis=0)
    train_features /= std
    val_features /= std

    model = build_model(train_features.shape[1:])
    if verbose:
        model.summary()
    metrics = [
        fd.metrics.FalseNegatives(name="fn"),
        fd.metrics.FalsePositives(name="fp"),
        fd.metrics.TrueNegatives(name="tn"),
        fd.metrics.TruePositives(name="tp"),
        fd.metrics.Precision(name="precision"),
        fd.metrics.Recall(name="recall"),
    ]
    model.compile(optimizer=fd.optimizers.Adam(1e-2), loss="binary_crossentropy",
                  metrics=metrics)
    checkpoint_dir = checkpoint_dir or tempfile.mkdtemp(prefix="fraud_model_")
    callbacks = [fd.callbacks.ModelCheckpoint(
        os.path.join(checkpoint_dir, "fraud_model_at_epoch_{epoch}.keras"))]
    class_weight = {0: weight_for_0, 1: weight_for_1}
    history = model.fit(train_features, train_targets, batch_size=batch_size, epochs=epochs,
                        verbose=verbose, callbacks=callbacks,
                        validation_data=(val_features, val_targets), class_weight=class_weight)
    logs = model.evaluate(val_features, val_targets, batch_size=batch_size, verbose=0,
                          return_dict=True)
    print(f"Out of {len(val_targets)} validation transactions: {int(logs['tp'])} frauds "
          f"caught, {int(logs['fn'])} missed, {int(logs['fp'])} legitimate ones flagged "
          f"(precision {logs['precision']:.3f}, recall {logs['recall']:.3f})")
    return history, logs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.samples, args.epochs, seed=args.seed)
