"""Learning tests for dense models on real data shipped with scikit-learn (digits)
and on a generated 2-D mixture: an MLP classifier, a dense autoencoder with an
8-unit code, a denoising autoencoder, and a GAN trained by hand through the layer
protocol. Each compares against a simple baseline so a broken kernel cannot pass."""
import numpy as np
import pytest

import fusednn as fd

pytestmark = pytest.mark.slow
datasets = pytest.importorskip("sklearn.datasets")
model_selection = pytest.importorskip("sklearn.model_selection")


@pytest.fixture(scope="module")
def digits():
    data = datasets.load_digits()
    x = (data.data / 16.0).astype(np.float32)  # pixel values 0..16 -> [0, 1]
    return model_selection.train_test_split(x, data.target, test_size=0.25, random_state=0,
                                            stratify=data.target)


def test_mlp_classifies_digits(digits):
    x_train, x_test, y_train, y_test = digits
    fd.utils.set_random_seed(0)
    model = fd.Sequential([
        fd.layers.Dense(128, activation="relu", input_shape=(64,)),
        fd.layers.Dropout(0.2),
        fd.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=32, epochs=30, verbose=0,
                        validation_split=0.1)
    assert history.history["loss"][-1] < history.history["loss"][0] / 5
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    predicted = model.predict(x_test).argmax(axis=1)
    # The metric and an independent count agree, and clear the 0.95 bar.
    assert accuracy == pytest.approx(np.mean(predicted == y_test), abs=1e-6)
    assert accuracy >= 0.95, accuracy
    majority = np.mean(y_test == np.bincount(y_train).argmax())
    assert majority < 0.15


def _autoencoder():
    return fd.Sequential([
        fd.layers.Dense(128, activation="relu", input_shape=(64,)),
        fd.layers.Dense(8, activation="relu", name="code"),
        fd.layers.Dense(128, activation="relu"),
        fd.layers.Dense(64, activation="sigmoid"),
    ])


def test_dense_autoencoder_reconstructs_digits(digits):
    x_train, x_test, _, _ = digits
    fd.utils.set_random_seed(1)
    model = _autoencoder()
    assert model.count_params() == (64 * 128 + 128) + (128 * 8 + 8) + (8 * 128 + 128) + (128 * 64 + 64)
    model.compile(optimizer=fd.optimizers.Adam(2e-3), loss="mse")
    model.fit(x_train, x_train, batch_size=32, epochs=150, verbose=0)
    mse = float(np.mean((model.predict(x_test) - x_test) ** 2))
    # Baseline: predicting the mean image; the 8-unit code must do far better.
    mean_image_mse = float(np.mean((x_train.mean(axis=0) - x_test) ** 2))
    assert mse < 0.03, (mse, mean_image_mse)
    assert mse < mean_image_mse / 3


def test_denoising_autoencoder_more_than_halves_the_noise(digits):
    x_train, x_test, _, _ = digits
    rng = np.random.default_rng(2)
    noisy = lambda x: np.clip(x + rng.normal(0, 0.3, x.shape), 0, 1).astype(np.float32)
    fd.utils.set_random_seed(2)
    model = _autoencoder()
    model.compile(optimizer=fd.optimizers.Adam(2e-3), loss="mse")
    for _ in range(5):  # fresh noise each round, as a data generator would give
        model.fit(noisy(x_train), x_train, batch_size=32, epochs=25, verbose=0)
    x_noisy = noisy(x_test)
    noise_mse = float(np.mean((x_noisy - x_test) ** 2))
    denoised_mse = float(np.mean((model.predict(x_noisy) - x_test) ** 2))
    assert denoised_mse < 0.5 * noise_mse, (denoised_mse, noise_mse)


def _ring_of_gaussians(rng, n, modes=8, radius=2.0, std=0.05):
    centres = radius * np.stack([np.cos(2 * np.pi * np.arange(modes) / modes),
                                 np.sin(2 * np.pi * np.arange(modes) / modes)], axis=1)
    which = rng.integers(modes, size=n)
    return (centres[which] + rng.normal(0, std, (n, 2))).astype(np.float32), centres


def test_gan_trained_by_hand_covers_the_ring_of_gaussians():
    rng = np.random.default_rng(3)
    fd.utils.set_random_seed(3)
    latent = 8
    generator = fd.Sequential([
        fd.layers.Dense(128, activation="relu", input_shape=(latent,)),
        fd.layers.Dense(128, activation="relu"),
        fd.layers.Dense(2),
    ])
    discriminator = fd.Sequential([
        fd.layers.Dense(128, input_shape=(2,)),
        fd.layers.LeakyReLU(0.2),
        fd.layers.Dense(128),
        fd.layers.LeakyReLU(0.2),
        fd.layers.Dense(1),
    ])
    bce = fd.losses.BinaryCrossentropy(from_logits=True)
    g_opt = fd.optimizers.Adam(1e-3, beta_1=0.5)
    d_opt = fd.optimizers.Adam(1e-3, beta_1=0.5)
    batch = 256
    ones, zeros = np.ones((batch, 1), np.float32), np.zeros((batch, 1), np.float32)
    for _ in range(3000):
        real, centres = _ring_of_gaussians(rng, batch)
        z = rng.normal(size=(batch, latent)).astype(np.float32)
        # Discriminator step: real -> 1, fake -> 0.
        discriminator.zero_grad()
        _, grad = bce.value_and_grad(ones, discriminator.forward(real, training=True))
        discriminator.backward(grad)
        fake = generator.forward(z)
        _, grad = bce.value_and_grad(zeros, discriminator.forward(fake, training=True))
        discriminator.backward(grad)
        d_opt.step(discriminator)
        # Generator step through the frozen discriminator: G.backward(D.backward(g)).
        generator.zero_grad()
        discriminator.trainable = False
        fake = generator.forward(z, training=True)
        _, grad = bce.value_and_grad(ones, discriminator.forward(fake, training=True))
        generator.backward(discriminator.backward(grad))
        discriminator.trainable = True
        g_opt.step(generator)

    samples = generator.predict(rng.normal(size=(4000, latent)).astype(np.float32))
    distance = np.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=2)
    nearest, close = distance.argmin(axis=1), distance.min(axis=1) < 0.15  # 3 std of a mode
    counts = np.bincount(nearest[close], minlength=8)
    covered = int(np.sum(counts >= 0.02 * len(samples)))
    assert covered >= 7, counts
    assert close.mean() > 0.5, close.mean()  # most samples are on a mode, not between
