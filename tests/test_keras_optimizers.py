"""Optimizers against Keras 3's tests (keras/src/optimizers/*_test.py): a scalar (shape ())
variable steps like any other, and the docstring example of RMSprop."""
import numpy as np
import pytest

from fusednn import optimizers
from fusednn.layers import Variable

NAMES = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta"]


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
