"""Sequence to sequence (same length): from the values of a sine wave up to step t,
predict the value at t + 1, at every step (the lecture's "prices shifted by one day").

A GRU with return_sequences=True reads the wave and a TimeDistributed Dense turns each
hidden state into a prediction. Compared with persistence (tomorrow = today), the
natural baseline, over the steps after a short warm-up where the frequency is unknown.
"""
import numpy as np

import fusednn as fd

STEPS = 40
WARM_UP = 5  # the first steps cannot know the wave's frequency yet


def make_waves(rng, count):
    """x (count, STEPS, 1) and the next values y (count, STEPS, 1) of random sine waves."""
    frequency = rng.uniform(0.1, 0.4, (count, 1))
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    t = np.arange(STEPS + 1)[None, :]
    wave = np.sin(frequency * t + phase).astype(np.float32)
    return wave[:, :-1, None], wave[:, 1:, None]


def run(seed=0, epochs=25, verbose=0):
    fd.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = make_waves(rng, 512)
    x_test, y_test = make_waves(rng, 256)
    model = fd.Sequential([
        fd.layers.GRU(32, return_sequences=True, input_shape=(None, 1)),
        fd.layers.TimeDistributed(fd.layers.Dense(1)),
    ])
    model.compile(optimizer=fd.optimizers.Adam(learning_rate=1e-2), loss="mse")
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=verbose)
    predicted = model.predict(x_test)
    model_mse = float(np.mean((predicted - y_test)[:, WARM_UP:] ** 2))
    persistence_mse = float(np.mean((x_test - y_test)[:, WARM_UP:] ** 2))
    return {"model_mse": model_mse, "persistence_mse": persistence_mse}


if __name__ == "__main__":
    result = run(verbose=2)
    print(f"next-step MSE after step {WARM_UP}: GRU {result['model_mse']:.5f}, "
          f"persistence {result['persistence_mse']:.5f}")
