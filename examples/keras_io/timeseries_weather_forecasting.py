"""Timeseries forecasting for weather prediction: keras-io's example
(examples/timeseries/timeseries_weather_forecasting.py, by Prabhanshu Attri, Yashika
Sharma, Kristi Takach, Falak Shah) on fusednn.

An LSTM reads 5 days of 7 weather features (one reading per hour) and predicts the
temperature 12 hours after the last one, with windows cut by
`timeseries_dataset_from_array`.

What changed from keras-io, and why:
- imports: `fusednn as fd` for `keras`; `fd.utils.timeseries_dataset_from_array` for
  `keras.preprocessing.timeseries_dataset_from_array`.
- data: no download here, so the Jena climate record (2009-2016, every 10 minutes) is
  replaced by a synthetic record with its 14 columns and units, built from a seasonal and a
  daily temperature cycle, slow weather noise, pressure and wind random walks and the
  textbook formulas that tie the humidity columns to temperature and pressure (Magnus's
  vapour pressure, the ideal gas). One year (52560 rows) instead of eight.
- `dataset_train.take(1)` (tf.data) becomes `dataset_train[0]`, the first batch of the
  PyDataset.
- ModelCheckpoint keeps keras-io's `model_checkpoint.weights.h5` name (Keras requires
  that ending) and writes fusednn's safetensors weights under it, to a temporary folder.
- plots: matplotlib figures are left out; the script prints the validation MSE of the model
  and of two baselines (the training mean, and the last temperature the window saw).
- `--quick` (or FUSEDNN_EXAMPLES_QUICK=1): 60 days and 3 epochs, for tests; the last line
  prints the result as JSON.
"""
import json
import os
import sys
import tempfile

import numpy as np
import pandas as pd

import fusednn as fd

QUICK = "--quick" in sys.argv or os.environ.get("FUSEDNN_EXAMPLES_QUICK") == "1"
fd.utils.set_random_seed(1337)

"""
## Climate Data Time-Series

A synthetic stand-in for the Jena Climate dataset: 14 features recorded every 10 minutes.
"""

titles = [
    "Pressure",
    "Temperature",
    "Temperature in Kelvin",
    "Temperature (dew point)",
    "Relative Humidity",
    "Saturation vapor pressure",
    "Vapor pressure",
    "Vapor pressure deficit",
    "Specific humidity",
    "Water vapor concentration",
    "Airtight",
    "Wind speed",
    "Maximum wind speed",
    "Wind direction in degrees",
]

feature_keys = [
    "p (mbar)",
    "T (degC)",
    "Tpot (K)",
    "Tdew (degC)",
    "rh (%)",
    "VPmax (mbar)",
    "VPact (mbar)",
    "VPdef (mbar)",
    "sh (g/kg)",
    "H2OC (mmol/mol)",
    "rho (g/m**3)",
    "wv (m/s)",
    "max. wv (m/s)",
    "wd (deg)",
]

date_time_key = "Date Time"


