"""BatchNormalization: forward against the formula (batch statistics with biased
variance in training, moving statistics in inference), moving-statistic
updates, backward (input, gamma, beta) against central finite differences in
float64, PyTorch's BatchNorm2d / BatchNorm1d as an oracle (momentum and
unbiased running variance converted), Keras's weight order and parameter
counts, frozen layers, configs and bad input; CPU vs CUDA where a GPU exists."""
import numpy as np
import pytest

from fusednn import backend, layers
from gradcheck import numeric_gradient


def reference_forward(x, gamma, beta, mean, var, epsilon, axis):
    shape = [1] * x.ndim
    shape[axis] = -1
    r = lambda v: np.asarray(v).reshape(shape)  # noqa: E731
    return (x - r(mean)) / np.sqrt(r(var) + epsilon) * r(gamma) + r(beta)


def batch_stats(x, axis):
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    return x.mean(axis=axes), x.var(axis=axes)  # np.var is the biased variance


def built_layer(rng, shape, dtype="float64", **kwargs):
    """A built layer with random gamma/beta/moving statistics (so none is trivially 1 or 0)."""
    layer = layers.BatchNormalization(dtype=dtype, **kwargs)
    layer.build_for((None,) + shape[1:])
    C = layer.moving_mean.shape[0]
    values = []
    for var in layer.variables:
        if var.name.endswith(("gamma", "moving_variance")):
            values.append(rng.uniform(0.5, 2.0, C))
        else:
            values.append(rng.standard_normal(C))
    layer.set_weights(values)
    return layer


# ----- forward and moving statistics --------------------------------------------------------

@pytest.mark.parametrize("shape, axis", [((8, 5), -1), ((4, 3, 5, 6), -1), ((4, 3, 5, 6), 1),
                                         ((3, 7, 2), 1), ((1, 6), -1)])
def test_training_forward_uses_batch_statistics_and_updates_moving_ones(rng, shape, axis):
    x = rng.standard_normal(shape) * 3 + 1
    layer = built_layer(rng, shape, axis=axis, momentum=0.9, epsilon=1e-3)
    gamma, beta, moving_mean, moving_var = layer.get_weights()
    mean, var = batch_stats(x, axis)
    y = layer.forward(x, training=True)
    # float64 throughout: agreement to rounding.
    np.testing.assert_allclose(y, reference_forward(x, gamma, beta, mean, var, 1e-3, axis),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.value, moving_mean * 0.9 + mean * 0.1, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.value, moving_var * 0.9 + var * 0.1,
                               rtol=1e-12)
    # A second step compounds from the updated values.
    x2 = rng.standard_normal(shape)
    mean2, var2 = batch_stats(x2, axis)
    layer.forward(x2, training=True)
    np.testing.assert_allclose(layer.moving_mean.value,
                               (moving_mean * 0.9 + mean * 0.1) * 0.9 + mean2 * 0.1, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.value,
                               (moving_var * 0.9 + var * 0.1) * 0.9 + var2 * 0.1, rtol=1e-12)


def test_inference_uses_moving_statistics_and_changes_nothing(rng):
    x = rng.standard_normal((6, 4, 4, 3))
    layer = built_layer(rng, x.shape)
    weights = layer.get_weights()
    gamma, beta, moving_mean, moving_var = weights
    y = layer(x)
    np.testing.assert_allclose(y, reference_forward(x, gamma, beta, moving_mean, moving_var,
                                                    1e-3, -1), rtol=1e-12, atol=1e-12)
    for before, after in zip(weights, layer.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_fresh_layer_in_inference_is_nearly_identity(rng):
    x = rng.standard_normal((5, 3)).astype(np.float32)
    # moving mean 0, variance 1, gamma 1, beta 0: y = x / sqrt(1 + epsilon).
    np.testing.assert_allclose(layers.BatchNormalization()(x), x / np.sqrt(1.001), rtol=1e-6)


def test_float32_training_forward(rng):
    x = (rng.standard_normal((32, 6, 6, 8)) * 10 + 5).astype(np.float32)
    layer = layers.BatchNormalization()
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    mean, var = batch_stats(x.astype(np.float64), -1)
    want = reference_forward(x.astype(np.float64), 1, 0, mean, var, 1e-3, -1)
    # Reductions over 1152 float32 values per channel: relative error ~1e-6 of |x| ~ 10.
    np.testing.assert_allclose(y, want, rtol=0, atol=2e-5)


# ----- backward -----------------------------------------------------------------------

@pytest.mark.parametrize("shape, axis", [((6, 4), -1), ((3, 4, 3, 2), -1), ((3, 2, 5), 1),
                                         ((1, 3, 3, 2), -1)])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False)])
