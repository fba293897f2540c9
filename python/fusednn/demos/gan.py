"""A GAN trained by hand through the layer protocol: a generator (Dense 128 -> Dense 128
-> Dense 2) learns to draw points of a ring of 8 Gaussians (radius 2, standard
deviation 0.05) from 8 random numbers, against a discriminator (Dense 128 ->
LeakyReLU -> Dense 128 -> LeakyReLU -> Dense 1 logit), with the lecture's minimax loss
(binary cross-entropy) and the generator updated through the frozen discriminator:

    D.zero_grad(); D.backward(dloss(D(real), 1)); D.backward(dloss(D(G(z)), 0)); d_opt.step(D)
    G.zero_grad(); D.trainable = False; G.backward(D.backward(dloss(D(G(z)), 1))); g_opt.step(G)

Metric: the fraction of generated points within 3 standard deviations (0.15) of a
mode, with the number of modes that get at least 2 % of the points (mode collapse
shows there). Baseline: a single Gaussian with the data's mean and covariance, the
simplest generative model of the same data.

Under mpiexec (`mpiexec -n 2 fusednn demo gan`) the loop is data-parallel through
fd.distribute's hand-written protocol: every rank starts from rank 0's networks
(broadcast_variables), draws the same global batch and trains on its part of it
(rank_part), and averages the gradients over the ranks before each optimizer step
(allreduce_gradients); every rank ends with the same networks, only rank 0 prints and
writes the picture.
"""
from __future__ import annotations

import numpy as np

from . import _common

TITLE = "a GAN, trained by hand through the layer protocol, learns a ring of 8 Gaussians"
REQUIRES = ("matplotlib",)
DEFAULT_EPOCHS = 8
STEPS_PER_EPOCH = 250   # an "epoch" here is 250 generator/discriminator steps
BATCH, LATENT, MODES, RADIUS, STD = 128, 8, 8, 2.0, 0.05
SNAPSHOTS = 6           # pictures of the generator's samples during training


def ring_centres():
    angles = 2 * np.pi * np.arange(MODES) / MODES
    return RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def ring_samples(rng, n):
    """n points (n, 2) of the ring of Gaussians."""
    which = rng.integers(MODES, size=n)
    return (ring_centres()[which] + rng.normal(0, STD, (n, 2))).astype(np.float32)


def quality(points):
    """(fraction of points within 3 std of a mode, number of modes with >= 2 % of them)."""
    distance = np.linalg.norm(points[:, None, :] - ring_centres()[None], axis=2)
    close = distance.min(axis=1) < 3 * STD
    counts = np.bincount(distance.argmin(axis=1)[close], minlength=MODES)
    return float(close.mean()), int(np.sum(counts >= 0.02 * len(points)))


def generator_network():
    """Dense 128 -> Dense 128 -> Dense 2 from LATENT random numbers (the WGAN demo's too)."""
    from .. import layers, models

    return models.Sequential([
        layers.Dense(128, activation="relu", input_shape=(LATENT,)),
        layers.Dense(128, activation="relu"),
        layers.Dense(2),
    ], name="generator")


def networks():
    from .. import layers, models

    generator = generator_network()
    discriminator = models.Sequential([
        layers.Dense(128, input_shape=(2,)),
        layers.LeakyReLU(0.2),
        layers.Dense(128),
        layers.LeakyReLU(0.2),
        layers.Dense(1),
    ], name="discriminator")
    return generator, discriminator


