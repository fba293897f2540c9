"""A stacked dense autoencoder (64 -> 128 -> 8 -> 128 -> 64, symmetrical about its
8-number code, as the lecture draws it) compresses scikit-learn's 8x8 digits to
8 numbers and back. Baseline: PCA with the same 8 components, the best linear
code of that size (fitted on the same training digits). Metric: mean squared
reconstruction error per pixel on the test digits (pixels in [0, 1]).
"""
from __future__ import annotations

import numpy as np

from . import _common

TITLE = "a dense autoencoder squeezes digits through an 8-number code"
REQUIRES = ("sklearn", "matplotlib")
DEFAULT_EPOCHS = 100
CODE = 8


def autoencoder():
    from .. import layers, models

    return models.Sequential([
        layers.Dense(128, activation="relu", input_shape=(64,)),
        layers.Dense(CODE, name="code"),
        layers.Dense(128, activation="relu"),
        layers.Dense(64, activation="sigmoid"),
    ])


def run(device="cpu", epochs=None, out_dir=".", seed=0):
    from .. import optimizers, utils

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("autoencoder", TITLE)
    images_train, images_test, _, y_test = _common.digits_split(seed)
    x_train, x_test = images_train.reshape(-1, 64), images_test.reshape(-1, 64)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images, 64 pixels each")

    utils.set_random_seed(seed)
    model = autoencoder()
    model.summary()
    model.to(device)
    model.compile(optimizer=optimizers.Adam(learning_rate=2e-3), loss="mse")
    history = model.fit(x_train, x_train, batch_size=32, epochs=epochs, verbose=0,
                        validation_split=0.1, callbacks=[_common.EpochProgress(epochs)])
    reconstructed = model.predict(x_test)
    mse = float(np.mean((reconstructed - x_test) ** 2))
    pca = _common.pca(x_train, CODE)
    pca_reconstructed = np.clip(pca.inverse_transform(pca.transform(x_test)), 0, 1)
    pca_mse = float(np.mean((pca_reconstructed - x_test) ** 2))

    # One test digit of each class, as originals and both reconstructions.
    shown = [int(np.flatnonzero(y_test == digit)[0]) for digit in range(10)]
    fig, _ = _common.figure(7, 2.6)
    _common.image_rows(fig, [images_test[shown], reconstructed[shown].reshape(-1, 8, 8),
                             pca_reconstructed[shown].reshape(-1, 8, 8)],
                       ["test digit", f"autoencoder\nMSE {mse:.4f}", f"PCA, {CODE} comp.\n"
                        f"MSE {pca_mse:.4f}"],
                       f"reconstructions from an {CODE}-number code")
    image = _common.save(fig, out_dir, "autoencoder.png")
    return _common.Result("autoencoder", "test reconstruction MSE", mse,
                          f"PCA with {CODE} components", pca_mse, higher_is_better=False,
                          images=[image],
                          details=f"final training loss {history.history['loss'][-1]:.4f}")
