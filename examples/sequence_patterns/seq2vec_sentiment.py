"""Sequence to vector: classify variable-length "reviews" as positive or negative.

Token ids: 0 is padding, 1-4 are positive words, 5-8 negative words, 9-29 neutral
words. A review is positive when it holds more positive than negative words, so the
whole sequence matters, in any position. Reviews have 4 to 20 words and are padded
with 0 at the end; Embedding(mask_zero=True) makes the LSTM skip the padding, so the
last state summarises exactly the real words. The baseline is the majority class.
"""
import numpy as np

import fusednn as fd

VOCABULARY, MAX_LENGTH = 30, 20


def make_reviews(rng, count):
    """ids (count, MAX_LENGTH) padded with 0, labels (count, 1) in {0, 1}."""
    ids = np.zeros((count, MAX_LENGTH), dtype=np.int64)
    labels = np.zeros((count, 1), dtype=np.float32)
    for i in range(count):
        while True:
            length = rng.integers(4, MAX_LENGTH + 1)
            words = rng.integers(1, VOCABULARY, length)
            positive = np.sum((words >= 1) & (words <= 4))
            negative = np.sum((words >= 5) & (words <= 8))
            if positive != negative:
                break
        ids[i, :length] = words
        labels[i] = positive > negative
    return ids, labels


def run(seed=0, epochs=15, verbose=0):
    fd.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = make_reviews(rng, 2000)
    x_test, y_test = make_reviews(rng, 500)
    model = fd.Sequential([
        fd.layers.Embedding(VOCABULARY, 16, mask_zero=True, input_shape=(MAX_LENGTH,)),
        fd.layers.LSTM(32),
        fd.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=fd.optimizers.Adam(learning_rate=5e-3), loss="binary_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=verbose)
    accuracy = float(np.mean((model.predict(x_test) > 0.5) == (y_test > 0.5)))
    majority = float(max(y_test.mean(), 1 - y_test.mean()))
    return {"accuracy": accuracy, "majority": majority}


if __name__ == "__main__":
    result = run(verbose=2)
    print(f"test accuracy {result['accuracy']:.3f} (majority class {result['majority']:.3f})")
