"""DCGAN by overriding `train_step`: keras-io's `dcgan_overriding_train_step` (Keras 3
version, fchollet) ported to fusednn, on scikit-learn's 8x8 digits upsampled to 16x16
instead of CelebA faces at 64x64 (nothing is downloaded here).

A subclassed `GAN(fd.Model)` holds the two networks, overrides
`compile(d_optimizer, g_optimizer, loss_fn)` and `train_step`, keeps its losses in
`fd.metrics.Mean` trackers listed by the `metrics` property, and `fit` supplies the loop,
progress bar and callbacks, as in Keras.

What changed from the Keras version, and why:

    Keras 3 (keras-io)                          fusednn (this file)
    -----------------------------------------   -----------------------------------------
    CelebA 64x64x3 from Google Drive,           sklearn digits 8x8 -> 16x16x1 (no
    image_dataset_from_directory                download); fit(x=images, batch_size=64)
    D: 3 x Conv2D(64/128/128), G: Dense 8x8x128 the same layer types, sized for 16x16:
    + 3 x Conv2DTranspose(128/256/512) + Conv2D D: Conv2D 32/64, G: Dense 4x4x64 + 2 x
                                                Conv2DTranspose 64/32 + Conv2D
    keras.random.normal(..., seed=self.         a NumPy Generator held by the model (the
    seed_generator)                             latent vectors are data, not weights)
    with tf.GradientTape() as tape:             the layer protocol: D.zero_grad();
        predictions = D(combined)               p = D.forward(combined, training=True);
        d_loss = loss_fn(labels, predictions)   d_loss, dp = loss_fn.value_and_grad(
    grads = tape.gradient(d_loss, D.trainable_  labels, p); D.backward(dp);
    weights); d_optimizer.apply_gradients(...)  d_optimizer.step(D)
    generator step: tape over                   D.trainable = False (its weights get no
    D(G(z)), gradient w.r.t. G's weights        gradient), G.backward(D.backward(dp)),
                                                g_optimizer.step(G)
    D(...) without training=: Dropout off       forward(training=True): a layer's
    inside train_step (Keras's default)         backward needs its training forward, so
                                                D's Dropout is active in both steps
    return {m.name: m.result() ...}             the same (fit logs the floats)
    GANMonitor saves 3 images per epoch         the same, through fd.utils.array_to_img
                                                (Pillow), with --pictures

fusednn has no tape over arbitrary Python (TensorFlow's GradientTape records every op);
its models differentiate through the layer protocol, which a GAN's two steps compose
directly: the generator's gradient is the discriminator's input gradient, passed on.

Measured (2026-12-06, seed 0, 30 epochs, 50 s of CPU time on the shared 2-core machine
at load average 8): d_loss 0.56 in the first epoch, 0.53 in the last; g_loss 0.91, then
1.21; the mean squared distance of 200 samples to the nearest real digit 0.145 before
training, 0.089 after; the samples are digit-like strokes, a few recognisable. The test
(tests/test_examples_keras_io_dcgan.py) trains 3 epochs and checks the losses and samples.
"""
from __future__ import annotations

import argparse

import numpy as np

import fusednn as fd
from fusednn import layers

LATENT_DIM, SIZE, BATCH = 32, 16, 64


def load_digits() -> np.ndarray:
    """All 1797 digits as (n, 16, 16, 1) in [0, 1]: each 8x8 pixel repeated 2x2."""
    from sklearn.datasets import load_digits as sklearn_digits

    images = (sklearn_digits().images / 16.0).astype(np.float32)
    return np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)[..., None]


