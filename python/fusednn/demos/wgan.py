"""A Wasserstein GAN (Arjovsky et al. 2017) on the minimax GAN demo's ring of 8 Gaussians,
written the way Keras WGAN examples write it: the critic's loss is a user function over
fusednn.ops,

    def wasserstein_loss(y_true, y_pred):
        return ops.mean(y_true * y_pred)        # labels -1 for real, +1 for generated

so minimising it raises the critic's score of real points and lowers that of generated
ones; the critic (Dense 128 -> LeakyReLU -> Dense 128 -> LeakyReLU -> Dense 1, a score,
no sigmoid) keeps every weight in [-c, c] with a WeightClipping constraint, applied by
the optimizer after each update; it takes N_CRITIC RMSprop steps (each a real and a
generated batch, train_on_batch) per generator step, and the generator (the GAN demo's)
is trained through the frozen critic with the real label, -1.

Hyperparameters: the paper's RMSprop and n_critic = 5, but a learning rate of 1e-3 and
c = 0.1 instead of its 5e-5 and 0.01. Measured while writing this demo (seed 3, 4000
points): with 5e-5 / 0.01 no generated point lay within 3 standard deviations of a mode
after 1000 generator steps, with 5e-4 / 0.01 1.9 % after 2000 (no mode covered), with
1e-3 / 0.05 28 % after 2000 (5 modes), and with 1e-3 / 0.1 54 % after 3000 (all 8).

WGAN-GP (Gulrajani et al. 2017) replaces the clipping by a penalty on the norm of the
critic's gradient w.r.t. its input, whose training needs the gradient of that gradient
w.r.t. the weights; fusednn's layer protocol gives first derivatives only (backward), so
WGAN-GP is not offered.

Metric: the GAN demo's (points within 3 standard deviations of a mode, modes with >= 2 %).
Under mpiexec the training is data-parallel as in the GAN demo (see gan.py).
"""
from __future__ import annotations

import numpy as np

from . import _common
from .gan import BATCH, LATENT, generator_network, result, ring_samples

TITLE = "a Wasserstein GAN (weight clipping, a loss written with fusednn.ops) learns the ring"
REQUIRES = ("matplotlib",)
DEFAULT_EPOCHS = 12
STEPS_PER_EPOCH = 250    # generator steps per "epoch"
N_CRITIC = 5             # critic steps per generator step (the paper's)
LEARNING_RATE, CLIP_VALUE = 1e-3, 0.1
SNAPSHOTS = 6


def wasserstein_loss(y_true, y_pred):
    """The Keras examples' Wasserstein loss, over fusednn.ops."""
    from .. import ops

    return ops.mean(y_true * y_pred)


def networks():
    from .. import constraints, layers, models

    generator = generator_network()

    def clipped():
        return {"kernel_constraint": constraints.WeightClipping(CLIP_VALUE),
                "bias_constraint": constraints.WeightClipping(CLIP_VALUE)}

    critic = models.Sequential([
        layers.Dense(128, input_shape=(2,), **clipped()),
        layers.LeakyReLU(0.2),
        layers.Dense(128, **clipped()),
        layers.LeakyReLU(0.2),
        layers.Dense(1, **clipped()),
    ], name="critic")
    return generator, critic


def train(generator, critic, steps, rng, device="cpu", on_step=None):
    """`steps` generator steps, each after N_CRITIC critic steps; on_step(step, critic
    loss, generator loss) after each. Returns nothing: the networks are trained in place."""
    from .. import distribute, losses, optimizers

    # In a job (mpiexec): rank 0's networks, this rank's part of every batch, gradients
    # averaged before each step (the critic's through its optimizer), as in gan.py.
    distribute.broadcast_variables(generator)
    distribute.broadcast_variables(critic)
    mine = distribute.rank_part(BATCH)
    critic.compile(optimizer=distribute.DistributedOptimizer(optimizers.RMSprop(LEARNING_RATE)),
                   loss=wasserstein_loss)
    g_opt = optimizers.RMSprop(LEARNING_RATE)
    loss = losses.get(wasserstein_loss)
    real_label = _common.on_device(-np.ones((BATCH, 1), np.float32)[mine], device)
    fake_label = -real_label

    def noise():
        return _common.on_device(rng.normal(size=(BATCH, LATENT)).astype(np.float32)[mine],
                                 device)

    for step in range(1, steps + 1):
        for _ in range(N_CRITIC):
            real = _common.on_device(ring_samples(rng, BATCH)[mine], device)
            c_real = critic.train_on_batch(real, real_label)
            c_fake = critic.train_on_batch(generator.forward(noise()), fake_label)
        # Generator: through the frozen critic, towards the real label.
        generator.zero_grad()
        critic.trainable = False
        score = critic.forward(generator.forward(noise(), training=True), training=True)
        g_loss, grad = loss.value_and_grad(real_label, score)
        generator.backward(critic.backward(grad))
        critic.trainable = True
        distribute.allreduce_gradients(generator)
        g_opt.step(generator)
        if on_step is not None:
            on_step(step, float(c_real) + float(c_fake), float(g_loss))


def run(device="cpu", epochs=None, out_dir=".", seed=3):
    from .. import utils
    from ..callbacks import Progbar

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("wgan", TITLE)
    utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    steps = epochs * STEPS_PER_EPOCH
    print(f"{steps} generator steps ({epochs} x {STEPS_PER_EPOCH}), {N_CRITIC} critic steps "
          f"each, batches of {BATCH}; RMSprop({LEARNING_RATE}), weights clipped to "
          f"[-{CLIP_VALUE}, {CLIP_VALUE}]")
    generator, critic = networks()
    generator.summary()
    critic.summary()
    generator.to(device)
    critic.to(device)

    fixed_z = rng.normal(size=(1000, LATENT)).astype(np.float32)
    snapshot_steps = set(np.linspace(0, steps, SNAPSHOTS).astype(int))
    snapshots = {0: generator.predict(fixed_z)}
    sums = {"critic": 0.0, "generator": 0.0}
    progress = Progbar(epochs, unit_name="epoch")

    def on_step(step, c_loss, g_loss):
        sums["critic"] += c_loss
        sums["generator"] += g_loss
        if step in snapshot_steps:
            snapshots[step] = generator.predict(fixed_z)
        if step % STEPS_PER_EPOCH == 0:
            epoch = step // STEPS_PER_EPOCH
            progress.update(epoch, [("c_loss", sums["critic"] / STEPS_PER_EPOCH),
                                    ("g_loss", sums["generator"] / STEPS_PER_EPOCH)],
                            finalize=epoch == epochs)
            sums.update(critic=0.0, generator=0.0)

    train(generator, critic, steps, rng, device, on_step)

    return result("wgan", "WGAN", generator, snapshots, rng, out_dir)
