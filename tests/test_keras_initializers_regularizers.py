"""Initializers and regularizers as Keras 3's classes (keras/src/initializers/
constant_initializers_test.py, random_initializers_test.py, keras/src/regularizers/
regularizers_test.py): from_config, Constant with an array, Keras's class names, get(None)."""
import numpy as np
import pytest

from fusednn import initializers, layers, regularizers


def test_constant_takes_an_array_that_broadcasts():
    # Keras: ConstantInitializersTest.test_constant_initializer_array_value.
    value = np.arange(6.0).reshape(2, 3)
    init = initializers.Constant(value)
    np.testing.assert_array_equal(init((2, 3)), value)
    np.testing.assert_array_equal(initializers.Constant([1.0, 2.0])((3, 2)),
                                  [[1.0, 2.0]] * 3)
    rebuilt = initializers.deserialize(initializers.serialize(init))
    np.testing.assert_array_equal(rebuilt((2, 3)), value)
    with pytest.raises(ValueError, match="does not broadcast"):
        init((4, 4))


@pytest.mark.parametrize("cls, config", [
    (initializers.Constant, {"value": 2.5}),
    (initializers.RandomNormal, {"mean": 1.0, "stddev": 0.5, "seed": 3}),
    (initializers.VarianceScaling, {"scale": 2.0, "mode": "fan_out",
                                    "distribution": "uniform", "seed": 1}),
    (initializers.Orthogonal, {"gain": 2.0, "seed": 7}),
    (initializers.Identity, {"gain": 0.5}),
])
def test_initializer_from_config_round_trip(cls, config):
    init = cls.from_config(config)
    assert init.get_config() == config
    np.testing.assert_array_equal(init((3, 3)), cls.from_config(init.get_config())((3, 3)))


def test_keras_class_names_of_orthogonal_and_identity():
    # Keras 3 saves "OrthogonalInitializer" / "IdentityInitializer" as class names.
    assert initializers.OrthogonalInitializer is initializers.Orthogonal
    assert initializers.IdentityInitializer is initializers.Identity
    init = initializers.deserialize({"class_name": "OrthogonalInitializer",
                                     "config": {"gain": 1.0, "seed": 2}})
    q = init((4, 4), "float64")
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-12)
    eye = initializers.get({"class_name": "IdentityInitializer", "config": {"gain": 3.0}})
    np.testing.assert_array_equal(eye((2, 3)), 3.0 * np.eye(2, 3))


def test_get_none_and_a_layer_default():
    # Keras: initializers.get(None) is None; a weight created with no initializer gets
    # glorot_uniform.
    assert initializers.get(None) is None
    dense = layers.Dense(3, kernel_initializer=None)
    dense.build((None, 4))
    limit = np.sqrt(6.0 / (4 + 3))
    assert np.all(np.abs(dense.kernel.value) <= limit) and np.any(dense.kernel.value != 0)


def test_regularizer_classes_with_from_config():
    # Keras: RegularizersTest (l1, l2, l1_l2 values and config round trips).
    w = np.array([[1.0, -2.0], [3.0, -4.0]])
    assert regularizers.L1(0.1)(w) == pytest.approx(0.1 * 10.0)
    assert regularizers.L2(0.1)(w) == pytest.approx(0.1 * 30.0)
    assert regularizers.L1L2(l1=0.1, l2=0.2)(w) == pytest.approx(0.1 * 10.0 + 0.2 * 30.0)
    for reg in (regularizers.L1(0.3), regularizers.L2(0.4), regularizers.L1L2(0.1, 0.2)):
        rebuilt = type(reg).from_config(reg.get_config())
        assert type(rebuilt) is type(reg) and rebuilt.get_config() == reg.get_config()
    assert regularizers.L1(0.3).get_config() == {"l1": 0.3}
    assert regularizers.L2(0.4).get_config() == {"l2": 0.4}
    assert regularizers.l1_l2 is regularizers.L1L2  # Keras 3's alias
    assert regularizers.get(None) is None


def test_a_scalar_weight_keeps_its_shape():
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight("scale", (), "ones")

        def call(self, x, training):
            return x * self.scale.value, None

    layer = Scale()
    layer.build((None, 2))
    assert layer.scale.value.shape == ()
