"""A GRU reads each 8x8 digit (scikit-learn's digits) one row at a time, top to bottom,
and names the digit after every row (sequence to sequence: a stacked GRU with
return_sequences=True and a TimeDistributed softmax, trained on the label at every
step). The metric is the accuracy after the last row; the picture shows how the
accuracy grows row by row, i.e. how soon the network knows. Baseline: always
answering the most frequent class of the training set.
"""
from __future__ import annotations

import numpy as np

from . import _common

TITLE = "a stacked GRU reads digits row by row"
REQUIRES = ("sklearn", "matplotlib")
DEFAULT_EPOCHS = 40
ROWS = 8


def row_reader():
    from .. import layers, models

    return models.Sequential([
        layers.GRU(128, return_sequences=True, input_shape=(ROWS, 8)),
        layers.GRU(128, return_sequences=True),
        layers.TimeDistributed(layers.Dense(10, activation="softmax")),
    ])


def run(device="cpu", epochs=None, out_dir=".", seed=0):
    from .. import optimizers, utils

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("gru", TITLE)
    x_train, x_test, y_train, y_test = _common.digits_split(seed)
    print(f"digits: {len(x_train)} training and {len(x_test)} test sequences of {ROWS} rows "
          "with 8 pixels each")
    # The label at every step: after row t the network answers from rows 1..t.
    every_step = np.repeat(y_train[:, None], ROWS, axis=1)

    utils.set_random_seed(seed)
    model = row_reader()
    model.summary()
    model.to(device)
    model.compile(optimizer=optimizers.Adam(learning_rate=2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, every_step, batch_size=32, epochs=epochs, verbose=0,
                        validation_split=0.1, callbacks=[_common.EpochProgress(epochs)])
    answers = model.predict(x_test).argmax(axis=-1)  # (N, ROWS)
    accuracy_by_row = np.mean(answers == y_test[:, None], axis=0)
    majority = float(np.mean(y_test == np.bincount(y_train).argmax()))

    fig, (curves, by_row) = _common.figure(9, 3.2, ncols=2)
    _common.plot_history(curves, history.history, ["loss", "val_loss"],
                         "training (cross-entropy over all rows)", "loss")
    rows = np.arange(1, ROWS + 1)
    by_row.plot(rows, accuracy_by_row, "o-", color="tab:red", label="GRU, test digits")
    by_row.axhline(majority, color="tab:blue", ls="--", label="majority class")
    for row, value in zip(rows, accuracy_by_row):
        by_row.annotate(f"{value:.2f}", (row, value), textcoords="offset points",
                        xytext=(0, -13), ha="center", fontsize=7)
    by_row.set_ylim(0, 1.05)
    by_row.set_xlabel("rows read (of 8, top to bottom)")
    by_row.set_ylabel("accuracy")
    by_row.set_title("how soon the GRU knows the digit", fontsize=10)
    by_row.grid(alpha=0.3)
    by_row.legend(fontsize=8, loc="center right")
    image = _common.save(fig, out_dir, "gru.png")
    return _common.Result("gru", "test accuracy after 8 rows", float(accuracy_by_row[-1]),
                          "majority class", majority, higher_is_better=True, images=[image],
                          details="accuracy after each row: "
                                  + " ".join(f"{a:.2f}" for a in accuracy_by_row))
