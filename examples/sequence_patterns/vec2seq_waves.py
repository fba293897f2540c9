"""Vector to sequence: from one vector (amplitude, frequency), draw the wave
a * sin(w * t) over 20 steps (the lecture's image-captioning shape: one input,
a sequence out).

RepeatVector feeds the encoded vector to every step of an LSTM with
return_sequences=True; a TimeDistributed Dense reads each step's value. The
baseline predicts the mean training wave for every input.
"""
import numpy as np

import fusednn as fd

STEPS = 20


def make_waves(rng, count):
    """x (count, 2) = (amplitude, frequency), y (count, STEPS, 1) the waves."""
    amplitude = rng.uniform(0.5, 1.5, count)
    frequency = rng.uniform(0.2, 0.6, count)
    t = np.arange(STEPS)
    y = amplitude[:, None] * np.sin(frequency[:, None] * t[None, :])
    return (np.stack([amplitude, frequency], axis=1).astype(np.float32),
            y[..., None].astype(np.float32))


def run(seed=0, epochs=60, verbose=0):
    fd.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x_train, y_train = make_waves(rng, 1024)
    x_test, y_test = make_waves(rng, 256)
    model = fd.Sequential([
        fd.layers.Dense(32, activation="tanh", input_shape=(2,)),
        fd.layers.RepeatVector(STEPS),
        fd.layers.LSTM(32, return_sequences=True),
        fd.layers.TimeDistributed(fd.layers.Dense(1)),
    ])
    model.compile(optimizer=fd.optimizers.Adam(learning_rate=5e-3), loss="mse")
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=verbose)
    model_mse = float(np.mean((model.predict(x_test) - y_test) ** 2))
    mean_wave_mse = float(np.mean((y_train.mean(axis=0) - y_test) ** 2))
    return {"model_mse": model_mse, "mean_wave_mse": mean_wave_mse}


if __name__ == "__main__":
    result = run(verbose=2)
    print(f"test MSE: LSTM {result['model_mse']:.5f}, mean wave {result['mean_wave_mse']:.5f}")
