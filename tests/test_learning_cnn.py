"""Learning tests for convolutional models on scikit-learn's digits (8x8 grey
images shipped with the package): a CNN classifier and a convolutional
autoencoder (Conv2D/MaxPooling2D encoder, Conv2DTranspose/UpSampling2D
decoder). Each is held against a simple baseline, so a broken kernel cannot
pass. (Speed belongs to benchmarks/, not to these tests.)"""
import numpy as np
import pytest

from fusednn import layers, optimizers
import fusednn.models as models
import fusednn.utils as utils

pytestmark = pytest.mark.slow
datasets = pytest.importorskip("sklearn.datasets")
model_selection = pytest.importorskip("sklearn.model_selection")


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    images = (data.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)  # 0..16 -> [0, 1]
    return model_selection.train_test_split(images, data.target, test_size=0.25,
                                            random_state=0, stratify=data.target)


def test_cnn_classifies_digits(digits):
    x_train, x_test, y_train, y_test = digits
    utils.set_random_seed(0)
    model = models.Sequential([
        layers.Conv2D(32, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
        layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dropout(0.3),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=15, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] / 10
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    predicted = model.predict(x_test, verbose=0).argmax(axis=1)
    assert accuracy == pytest.approx(np.mean(predicted == y_test), abs=1e-6)
    assert accuracy >= 0.97, accuracy
    assert np.mean(y_test == np.bincount(y_train).argmax()) < 0.15  # the majority baseline


def test_conv_autoencoder_reconstructs_digits(digits):
    x_train, x_test, _, _ = digits
    utils.set_random_seed(1)
    model = models.Sequential([
        layers.Conv2D(16, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2),                                       # code: 2 x 2 x 8
        layers.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu"),
        layers.UpSampling2D(2),
        layers.Conv2D(1, 3, padding="same", activation="sigmoid"),
    ])
    assert [layer.output_shape for layer in model.layers] == [
        (None, 8, 8, 16), (None, 4, 4, 16), (None, 4, 4, 8), (None, 2, 2, 8),
        (None, 4, 4, 16), (None, 8, 8, 16), (None, 8, 8, 1)]
    assert model.count_params() == (9 * 16 + 16) + (9 * 16 * 8 + 8) + (9 * 8 * 16 + 16) + \
        (9 * 16 + 1)
    model.compile(optimizer=optimizers.Adam(2e-3), loss="mse")
    model.fit(x_train, x_train, batch_size=32, epochs=40, verbose=0)
    mse = float(np.mean((model.predict(x_test, verbose=0) - x_test) ** 2))
    # Predicting the mean training image for every test image (about 0.074 here).
    baseline = float(np.mean((x_train.mean(axis=0) - x_test) ** 2))
    assert mse < 0.35 * baseline, (mse, baseline)