def make_discriminator():
    return fd.Sequential([
        fd.Input((SIZE, SIZE, 1)),
        layers.Conv2D(32, 4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(64, 4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(1, activation="sigmoid"),
    ], name="discriminator")


def make_generator():
    return fd.Sequential([
        fd.Input((LATENT_DIM,)),
        layers.Dense(4 * 4 * 64),
        layers.Reshape((4, 4, 64)),
        layers.Conv2DTranspose(64, 4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2DTranspose(32, 4, strides=2, padding="same"),
        layers.LeakyReLU(negative_slope=0.2),
        layers.Conv2D(1, 5, padding="same", activation="sigmoid"),
    ], name="generator")


class GAN(fd.Model):
    def __init__(self, discriminator, generator, latent_dim, seed=1337):
        super().__init__()
        self.discriminator = discriminator
        self.generator = generator
        self.latent_dim = latent_dim
        self.rng = np.random.default_rng(seed)

    def compile(self, d_optimizer, g_optimizer, loss_fn):
        super().compile()
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.d_loss_metric = fd.metrics.Mean(name="d_loss")
        self.g_loss_metric = fd.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def latent_vectors(self, count):
        return self.rng.standard_normal((count, self.latent_dim)).astype(np.float32)

    def train_step(self, real_images):
        batch_size = len(real_images)
        # Decode random points of the latent space to fake images.
        generated_images = self.generator(self.latent_vectors(batch_size))
        # Combine them with real images, labelled 1 (fake) and 0 (real) as in Keras.
        combined_images = np.concatenate([generated_images, real_images], axis=0)
        labels = np.concatenate([np.ones((batch_size, 1)), np.zeros((batch_size, 1))], axis=0)
        # Add random noise to the labels - important trick!
        labels = (labels + 0.05 * self.rng.random(labels.shape)).astype(np.float32)

        # Train the discriminator.
        self.discriminator.zero_grad()
        predictions = self.discriminator.forward(combined_images, training=True)
        d_loss, d_predictions = self.loss_fn.value_and_grad(labels, predictions)
        self.discriminator.backward(d_predictions)
        self.d_optimizer.step(self.discriminator)

        # Train the generator with labels that say "all real images"; the
        # discriminator's weights must not change (frozen layers still pass gradients).
        misleading_labels = np.zeros((batch_size, 1), np.float32)
        self.generator.zero_grad()
        self.discriminator.trainable = False
        predictions = self.discriminator.forward(
            self.generator.forward(self.latent_vectors(batch_size), training=True),
            training=True)
        g_loss, d_predictions = self.loss_fn.value_and_grad(misleading_labels, predictions)
        self.generator.backward(self.discriminator.backward(d_predictions))
        self.g_optimizer.step(self.generator)
        self.discriminator.trainable = True

        # Update the metrics.
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


class GANMonitor(fd.callbacks.Callback):
    """Saves a few generated images after every epoch (needs Pillow)."""

    def __init__(self, num_img=3, latent_dim=LATENT_DIM):
        super().__init__()
        self.num_img = num_img
        self.latent_dim = latent_dim

    def on_epoch_end(self, epoch, logs=None):
        z = np.random.default_rng(epoch).standard_normal((self.num_img, self.latent_dim))
        generated_images = self.model.generator(z.astype(np.float32)) * 255
        for i in range(self.num_img):
            img = fd.utils.array_to_img(generated_images[i])
            img.save(f"generated_img_{epoch:03d}_{i}.png")


def make_gan(seed=0):
    fd.utils.set_random_seed(seed)
    gan = GAN(discriminator=make_discriminator(), generator=make_generator(),
              latent_dim=LATENT_DIM, seed=seed)
    gan.compile(
        d_optimizer=fd.optimizers.Adam(learning_rate=0.0003),
        g_optimizer=fd.optimizers.Adam(learning_rate=0.0003),
        loss_fn=fd.losses.BinaryCrossentropy(),
    )
    return gan


def nearest_real_distance(images, real) -> float:
    """Mean over `images` of the mean squared pixel distance to the nearest real image:
    how far the generated images are from looking like some digit of the data set."""
    flat, pool = images.reshape(len(images), -1), real.reshape(len(real), -1)
    squared = (flat ** 2).sum(1)[:, None] - 2 * flat @ pool.T + (pool ** 2).sum(1)[None, :]
    return float(np.mean(np.min(squared, axis=1)) / flat.shape[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--pictures", action="store_true",
                        help="save 3 generated images per epoch (Pillow)")
    args = parser.parse_args()
    dataset = load_digits()
    gan = make_gan()
    gan.generator.summary()
    gan.discriminator.summary()
    z = np.random.default_rng(99).standard_normal((200, LATENT_DIM)).astype(np.float32)
    before = nearest_real_distance(gan.generator(z), dataset)
    gan.fit(dataset, epochs=args.epochs, batch_size=BATCH,
            callbacks=[GANMonitor(num_img=3, latent_dim=LATENT_DIM)] if args.pictures else [])
    after = nearest_real_distance(gan.generator(z), dataset)
    print(f"mean squared distance of generated images to the nearest real digit: "
          f"{before:.4f} before training, {after:.4f} after")


if __name__ == "__main__":
    main()
