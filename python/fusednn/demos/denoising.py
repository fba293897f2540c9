"""A convolutional denoising autoencoder (Conv2D -> MaxPooling2D -> Conv2D ->
UpSampling2D -> Conv2D -> Conv2D sigmoid) learns to clean scikit-learn's 8x8 digits
buried in Gaussian noise (standard deviation 0.3, clipped to [0, 1]); every epoch
draws fresh noise, as a data generator would.

Baselines: the noisy input itself, and PCA denoising (project the noisy digit on
the top-k principal components of clean training digits and back, with k chosen
on held-out training digits), the classic linear denoiser. Metric: mean squared
error to the clean test digits.
"""
from __future__ import annotations

import numpy as np

from . import _common

TITLE = "a convolutional autoencoder removes noise from digits"
REQUIRES = ("sklearn", "matplotlib")
DEFAULT_EPOCHS = 40
NOISE = 0.3


def denoiser():
    from .. import layers, models

    return models.Sequential([
        layers.Conv2D(32, (3, 3), padding="same", activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        layers.UpSampling2D((2, 2)),
        layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        layers.Conv2D(1, (3, 3), padding="same", activation="sigmoid"),
    ])


def add_noise(rng, images):
    return np.clip(images + rng.normal(0, NOISE, images.shape), 0, 1).astype(np.float32)


def pca_denoiser(rng, clean_train):
    """PCA fitted on clean digits, with the number of components that denoises held-out
    training digits best; returns a function noisy (N, 64) -> denoised (N, 64) and k."""
    fit_part, held_out = clean_train[:-200], clean_train[-200:]
    noisy_held_out = add_noise(rng, held_out)
    best = None
    for k in range(2, 41, 2):
        pca = _common.pca(fit_part, k)
        error = np.mean((pca.inverse_transform(pca.transform(noisy_held_out)) - held_out) ** 2)
        if best is None or error < best[0]:
            best = (error, k)
    pca = _common.pca(clean_train, best[1])
    return (lambda noisy: np.clip(pca.inverse_transform(pca.transform(noisy)), 0, 1)), best[1]


def run(device="cpu", epochs=None, out_dir=".", seed=0):
    from .. import optimizers, utils
    from ..callbacks import Progbar

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("denoising", TITLE)
    x_train, x_test, _, y_test = _common.digits_split(seed)
    x_train, x_test = x_train[..., None], x_test[..., None]  # (N, 8, 8, 1)
    rng = np.random.default_rng(seed)
    noisy_test = add_noise(rng, x_test)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images; Gaussian noise "
          f"with standard deviation {NOISE}")

    utils.set_random_seed(seed)
    model = denoiser()
    model.summary()
    model.to(device)
    model.compile(optimizer=optimizers.Adam(learning_rate=2e-3), loss="mse")
    progress = Progbar(epochs, unit_name="epoch")
    history = {"loss": [], "test_loss": []}
    for epoch in range(epochs):
        fit = model.fit(add_noise(rng, x_train), x_train, batch_size=32, epochs=1, verbose=0)
        history["loss"].append(fit.history["loss"][0])
        history["test_loss"].append(model.evaluate(noisy_test, x_test, verbose=0))
        progress.update(epoch + 1, [("loss", history["loss"][-1]),
                                    ("test_loss", history["test_loss"][-1])],
                        finalize=epoch + 1 == epochs)
    denoised = model.predict(noisy_test)
    mse = float(np.mean((denoised - x_test) ** 2))
    noise_mse = float(np.mean((noisy_test - x_test) ** 2))
    pca_denoise, k = pca_denoiser(rng, x_train.reshape(-1, 64))
    pca_denoised = pca_denoise(noisy_test.reshape(-1, 64)).reshape(x_test.shape)
    pca_mse = float(np.mean((pca_denoised - x_test) ** 2))

    shown = [int(np.flatnonzero(y_test == digit)[0]) for digit in range(10)]
    fig, _ = _common.figure(7, 3.3)
    _common.image_rows(fig, [x_test[shown, ..., 0], noisy_test[shown, ..., 0],
                             denoised[shown, ..., 0], pca_denoised[shown, ..., 0]],
                       ["clean", f"noisy\nMSE {noise_mse:.4f}", f"autoencoder\nMSE {mse:.4f}",
                        f"PCA, {k} comp.\nMSE {pca_mse:.4f}"],
                       f"denoising digits (noise std {NOISE})")
    image = _common.save(fig, out_dir, "denoising.png")
    return _common.Result("denoising", "test MSE to the clean digits", mse,
                          f"PCA denoising, {k} components", pca_mse, higher_is_better=False,
                          images=[image], details=f"the noisy input itself: MSE {noise_mse:.4f}")