def smooth_noise(rng, n, scale, correlation_steps):
    """AR(1) noise of standard deviation `scale` forgetting over `correlation_steps`."""
    keep = np.exp(-1.0 / correlation_steps)
    shocks = rng.normal(0, scale * np.sqrt(1 - keep**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0, scale)
    for i in range(1, n):
        out[i] = keep * out[i - 1] + shocks[i]
    return out


def synthetic_jena(days, seed=0):
    rng = np.random.default_rng(seed)
    n = days * 144  # one row every 10 minutes
    day = np.arange(n) / 144
    temperature = (9 - 9 * np.cos(2 * np.pi * (day - 15) / 365)     # season, coldest mid-January
                   - 4 * np.cos(2 * np.pi * (day - 0.125))          # day, warmest at 15:00
                   + smooth_noise(rng, n, 3.0, 3 * 144)             # weather, ~3 days
                   + rng.normal(0, 0.2, n))                         # the sensor
    pressure = 989 + smooth_noise(rng, n, 8.0, 4 * 144)
    humidity = np.clip(78 + 12 * np.cos(2 * np.pi * (day - 0.125))
                       + smooth_noise(rng, n, 10.0, 144), 15, 100)
    vp_max = 6.1078 * np.exp(17.27 * temperature / (temperature + 237.3))  # Magnus, mbar
    vp_act = vp_max * humidity / 100
    magnus = np.log(vp_act / 6.1078)
    wind = np.abs(smooth_noise(rng, n, 2.2, 36)) + 0.3
    return pd.DataFrame({
        date_time_key: pd.date_range("2009-01-01 00:10", periods=n, freq="10min")
        .strftime("%d.%m.%Y %H:%M:%S"),
        "p (mbar)": pressure,
        "T (degC)": temperature,
        "Tpot (K)": (temperature + 273.15) * (1000 / pressure) ** 0.286,
        "Tdew (degC)": 237.3 * magnus / (17.27 - magnus),
        "rh (%)": humidity,
        "VPmax (mbar)": vp_max,
        "VPact (mbar)": vp_act,
        "VPdef (mbar)": vp_max - vp_act,
        "sh (g/kg)": 622 * vp_act / (pressure - 0.378 * vp_act),
        "H2OC (mmol/mol)": 1000 * vp_act / pressure,
        "rho (g/m**3)": pressure * 100 / (287.05 * (temperature + 273.15)) * 1000,
        "wv (m/s)": wind,
        "max. wv (m/s)": wind * (1.6 + 0.4 * rng.random(n)),
        "wd (deg)": np.mod(np.cumsum(rng.normal(0, 8, n)) + 200, 360),
    })


df = synthetic_jena(60 if QUICK else 365)

"""
## Data Preprocessing
"""

split_fraction = 0.715
train_split = int(split_fraction * int(df.shape[0]))
step = 6

past = 720
future = 72
learning_rate = 0.001
batch_size = 256
epochs = 3 if QUICK else 10


def normalize(data, train_split):
    data_mean = data[:train_split].mean(axis=0)
    data_std = data[:train_split].std(axis=0)
    return (data - data_mean) / data_std


print(
    "The selected parameters are:",
    ", ".join([titles[i] for i in [0, 1, 5, 7, 8, 10, 11]]),
)
selected_features = [feature_keys[i] for i in [0, 1, 5, 7, 8, 10, 11]]
features = df[selected_features]
features.index = df[date_time_key]
features.head()

features = normalize(features.values, train_split)
features = pd.DataFrame(features)
features.head()

train_data = features.loc[0 : train_split - 1]
val_data = features.loc[train_split:]

"""
# Training dataset
"""

start = past + future
end = start + train_split

x_train = train_data[[i for i in range(7)]].values
y_train = features.iloc[start:end][[1]]

sequence_length = int(past / step)

dataset_train = fd.utils.timeseries_dataset_from_array(
    x_train,
    y_train,
    sequence_length=sequence_length,
    sampling_rate=step,
    batch_size=batch_size,
)

"""
## Validation dataset
"""

x_end = len(val_data) - past - future

label_start = train_split + past + future

x_val = val_data.iloc[:x_end][[i for i in range(7)]].values
y_val = features.iloc[label_start:][[1]]

dataset_val = fd.utils.timeseries_dataset_from_array(
    x_val,
    y_val,
    sequence_length=sequence_length,
    sampling_rate=step,
    batch_size=batch_size,
)


inputs, targets = dataset_train[0]

print("Input shape:", inputs.shape)
print("Target shape:", targets.shape)

"""
## Training
"""

inputs = fd.layers.Input(shape=(inputs.shape[1], inputs.shape[2]))
lstm_out = fd.layers.LSTM(32)(inputs)
outputs = fd.layers.Dense(1)(lstm_out)

model = fd.Model(inputs=inputs, outputs=outputs)
model.compile(optimizer=fd.optimizers.Adam(learning_rate=learning_rate), loss="mse")
model.summary()

path_checkpoint = os.path.join(tempfile.mkdtemp(), "model_checkpoint.weights.h5")
es_callback = fd.callbacks.EarlyStopping(monitor="val_loss", min_delta=0, patience=5)

modelckpt_callback = fd.callbacks.ModelCheckpoint(
    monitor="val_loss",
    filepath=path_checkpoint,
    verbose=0 if QUICK else 1,
    save_weights_only=True,
    save_best_only=True,
)

history = model.fit(
    dataset_train,
    epochs=epochs,
    validation_data=dataset_val,
    callbacks=[es_callback, modelckpt_callback],
    verbose=0 if QUICK else "auto",
)

"""
## Prediction

Instead of keras-io's plots: the validation MSE (normalized temperature) of the model, of
the training mean (0 after normalizing) and of the last temperature each window saw.
"""

predictions, truths, last_seen = [], [], []
for index in range(len(dataset_val)):
    x, y = dataset_val[index]
    predictions.append(model.predict(x, verbose=0))
    truths.append(y)
    last_seen.append(x[:, -1, 1:2])
predictions, truths, last_seen = (np.concatenate(a) for a in (predictions, truths, last_seen))
mse = {
    "model": float(np.mean((predictions - truths) ** 2)),
    "training_mean": float(np.mean(truths**2)),
    "last_temperature": float(np.mean((last_seen - truths) ** 2)),
}
print("Validation MSE: LSTM %.4f, training mean %.4f, last temperature %.4f"
      % (mse["model"], mse["training_mean"], mse["last_temperature"]))
print(json.dumps({"val_mse": mse, "loss": history.history["loss"],
                  "val_loss": history.history["val_loss"]}))