def test_training_backward_matches_finite_differences(rng, shape, axis, center, scale):
    x = rng.standard_normal(shape)
    layer = built_layer(rng, shape, axis=axis, center=center, scale=scale)
    weights = rng.standard_normal(shape)
    layer.zero_grad()
    layer.forward(x, training=True)
    dx = layer.backward(weights)
    grads = {v.name.split("/")[-1]: g for v, g in zip(layer.variables, layer.get_gradients())}

    # Training mode, but the loss must not drift with the moving statistics it updates.
    def loss():
        return float((layer.call(x, True)[0] * weights).sum())

    # The loss is smooth with second derivatives of order 1: central differences with
    # eps 1e-6 carry ~1e-10 truncation and ~1e-10 rounding error.
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=0, atol=1e-7)
    if scale:
        np.testing.assert_allclose(grads["gamma"], numeric_gradient(loss, layer.gamma.value),
                                   rtol=0, atol=1e-7)
    if center:
        np.testing.assert_allclose(grads["beta"], numeric_gradient(loss, layer.beta.value),
                                   rtol=0, atol=1e-7)
    np.testing.assert_array_equal(grads["moving_mean"], 0)
    np.testing.assert_array_equal(grads["moving_variance"], 0)


def test_backward_accumulates_parameter_gradients(rng):
    x = rng.standard_normal((5, 3))
    layer = built_layer(rng, x.shape)
    dy = rng.standard_normal(x.shape)
    layer.forward(x, training=True)
    layer.backward(dy)
    once = layer.get_gradients()
    layer.backward(dy)
    for a, b in zip(once, layer.get_gradients()):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-12)


# ----- frozen layers -------------------------------------------------------------------

def test_frozen_layer_runs_in_inference_mode_even_when_training(rng):
    x = rng.standard_normal((6, 4))
    layer = built_layer(rng, x.shape)
    layer.trainable = False
    weights = layer.get_weights()
    gamma, beta, moving_mean, moving_var = weights
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, reference_forward(x, gamma, beta, moving_mean, moving_var,
                                                    1e-3, -1), rtol=1e-12, atol=1e-12)
    for before, after in zip(weights, layer.get_weights()):
        np.testing.assert_array_equal(before, after)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), dy * gamma / np.sqrt(moving_var + 1e-3),
                               rtol=1e-12)
    assert all(np.all(g == 0) for g in layer.get_gradients())
    assert layer.trainable_variables == []


# ----- PyTorch as an oracle --------------------------------------------------------------

