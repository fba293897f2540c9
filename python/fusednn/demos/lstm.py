"""The lecture's stacked LSTM (LSTM 256 -> Dropout 0.4 -> LSTM 256 -> Dropout 0.4 ->
Dense 64 relu -> Dense 1, 806,017 parameters) forecasting yearly sunspot numbers
(1700-2008, shipped with statsmodels) from the previous 60 years, as the lecture's
model reads 60 steps of one feature.

Windows are cut in time order and the last 20 % (about the last 50 years) are the
test set, after every year the model trained on. Baseline: persistence, next year's
number equals this year's.
"""
from __future__ import annotations

import numpy as np

from . import _common

TITLE = "the lecture's stacked LSTM (806,017 parameters) forecasts sunspots"
REQUIRES = ("statsmodels", "matplotlib")
DEFAULT_EPOCHS = 30
WINDOW = 60


def lecture_lstm():
    """The lecture's Keras code, line for line."""
    from ..layers import LSTM, Dense, Dropout
    from ..models import Sequential

    model = Sequential()
    model.add(LSTM(units=256, input_shape=(60, 1), return_sequences=True))
    model.add(Dropout(0.4))
    model.add(LSTM(units=256, return_sequences=False))
    model.add(Dropout(0.4))
    model.add(Dense(64, activation="relu"))
    model.add(Dense(1))
    return model


def windows(series, window=WINDOW):
    """x (N, window, 1): `window` consecutive values; y (N, 1): the value after them."""
    x = np.stack([series[i:i + window] for i in range(len(series) - window)])
    return x[..., None], series[window:, None]


def run(device="cpu", epochs=None, out_dir=".", seed=0):
    from .. import optimizers, utils

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("lstm", TITLE)
    years, series = _common.sunspots()
    x, y = windows(series)
    split = int(round(len(x) * 0.8))
    # Scaled by the training years' maximum: nothing from the test years leaks in.
    scale = series[:split + WINDOW].max()
    x, y = (x / scale).astype(np.float32), (y / scale).astype(np.float32)
    print(f"sunspots {int(years[0])}-{int(years[-1])}: {split} training windows, "
          f"{len(x) - split} test windows (forecasts for {int(years[WINDOW + split])}-"
          f"{int(years[-1])}), {WINDOW} years each")

    utils.set_random_seed(seed)
    model = lecture_lstm()
    model.summary()
    model.to(device)
    model.compile(optimizer=optimizers.Adam(learning_rate=3e-3), loss="mse")
    history = model.fit(x[:split], y[:split], batch_size=16, epochs=epochs, verbose=0,
                        validation_data=(x[split:], y[split:]),
                        callbacks=[_common.EpochProgress(epochs)])
    forecast = model.predict(x[split:])[:, 0] * scale
    truth = y[split:, 0] * scale
    persistence = x[split:, -1, 0] * scale
    rmse = float(np.sqrt(np.mean((forecast - truth) ** 2)))
    persistence_rmse = float(np.sqrt(np.mean((persistence - truth) ** 2)))

    fig, (curves, plot) = _common.figure(10, 3.2, ncols=2, gridspec_kw={"width_ratios": [1, 2]})
    _common.plot_history(curves, history.history, ["loss", "val_loss"],
                         "training (MSE, scaled)", "loss", log=True,
                         labels={"val_loss": "test-years loss"})
    test_years = years[WINDOW + split:]
    plot.plot(years, series, color="0.75", lw=1, label="sunspots (training years in grey)")
    plot.plot(test_years, truth, color="black", lw=1.5, label="truth")
    plot.plot(test_years, forecast, color="tab:red", lw=1.5,
              label=f"LSTM forecast (RMSE {rmse:.1f})")
    plot.plot(test_years, persistence, color="tab:blue", lw=1, ls="--",
              label=f"persistence (RMSE {persistence_rmse:.1f})")
    plot.set_xlim(test_years[0] - 60, years[-1] + 1)
    plot.set_title("next year's sunspot number from the previous 60, test years", fontsize=10)
    plot.set_xlabel("year")
    plot.set_ylim(0, 1.45 * max(series.max(), forecast.max()))  # room for the legend
    plot.legend(fontsize=8, loc="upper center", ncol=2)
    plot.grid(alpha=0.3)
    image = _common.save(fig, out_dir, "lstm.png")
    return _common.Result("lstm", "test RMSE (sunspots)", rmse, "persistence",
                          persistence_rmse, higher_is_better=False, images=[image])
