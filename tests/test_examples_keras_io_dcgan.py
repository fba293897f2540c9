"""examples/keras_io/dcgan_subclassed.py, run briefly (3 epochs of the 16x16 digits,
about 10 s on one loaded CPU core): the subclassed GAN trains through fit with its own
train_step and Mean trackers, and its losses and samples move as a GAN's do.

Why these checks show GAN training rather than just numbers changing:
- At the start both networks are at chance: the discriminator's sigmoid outputs are
  near 0.5, where binary cross-entropy is ln 2 = 0.693 whatever the (noisy) labels, so
  the first batch's d_loss is ln 2 to within a few hundredths.
- The discriminator then learns to tell real from generated images: its epoch means
  fall below ln 2 (better than chance), while the generator, scored on fooling it,
  has g_loss above ln 2; neither side wins outright (d_loss stays well above 0, g_loss
  finite and moderate), the balance of a GAN that is training.
- The generator learns from the discriminator's input gradient alone (it never sees a
  real image): the mean squared distance from its samples to the nearest real digit
  falls by over a fifth (0.145 -> 0.093 with seed 0; 0.146 -> 0.096 and 0.148 -> 0.110
  with seeds 1 and 2, so 0.8 leaves room).
"""
from __future__ import annotations

import math
import pathlib
import sys

import numpy as np
import pytest

import fusednn as fd

pytest.importorskip("sklearn")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples" / "keras_io"))
import dcgan_subclassed as example  # noqa: E402


class BatchLogs(fd.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.logs = []

    def on_train_batch_end(self, batch, logs=None):
        self.logs.append(dict(logs))


def test_dcgan_losses_and_samples_move_as_a_gan_does():
    data = example.load_digits()
    assert data.shape == (1797, 16, 16, 1) and 0.0 <= data.min() and data.max() == 1.0
    gan = example.make_gan(seed=0)
    assert [m.name for m in gan.metrics] == ["d_loss", "g_loss"]
    # The generator and discriminator are tracked: the GAN's weights are theirs.
    assert [layer.name for layer in gan.layers] == ["discriminator", "generator"]
    assert len(gan.weights) == len(gan.discriminator.weights) + len(gan.generator.weights)

    z = np.random.default_rng(99).standard_normal((200, example.LATENT_DIM)).astype(np.float32)
    before = example.nearest_real_distance(gan.generator(z), data)
    batches = BatchLogs()
    history = gan.fit(data, epochs=3, batch_size=example.BATCH, verbose=0,
                      callbacks=[batches])
    after = example.nearest_real_distance(gan.generator(z), data)

    assert list(history.history) == ["d_loss", "g_loss"]
    d_loss, g_loss = np.array(history.history["d_loss"]), np.array(history.history["g_loss"])
    assert np.all(np.isfinite(d_loss)) and np.all(np.isfinite(g_loss))
    assert abs(batches.logs[0]["d_loss"] - math.log(2)) < 0.05
    assert len(batches.logs) == 3 * math.ceil(len(data) / example.BATCH)
    assert np.all(d_loss < math.log(2)) and np.all(d_loss > 0.1)
    assert np.all(g_loss > math.log(2)) and np.all(g_loss < 5.0)
    assert after < 0.8 * before