def test_matches_torch_batchnorm2d(rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((8, 5, 6, 4)) * 2 + 3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    C, count = 4, 8 * 5 * 6
    layer = layers.BatchNormalization(momentum=0.9, epsilon=1e-3)
    layer.build_for((None, 5, 6, 4))
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    layer.set_weights([gamma, beta, np.zeros(C), np.ones(C)])
    # Keras momentum is the weight of the old value, torch's the weight of the new one.
    bn = torch.nn.BatchNorm2d(C, eps=1e-3, momentum=1 - 0.9)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(gamma))
        bn.bias.copy_(torch.tensor(beta))
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    ty = bn.train()(tx)
    ty.backward(torch.tensor(dy.transpose(0, 3, 1, 2)))

    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    # float32 on both sides, reductions over 240 values: ~1e-6 relative to O(1) values.
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
    grads = layer.get_gradients()
    np.testing.assert_allclose(grads[0], bn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads[1], bn.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.value, bn.running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    # torch keeps the unbiased variance (times M / (M - 1)) in its running average.
    _, biased = batch_stats(x.astype(np.float64), -1)
    torch_expected = 0.9 * 1 + 0.1 * biased * count / (count - 1)
    np.testing.assert_allclose(bn.running_var.numpy(), torch_expected, rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance.value, 0.9 * 1 + 0.1 * biased, rtol=1e-5)

    # Inference with the same moving statistics agrees with torch's eval mode.
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor(layer.moving_variance.value))
        want = bn.eval()(torch.tensor(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)


def test_matches_torch_batchnorm1d_on_features(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((16, 7))
    layer = layers.BatchNormalization(dtype="float64")
    bn = torch.nn.BatchNorm1d(7, eps=1e-3, momentum=0.01, dtype=torch.float64)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, bn.train()(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.value, bn.running_mean.numpy(), rtol=1e-12)


# ----- weights, configs, errors -----------------------------------------------------------

def test_weights_in_keras_order_and_parameter_counts():
    layer = layers.BatchNormalization()
    layer.build_for((None, 5, 5, 16))
    assert [v.name.split("/")[-1] for v in layer.variables] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    assert all(v.shape == (16,) for v in layer.variables)
    assert layer.count_params() == 4 * 16
    assert sum(v.value.size for v in layer.trainable_variables) == 2 * 16
    assert [v.name.split("/")[-1] for v in layer.non_trainable_variables] == [
        "moving_mean", "moving_variance"]
    weights = layer.get_weights()
    np.testing.assert_array_equal(weights[0], 1)  # gamma: ones
    np.testing.assert_array_equal(weights[1], 0)  # beta: zeros
    np.testing.assert_array_equal(weights[2], 0)
    np.testing.assert_array_equal(weights[3], 1)
    for kwargs, names in [(dict(center=False), ["gamma", "moving_mean", "moving_variance"]),
                          (dict(scale=False), ["beta", "moving_mean", "moving_variance"])]:
        layer = layers.BatchNormalization(**kwargs)
        layer.build_for((None, 3))
        assert [v.name.split("/")[-1] for v in layer.variables] == names
        assert layer.count_params() == 3 * 3


def test_config_round_trip():
    layer = layers.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False,
                                      gamma_initializer="glorot_uniform",
                                      gamma_regularizer="l2")
    clone = layers.deserialize(layers.serialize(layer))
    assert type(clone) is layers.BatchNormalization
    assert clone.get_config() == layer.get_config()
    config = layers.BatchNormalization().get_config()
    assert (config["axis"], config["momentum"], config["epsilon"], config["center"],
            config["scale"]) == (-1, 0.99, 1e-3, True, True)


def test_bad_arguments_and_inputs_name_the_layer():
    with pytest.raises(ValueError, match=r"BatchNormalization 'bn'.*momentum.*\[0, 1\].*1.5"):
        layers.BatchNormalization(momentum=1.5, name="bn")
    with pytest.raises(ValueError, match=r"BatchNormalization.*epsilon.*> 0.*got 0"):
        layers.BatchNormalization(epsilon=0)
    with pytest.raises(TypeError, match=r"BatchNormalization.*axis.*int.*\[1, 2\]"):
        layers.BatchNormalization(axis=[1, 2])
    with pytest.raises(ValueError, match=r"BatchNormalization.*gamma_initializer"):
        layers.BatchNormalization(gamma_initializer="no_such_initializer")
    with pytest.raises(ValueError, match=r"BatchNormalization.*axis 3 is out of range.*rank 3"):
        layers.BatchNormalization(axis=3)(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"BatchNormalization.*rank >= 2"):
        layers.BatchNormalization()(np.zeros((4,)))
    layer = layers.BatchNormalization()
    layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"BatchNormalization.*size 3 on axis 1.*\(2, 5\)"):
        layer(np.zeros((2, 5)))


@pytest.mark.cuda
def test_cuda_matches_cpu(rng):
    cp = backend.cupy_module()
    x = rng.standard_normal((8, 4, 4, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    cpu, gpu = layers.BatchNormalization(), layers.BatchNormalization()
    y = cpu.forward(x, training=True)
    dx = cpu.backward(dy)
    gpu.build_for((None, 4, 4, 3))
    gpu.to("cuda")
    gy = gpu.forward(cp.asarray(x), training=True)
    np.testing.assert_allclose(gy.get(), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpu.backward(cp.asarray(dy)).get(), dx, rtol=1e-5, atol=1e-5)
    for a, b in zip(cpu.get_weights() + cpu.get_gradients(),
                    gpu.get_weights() + gpu.get_gradients()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpu(cp.asarray(x)).get(), cpu(x), rtol=1e-5, atol=1e-5)
