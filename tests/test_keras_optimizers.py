"""Optimizers against Keras 3's tests (keras/src/optimizers/*_test.py): a scalar (shape ())
variable steps like any other, the docstring example of RMSprop, and the literal values
of Nadam's, Adamax's and Lion's tests, the automatic names."""
import numpy as np
import pytest

import fusednn as fd
from fusednn import optimizers
from fusednn.layers import Variable

NAMES = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "nadam", "adamax", "lion"]


@pytest.mark.parametrize("name", NAMES)
def test_a_scalar_variable_steps_like_a_one_element_vector(name):
    scalar = Variable("scalar", np.array(1.5, np.float32))
    vector = Variable("vector", np.array([1.5], np.float32))
    first, second = optimizers.get(name), optimizers.get(name)
    for grad in (0.5, -2.0, 0.25):
        scalar.grad[...] = grad
        vector.grad[...] = grad
        first.step([scalar])
        second.step([vector])
    assert scalar.value.shape == ()
    assert scalar.value == vector.value[0]


def test_rmsprop_docstring_example():
    # Keras: RMSprop(learning_rate=0.1) on var1 = 10.0 with d loss / d var1 = var1 gives
    # 9.683772 after one step (10 - 0.1 * 10 / sqrt(0.1 * 100 + 1e-7)).
    var = Variable("var1", np.array(10.0, np.float32))
    var.grad[...] = var.value
    optimizers.RMSprop(learning_rate=0.1).step([var])
    assert var.value == pytest.approx(9.683772, rel=1e-6)


def test_callable_learning_rate():
    # Keras: learning_rate may be a callable taking no arguments, called for each step.
    rates = iter([0.5, 0.25])
    opt = optimizers.SGD(learning_rate=lambda: next(rates))
    var = Variable("w", np.array([1.0], np.float32))
    var.grad[...] = 1.0
    opt.step([var])
    opt.step([var])
    np.testing.assert_allclose(var.value, [1.0 - 0.5 - 0.25])
    with pytest.raises(ValueError, match="cannot be saved"):
        opt.get_config()
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(learning_rate=lambda: -1.0).step([var])


# Keras's nadam_test.py, adamax_test.py and lion_test.py: one step of learning_rate=0.5 on
# [1, 2, 3, 4] with gradients [1, 6, 7, 2], their tolerance 1e-4.
@pytest.mark.parametrize("cls, expected", [
    (optimizers.Nadam, [0.4686, 1.4686, 2.4686, 3.4686]),
    (optimizers.Adamax, [0.5, 1.5, 2.5, 3.5]),
    (optimizers.Lion, [0.5, 1.5, 2.5, 3.5])])
def test_single_step_of_keras_tests(cls, expected):
    var = Variable("w", np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    var.grad[...] = [1.0, 6.0, 7.0, 2.0]
    cls(learning_rate=0.5).step([var])
    np.testing.assert_allclose(var.value, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cls", [optimizers.Nadam, optimizers.Adamax, optimizers.Lion])
def test_weight_decay_of_keras_tests(cls):
    # Keras applies three optimizers with learning_rate=1, weight_decay=0.004 and zero
    # gradients to var1: 2 * 0.996^3 = 1.9760959 (their decimal=6).
    var = Variable("var1", np.array(2.0, np.float32))
    for _ in range(3):
        var.grad[...] = 0.0
        cls(learning_rate=1.0, weight_decay=0.004).step([var])
    assert var.value == pytest.approx(1.9760959, abs=1e-6)


# Keras's test_correctness_with_golden: x = ones(10), one step with gradients 0.01, then
# five with 0.1, 0.2, ..., 1.0; x is compared before each of the five (rtol = atol = 5e-4).
GOLDEN = {
    "nadam": (dict(learning_rate=0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5), [
        [0.4281] * 10,
        [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718, -0.1717],
        [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085, -0.7084],
        [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23, -1.2299],
        [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455,
         -1.7454]]),
    "adamax": (dict(learning_rate=0.2, beta_1=0.85, beta_2=0.95, epsilon=1e-6), [
        [0.8] * 10,
        [0.6827, 0.6873, 0.6888, 0.6896, 0.6901, 0.6904, 0.6906, 0.6908, 0.6909, 0.691],
        [0.5333, 0.5407, 0.5431, 0.5444, 0.5451, 0.5456, 0.546, 0.5462, 0.5464, 0.5466],
        [0.368, 0.3773, 0.3804, 0.382, 0.3829, 0.3835, 0.384, 0.3843, 0.3846, 0.3848],
        [0.1933, 0.204, 0.2076, 0.2094, 0.2105, 0.2112, 0.2117, 0.2121, 0.2124, 0.2126]]),
    "lion": (dict(), [[0.999] * 10, [0.998] * 10, [0.997] * 10, [0.996] * 10, [0.995] * 10]),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_golden_values_of_keras_tests(name, dtype):
    hyper, golden = GOLDEN[name]
    opt = optimizers.get({"class_name": name, "config": hyper})
    x = Variable("x", np.ones(10, dtype))
    x.grad[...] = 0.01
    opt.step([x])
    for expected in golden:
        np.testing.assert_allclose(x.value, expected, rtol=5e-4, atol=5e-4)
        x.grad[...] = np.arange(1, 11) / 10
        opt.step([x])


def test_optimizer_auto_naming():
    # Keras: OptimizerTest.test_optimizer_auto_naming (the class name in snake case,
    # uniquified; a given name is kept, and serialisation keeps either).
    fd.utils.clear_session()
    adam_1, adam_2 = optimizers.Adam(), optimizers.Adam()
    sgd_1, sgd_2 = optimizers.SGD(), optimizers.SGD()
    adamw_1, adamw_2 = optimizers.AdamW(), optimizers.AdamW()
    assert [o.name for o in (adam_1, adam_2, sgd_1, sgd_2, adamw_1, adamw_2)] == [
        "adam", "adam_1", "sgd", "sgd_1", "adam_w", "adam_w_1"]
    custom_adam = optimizers.Adam(name="my_adam")
    assert custom_adam.name == "my_adam"
    assert optimizers.deserialize(optimizers.serialize(adam_2)).name == "adam_1"
    assert optimizers.deserialize(optimizers.serialize(custom_adam)).name == "my_adam"
    # Keras 3.15.1 (torch backend), run here: RMSprop() is named "rm_sprop".
    assert optimizers.RMSprop().name == "rm_sprop"
