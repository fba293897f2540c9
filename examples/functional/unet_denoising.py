"""A U-Net-like denoising autoencoder (a functional model with a skip connection)
against the stack of the `fusednn demo denoising` demo, on the same digits and noise.

The demo's denoiser is a Sequential: Conv 32 -> MaxPool -> Conv 32 -> UpSampling ->
Conv 32 -> Conv 1 (sigmoid). The U-Net-like one has the same layers, plus the skip:
the full-resolution features of the first convolution are concatenated with the
upsampled ones (Concatenate on channels), so fine strokes need not pass through the
4x4 bottleneck:

    x -> c1 = Conv 32 -> MaxPool -> Conv 32 -> UpSampling -> [., c1] -> Conv 32 -> Conv 1

Both train with Adam 2e-3, batches of 32, fresh noise every epoch; the metric is the
mean squared error to the clean test digits, with the noisy input as the baseline.
Measured (2026-12-06, seed 0, 40 epochs, 15 s of CPU time for both on a loaded 2-core
machine): noisy input 0.0505, the demo's Sequential 0.0195, the U-Net-like 0.0182.
"""
from __future__ import annotations

import argparse

import numpy as np

import fusednn as fd
from fusednn import layers
from fusednn.demos import _common
from fusednn.demos.denoising import add_noise, denoiser


def unet_like():
    x_in = fd.Input((8, 8, 1), name="noisy")
    c1 = layers.Conv2D(32, (3, 3), padding="same", activation="relu")(x_in)
    x = layers.MaxPooling2D((2, 2))(c1)
    x = layers.Conv2D(32, (3, 3), padding="same", activation="relu")(x)
    x = layers.UpSampling2D((2, 2))(x)
    x = layers.Concatenate(name="skip")([x, c1])
    x = layers.Conv2D(32, (3, 3), padding="same", activation="relu")(x)
    out = layers.Conv2D(1, (3, 3), padding="same", activation="sigmoid")(x)
    return fd.Model(x_in, out, name="unet_like")


def train_and_score(model, epochs, seed=0):
    """Test MSE per epoch of `model` trained on freshly noised training digits."""
    x_train, x_test, _, _ = _common.digits_split(seed)
    x_train, x_test = x_train[..., None], x_test[..., None]
    rng = np.random.default_rng(seed)
    noisy_test = add_noise(rng, x_test)
    model.compile(optimizer=fd.optimizers.Adam(learning_rate=2e-3), loss="mse")
    scores = []
    for _ in range(epochs):
        model.fit(add_noise(rng, x_train), x_train, batch_size=32, epochs=1, verbose=0)
        scores.append(float(model.evaluate(noisy_test, x_test, verbose=0)))
    return scores, float(np.mean((noisy_test - x_test) ** 2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    for name, make in (("Sequential (demo)", denoiser), ("U-Net-like", unet_like)):
        fd.utils.set_random_seed(0)
        scores, noisy = train_and_score(make(), args.epochs)
        print(f"{name:18s} test MSE after {args.epochs} epochs: {scores[-1]:.4f} "
              f"(best {min(scores):.4f}; the noisy input: {noisy:.4f})")


if __name__ == "__main__":
    main()
