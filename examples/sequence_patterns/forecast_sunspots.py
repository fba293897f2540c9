"""Forecasting: yearly sunspot numbers 1700-2008 (shipped with statsmodels), the next
year from the previous 12, with the lecture's stacked LSTM model scaled down
(LSTM -> Dropout -> LSTM -> Dropout -> Dense(relu) -> Dense(1), 32 units instead of 256).

Windows are cut in time order; the last 20 % are the test set, after everything the
model trained on. The baseline is persistence: next year's number equals this year's.
"""
import numpy as np

import fusednn as fd

WINDOW = 12


def load_windows():
    """x (N, WINDOW, 1) and y (N, 1) in time order, scaled by the training part's maximum,
    and the index where the test part (last 20 %) starts."""
    import statsmodels.api as sm

    series = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)
    x = np.stack([series[i:i + WINDOW] for i in range(len(series) - WINDOW)])
    y = series[WINDOW:]
    split = int(round(len(x) * 0.8))
    scale = series[:split + WINDOW].max()
    return ((x / scale)[..., None].astype(np.float32), (y / scale)[:, None].astype(np.float32),
            split)


def run(seed=0, epochs=150, verbose=0):
    fd.utils.set_random_seed(seed)
    x, y, split = load_windows()
    model = fd.Sequential([
        fd.layers.LSTM(32, return_sequences=True, input_shape=(WINDOW, 1)),
        fd.layers.Dropout(0.2),
        fd.layers.LSTM(32),
        fd.layers.Dropout(0.2),
        fd.layers.Dense(16, activation="relu"),
        fd.layers.Dense(1),
    ])
    model.compile(optimizer=fd.optimizers.Adam(learning_rate=2e-3), loss="mse")
    model.fit(x[:split], y[:split], batch_size=16, epochs=epochs, verbose=verbose)
    x_test, y_test = x[split:], y[split:]
    model_mse = float(np.mean((model.predict(x_test) - y_test) ** 2))
    persistence_mse = float(np.mean((x_test[:, -1] - y_test) ** 2))
    return {"model_mse": model_mse, "persistence_mse": persistence_mse}


if __name__ == "__main__":
    result = run(verbose=2)
    print(f"test MSE (scaled): LSTM {result['model_mse']:.5f}, "
          f"persistence {result['persistence_mse']:.5f}")
