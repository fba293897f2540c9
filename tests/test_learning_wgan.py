"""The WGAN demo's training (fusednn.demos.wgan: a loss written with fusednn.ops, weight
clipping, n_critic RMSprop steps) moves the generator onto the ring of Gaussians."""
from __future__ import annotations

import numpy as np

import fusednn as fd
from fusednn.demos import gan, wgan


def _distance_to_nearest_mode(points):
    return np.linalg.norm(points[:, None] - gan.ring_centres()[None], axis=2).min(axis=1)


def test_wgan_moves_the_generator_onto_the_ring():
    fd.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    generator, critic = wgan.networks()
    z = rng.normal(size=(2000, gan.LATENT)).astype(np.float32)
    before = np.median(_distance_to_nearest_mode(generator.predict(z)))
    wgan.train(generator, critic, 500, rng)
    after = np.median(_distance_to_nearest_mode(generator.predict(z)))
    # Seed 3: 1.81 -> 0.88 after 600 steps and 0.71 after 1000 (measured); an untrained or
    # diverging generator stays near the centre, ~1.8 from every mode.
    assert after < 0.6 * before, (before, after)
    # The clipping constraint held after every critic update.
    for weight in critic.get_weights():
        assert np.abs(weight).max() <= wgan.CLIP_VALUE
