"""Timeseries anomaly detection using an Autoencoder: keras-io's example
(examples/timeseries/timeseries_anomaly_detection.py, by pavithrasv) on fusednn.

A convolutional autoencoder (Conv1D down, Conv1DTranspose up) learns to reconstruct
one-day windows of a series without anomalies; a window of the test series whose
reconstruction error (MAE) exceeds the largest one seen in training is an anomaly.

What changed from keras-io, and why:
- imports: `fusednn as fd` and `fd.layers` for `keras` and `keras.layers`.
- data: no download here, so NAB's art_daily_small_noise / art_daily_jumpsup are replaced by
  stand-ins of the same shape, 14 days at 5-minute steps (4032 values, 288 a day): a daily
  sine plus noise, and the same with one afternoon jumping up (the injected anomaly). The
  series are NumPy arrays instead of pandas DataFrames (no pandas needed).
- plots: matplotlib figures are left out (the script prints what they showed).
- `--quick` (or FUSEDNN_EXAMPLES_QUICK=1): 3 days instead of 14 and at most 8 epochs, for
  tests; the last line prints the result as JSON.
"""
import json
import os
import sys

import numpy as np

import fusednn as fd
from fusednn import layers

QUICK = "--quick" in sys.argv or os.environ.get("FUSEDNN_EXAMPLES_QUICK") == "1"
fd.utils.set_random_seed(1337)

"""
## Load the data

NAB's series: one value every 5 minutes, 288 a day. The stand-ins: a daily sine around 42
with amplitude 20 and noise of standard deviation 2; the test series jumps up by 60 for 70
steps (almost 6 hours) in the afternoon of its second-to-last day.
"""

STEPS_PER_DAY = 288
DAYS = 3 if QUICK else 14


def make_series(rng, days, jump=False):
    t = np.arange(days * STEPS_PER_DAY)
    values = 42 + 20 * np.sin(2 * np.pi * t / STEPS_PER_DAY) + rng.normal(0, 2, t.size)
    anomaly = slice((days - 2) * STEPS_PER_DAY + 170, (days - 2) * STEPS_PER_DAY + 240)
    if jump:
        values[anomaly] += 60
    return values[:, None].astype(np.float32), anomaly


rng = np.random.default_rng(0)
df_small_noise, _ = make_series(rng, DAYS)
df_daily_jumpsup, injected = make_series(rng, DAYS, jump=True)

"""
## Prepare training data
"""

# Normalize and save the mean and std we get,
# for normalizing test data.
training_mean = df_small_noise.mean(axis=0)
training_std = df_small_noise.std(axis=0)
df_training_value = (df_small_noise - training_mean) / training_std
print("Number of training samples:", len(df_training_value))

TIME_STEPS = 288


# Generated training sequences for use in the model.
def create_sequences(values, time_steps=TIME_STEPS):
    output = []
    for i in range(len(values) - time_steps + 1):
        output.append(values[i : (i + time_steps)])
    return np.stack(output)


x_train = create_sequences(df_training_value)
print("Training input shape: ", x_train.shape)

"""
## Build a model
"""

model = fd.Sequential(
    [
        layers.Input(shape=(x_train.shape[1], x_train.shape[2])),
        layers.Conv1D(
            filters=32,
            kernel_size=7,
            padding="same",
            strides=2,
            activation="relu",
        ),
        layers.Dropout(rate=0.2),
        layers.Conv1D(
            filters=16,
            kernel_size=7,
            padding="same",
            strides=2,
            activation="relu",
        ),
        layers.Conv1DTranspose(
            filters=16,
            kernel_size=7,
            padding="same",
            strides=2,
            activation="relu",
        ),
        layers.Dropout(rate=0.2),
        layers.Conv1DTranspose(
            filters=32,
            kernel_size=7,
            padding="same",
            strides=2,
            activation="relu",
        ),
        layers.Conv1DTranspose(filters=1, kernel_size=7, padding="same"),
    ]
)
model.compile(optimizer=fd.optimizers.Adam(learning_rate=0.001), loss="mse")
model.summary()

"""
## Train the model
"""

history = model.fit(
    x_train,
    x_train,
    epochs=8 if QUICK else 50,
    batch_size=128,
    validation_split=0.1,
    callbacks=[
        fd.callbacks.EarlyStopping(monitor="val_loss", patience=5, mode="min")
    ],
    verbose=0 if QUICK else "auto",
)
print("Training loss: first epoch %.4f, last epoch %.4f"
      % (history.history["loss"][0], history.history["loss"][-1]))

"""
## Detecting anomalies
"""

# Get train MAE loss.
x_train_pred = model.predict(x_train, verbose=0)
train_mae_loss = np.mean(np.abs(x_train_pred - x_train), axis=1)

# Get reconstruction loss threshold.
threshold = np.max(train_mae_loss)
print("Reconstruction error threshold: ", threshold)

"""
## Prepare test data
"""

df_test_value = (df_daily_jumpsup - training_mean) / training_std

# Create sequences from test values.
x_test = create_sequences(df_test_value)
print("Test input shape: ", x_test.shape)

# Get test MAE loss.
x_test_pred = model.predict(x_test, verbose=0)
test_mae_loss = np.mean(np.abs(x_test_pred - x_test), axis=1)
test_mae_loss = test_mae_loss.reshape((-1))

# Detect all the samples which are anomalies.
anomalies = test_mae_loss > threshold
print("Number of anomaly samples: ", np.sum(anomalies))
print("Indices of anomaly samples: ", np.where(anomalies))

"""
## Plot anomalies

We now know the samples of the data which are anomalies. With this, we will
find the corresponding `timestamps` from the original test data.
"""

# data i is an anomaly if samples [(i - timesteps + 1) to (i)] are anomalies
anomalous_data_indices = []
for data_idx in range(TIME_STEPS - 1, len(df_test_value) - TIME_STEPS + 1):
    if np.all(anomalies[data_idx - TIME_STEPS + 1 : data_idx]):
        anomalous_data_indices.append(data_idx)

print("Anomalous data points: %d, from index %s to %s; injected anomaly: %d to %d"
      % (len(anomalous_data_indices), min(anomalous_data_indices, default=None),
         max(anomalous_data_indices, default=None), injected.start, injected.stop - 1))
print(json.dumps({
    "loss_first": history.history["loss"][0], "loss_last": history.history["loss"][-1],
    "threshold": float(threshold), "anomalous_windows": int(np.sum(anomalies)),
    "anomalous_data_indices": anomalous_data_indices,
    "injected": [injected.start, injected.stop - 1]}))
