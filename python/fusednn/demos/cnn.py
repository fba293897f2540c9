"""The lecture's CNN (Conv2D 32 -> MaxPooling -> Conv2D 64 -> MaxPooling -> Conv2D 64 ->
Flatten -> Dense 64 -> Dense 10 softmax, 93,322 parameters) on scikit-learn's digits.

The lecture's model reads 28x28 images (MNIST). The 8x8 digits are blown up three
times (each pixel becomes a 3x3 block, 24x24) and centred in 28x28 with a 2-pixel
border, much as MNIST centres its 20x20 digits in 28x28. Baseline: always answering
the most frequent class of the training set.
"""
from __future__ import annotations

import numpy as np

from . import _common

TITLE = "the lecture's CNN (93,322 parameters) classifies handwritten digits"
REQUIRES = ("sklearn", "matplotlib")
DEFAULT_EPOCHS = 8


def to_28x28(images):
    """(N, 8, 8) -> (N, 28, 28, 1): nearest-neighbour x3, then a 2-pixel zero border."""
    large = np.repeat(np.repeat(images, 3, axis=1), 3, axis=2)
    return np.pad(large, ((0, 0), (2, 2), (2, 2)))[..., None].astype(np.float32)


def lecture_cnn():
    """The lecture's Keras code, line for line."""
    from .. import layers, models

    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    return model


def run(device="cpu", epochs=None, out_dir=".", seed=0):
    from .. import utils

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("cnn", TITLE)
    x_train, x_test, y_train, y_test = _common.digits_split(seed)
    x_train, x_test = to_28x28(x_train), to_28x28(x_test)
    print(f"digits: {len(x_train)} training and {len(x_test)} test images, 28x28x1")

    utils.set_random_seed(seed)
    model = lecture_cnn()
    model.summary()
    model.to(device)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=epochs, validation_split=0.1,
                        verbose=1)
    probabilities = model.predict(x_test)
    predicted = probabilities.argmax(axis=1)
    accuracy = float(np.mean(predicted == y_test))
    majority = float(np.mean(y_test == np.bincount(y_train).argmax()))

    fig, _ = _common.figure(10, 3.2)
    curves = fig.add_gridspec(1, 1, left=0.06, right=0.4, bottom=0.15, top=0.88).subplots()
    _common.plot_history(curves, history.history, ["loss", "val_loss"],
                         "training (sparse categorical cross-entropy)", "loss")
    _draw_predictions(fig, x_test, y_test, predicted)
    image = _common.save(fig, out_dir, "cnn.png")
    wrong = int(np.sum(predicted != y_test))
    return _common.Result("cnn", "test accuracy", accuracy, "majority class", majority,
                          higher_is_better=True, images=[image],
                          details=f"{wrong} of {len(y_test)} test digits misread")


def _draw_predictions(fig, images, labels, predicted):
    """Test digits with the CNN's answers; the mistakes first, in red."""
    wrong = np.flatnonzero(predicted != labels)
    right = np.flatnonzero(predicted == labels)
    shown = np.concatenate([wrong[:6], right[:18 - min(len(wrong), 6)]])
    grid = fig.add_gridspec(3, 6, left=0.52, right=0.98, top=0.88, bottom=0.05,
                            wspace=0.1, hspace=0.35)
    for k, index in enumerate(shown):
        ax = fig.add_subplot(grid[k // 6, k % 6])
        ax.imshow(images[index, 2:26, 2:26, 0], cmap="gray_r", vmin=0, vmax=1,
                  interpolation="nearest")
        ok = predicted[index] == labels[index]
        ax.set_title(f"{predicted[index]}" + ("" if ok else f" (is {labels[index]})"),
                     fontsize=8, color="black" if ok else "red")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.text(0.75, 0.95, "test digits and the CNN's answers (mistakes in red)",
             ha="center", fontsize=9)