def run(device="cpu", epochs=None, out_dir=".", seed=3):
    from .. import distribute, losses, optimizers, utils
    from ..callbacks import Progbar

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("gan", TITLE)
    utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    steps = epochs * STEPS_PER_EPOCH
    print(f"{steps} steps ({epochs} x {STEPS_PER_EPOCH}) with batches of {BATCH} real and "
          f"{BATCH} generated points")
    generator, discriminator = networks()
    generator.summary()
    discriminator.summary()
    generator.to(device)
    discriminator.to(device)
    distribute.broadcast_variables(generator)       # in a job: rank 0's networks
    distribute.broadcast_variables(discriminator)
    mine = distribute.rank_part(BATCH)   # this rank's part of each batch (all in one process)

    bce = losses.BinaryCrossentropy(from_logits=True)
    g_opt = optimizers.Adam(learning_rate=1e-3, beta_1=0.5)
    d_opt = optimizers.Adam(learning_rate=1e-3, beta_1=0.5)
    ones = _common.on_device(np.ones((BATCH, 1), np.float32)[mine], device)
    zeros = _common.on_device(np.zeros((BATCH, 1), np.float32)[mine], device)
    fixed_z = rng.normal(size=(1000, LATENT)).astype(np.float32)  # the snapshots' inputs
    snapshot_steps = set(np.linspace(0, steps, SNAPSHOTS).astype(int))
    snapshots = {0: generator.predict(fixed_z)}
    history = {"discriminator": [], "generator": []}
    progress = Progbar(epochs, unit_name="epoch")
    d_sum = g_sum = 0.0
    for step in range(1, steps + 1):
        real = _common.on_device(ring_samples(rng, BATCH)[mine], device)
        z = _common.on_device(rng.normal(size=(BATCH, LATENT)).astype(np.float32)[mine],
                              device)
        # Discriminator: real -> 1, generated -> 0.
        discriminator.zero_grad()
        d_real, grad = bce.value_and_grad(ones, discriminator.forward(real, training=True))
        discriminator.backward(grad)
        fake = generator.forward(z)
        d_fake, grad = bce.value_and_grad(zeros, discriminator.forward(fake, training=True))
        discriminator.backward(grad)
        distribute.allreduce_gradients(discriminator)   # the mean over the ranks' parts
        d_opt.step(discriminator)
        # Generator: through the frozen discriminator, G.backward(D.backward(g)).
        generator.zero_grad()
        discriminator.trainable = False
        fake = generator.forward(z, training=True)
        g_loss, grad = bce.value_and_grad(ones, discriminator.forward(fake, training=True))
        generator.backward(discriminator.backward(grad))
        discriminator.trainable = True
        distribute.allreduce_gradients(generator)
        g_opt.step(generator)

        d_sum += float(d_real) + float(d_fake)
        g_sum += float(g_loss)
        if step in snapshot_steps:
            snapshots[step] = generator.predict(fixed_z)
        if step % STEPS_PER_EPOCH == 0:
            history["discriminator"].append(d_sum / STEPS_PER_EPOCH)
            history["generator"].append(g_sum / STEPS_PER_EPOCH)
            d_sum = g_sum = 0.0
            epoch = step // STEPS_PER_EPOCH
            progress.update(epoch, [("d_loss", history["discriminator"][-1]),
                                    ("g_loss", history["generator"][-1])],
                            finalize=epoch == epochs)

    return result("gan", "GAN", generator, snapshots, rng, out_dir)


def result(name, label, generator, snapshots, rng, out_dir):
    """The ring demos' ending (this one and wgan.py): `generator`'s points scored by
    `quality` beside one Gaussian fitted to the data, and the picture of `snapshots`
    ({step: points}) saved as NAME.png."""
    generated = generator.predict(rng.normal(size=(4000, LATENT)).astype(np.float32))
    close, modes = quality(generated)
    real = ring_samples(rng, 4000)
    gaussian = rng.multivariate_normal(real.mean(axis=0), np.cov(real.T), size=4000)
    gaussian_close, gaussian_modes = quality(gaussian)

    fig, _ = _common.figure(12, 2.5)
    axes = fig.subplots(1, len(snapshots) + 1)
    for ax, (step, points) in zip(axes, sorted(snapshots.items())):
        _scatter(ax, real[:1000], points, f"step {step}")
    _scatter(axes[-1], real[:1000], gaussian[:1000], "baseline: one Gaussian", color="tab:blue")
    fig.suptitle(f"{label}: generated points (red) over training, real ring in grey",
                 fontsize=10)
    image = _common.save(fig, out_dir, f"{name}.png")
    return _common.Result(
        name, "generated points on a mode", close, "one Gaussian fitted to the data",
        gaussian_close, higher_is_better=True, images=[image],
        details=f"modes covered (>= 2 % of the points): {label} {modes} of {MODES}, "
                f"Gaussian {gaussian_modes} of {MODES}")


def _scatter(ax, real, generated, title, color="tab:red"):
    ax.scatter(real[:, 0], real[:, 1], s=2, color="0.7")
    ax.scatter(generated[:, 0], generated[:, 1], s=2, color=color, alpha=0.5)
    limit = RADIUS * 1.6
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
