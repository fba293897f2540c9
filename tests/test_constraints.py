"""fusednn.constraints against Keras 3, in layers, after the optimizer step, saved and loaded."""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn import constraints, layers

W = np.array([[3.0, 0.5, -1.0], [4.0, 0.5, 2.0]], np.float32)

# Keras 3.15.1 (torch backend) on W, printed from keras.constraints.X(...)(W): float32,
# so they agree with ours to float32 rounding of the same formula (rtol 1e-6).
KERAS = [
    (constraints.MaxNorm(2.0), [[1.2000000476837158, 0.49999991059303284, -0.8944271802902222],
                                [1.600000023841858, 0.49999991059303284, 1.7888543605804443]]),
    (constraints.MaxNorm(1.0, axis=1), [[0.9370425939559937, 0.15617376565933228,
                                         -0.31234753131866455],
                                        [0.8888888955116272, 0.1111111119389534,
                                         0.4444444477558136]]),
    (constraints.MinMaxNorm(1.0, 2.0, rate=0.5), [[2.0999999046325684, 0.603553295135498,
                                                   -0.9472135305404663],
                                                  [2.799999952316284, 0.603553295135498,
                                                   1.8944270610809326]]),
    (constraints.NonNeg(), [[3.0, 0.5, 0.0], [4.0, 0.5, 2.0]]),
    (constraints.UnitNorm(axis=1), [[0.9370425343513489, 0.15617376565933228,
                                     -0.31234753131866455],
                                    [0.8888888955116272, 0.1111111119389534, 0.4444444477558136]]),
    (constraints.UnitNorm(axis=[0, 1]), [[0.5432144999504089, 0.09053575247526169,
                                          -0.18107150495052338],
                                         [0.7242860198020935, 0.09053575247526169,
                                          0.36214300990104675]]),
]


@pytest.mark.parametrize("constraint, expected", KERAS, ids=lambda c: repr(c))
def test_matches_keras_3(constraint, expected):
    got = constraint(W)
    assert got.dtype == np.float32 and got.shape == W.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_formulas_in_float64():
    w = np.random.default_rng(0).normal(size=(4, 5)) * 3
    norms = np.sqrt((w ** 2).sum(axis=0, keepdims=True))
    np.testing.assert_allclose(constraints.MaxNorm(1.5)(w),
                               w * np.minimum(norms, 1.5) / (1e-7 + norms), rtol=1e-14)
    assert np.all(np.linalg.norm(constraints.MaxNorm(1.5)(w), axis=0) <= 1.5 + 1e-9)
    np.testing.assert_allclose(np.linalg.norm(constraints.UnitNorm()(w), axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(constraints.WeightClipping(0.01)(w), np.clip(w, -0.01, 0.01))


def test_names_config_round_trip_and_refusals():
    for name, cls in (("max_norm", constraints.MaxNorm), ("MinMaxNorm", constraints.MinMaxNorm),
                      ("non_neg", constraints.NonNeg), ("unit_norm", constraints.UnitNorm),
                      ("weight_clipping", constraints.WeightClipping)):
        assert type(constraints.get(name)) is cls
    for c in (constraints.MaxNorm(3, axis=[0, 1]), constraints.MinMaxNorm(0.5, 2.0, 0.3, 1),
              constraints.UnitNorm(-1), constraints.WeightClipping(0.05), constraints.NonNeg()):
        restored = constraints.deserialize(constraints.serialize(c))
        assert type(restored) is type(c) and restored.get_config() == c.get_config()
    assert constraints.MaxNorm().get_config() == {"max_value": 2.0, "axis": 0}  # Keras's
    with pytest.raises(ValueError, match="max_value must be a finite number >= 0, got -1"):
        constraints.MaxNorm(-1)
    with pytest.raises(ValueError, match="max_value must be >= min_value"):
        constraints.MinMaxNorm(2.0, 1.0)
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\]"):
        constraints.MinMaxNorm(rate=2)
    with pytest.raises(ValueError, match="clip_value must be > 0"):
        constraints.WeightClipping(0)
    with pytest.raises(TypeError, match="axis must be an int or a list of ints"):
        constraints.UnitNorm(axis="rows")
    with pytest.raises(ValueError, match="unknown constraint 'maxnorm2'"):
        constraints.get("maxnorm2")
    with pytest.raises(ValueError, match="unknown constraint class 'Clip'"):
        constraints.deserialize({"class_name": "Clip", "config": {}})
    with pytest.raises(ValueError, match="Dense 'd': invalid kernel_constraint"):
        layers.Dense(2, kernel_constraint="nope", name="d")


def _trained_dense(**kwargs):
    fd.utils.set_random_seed(0)
    model = fd.Sequential([layers.Dense(3, input_shape=(4,), **kwargs)])
    model.compile(optimizer=fd.optimizers.SGD(0.5), loss="mse")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 4)).astype(np.float32) * 5
    y = rng.normal(size=(16, 3)).astype(np.float32) * 50
    return model, x, y


def test_applied_right_after_each_update():
    model, x, y = _trained_dense(kernel_constraint=constraints.MaxNorm(0.5),
                                 bias_constraint="non_neg")
    reference, _, _ = _trained_dense()  # no constraints
    for _ in range(3):
        reference.set_weights(model.get_weights())
        model.train_on_batch(x, y)
        reference.train_on_batch(x, y)  # the unconstrained update from the same weights
        kernel, bias = reference.get_weights()
        np.testing.assert_allclose(model.get_weights()[0], constraints.MaxNorm(0.5)(kernel),
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(model.get_weights()[1], np.maximum(bias, 0))
        assert np.all(np.linalg.norm(model.get_weights()[0], axis=0) <= 0.5 + 1e-6)


class ClipConstraint(constraints.Constraint):
    """The Keras WGAN tutorials' own clipping constraint, as users write it."""

    def __init__(self, clip_value):
        self.clip_value = clip_value

    def __call__(self, weights):
        return fd.ops.clip(weights, -self.clip_value, self.clip_value)

    def get_config(self):
        return {"clip_value": self.clip_value}


def test_user_subclass_and_bad_user_constraint():
    model, x, y = _trained_dense(kernel_constraint=ClipConstraint(0.01))
    model.train_on_batch(x, y)
    assert np.abs(model.get_weights()[0]).max() == pytest.approx(0.01)
    model, x, y = _trained_dense(kernel_constraint=lambda w: w[:1])
    with pytest.raises(ValueError, match=r"must return an array of the weight's shape \(4, 3\)"):
        model.train_on_batch(x, y)


@pytest.mark.parametrize("make, argument", [
    (lambda c: layers.Dense(2, kernel_constraint=c, bias_constraint=c), "kernel_constraint"),
    (lambda c: layers.Conv2D(2, 2, kernel_constraint=c, bias_constraint=c), "bias_constraint"),
    (lambda c: layers.LSTM(2, kernel_constraint=c, recurrent_constraint=c, bias_constraint=c),
     "recurrent_constraint"),
    (lambda c: layers.Embedding(5, 2, embeddings_constraint=c), "embeddings_constraint"),
    (lambda c: layers.DepthwiseConv2D(2, depthwise_constraint=c, bias_constraint=c),
     "depthwise_constraint"),
    (lambda c: layers.SeparableConv1D(3, 2, depthwise_constraint=c, pointwise_constraint=c),
     "pointwise_constraint"),
    (lambda c: layers.BatchNormalization(beta_constraint=c, gamma_constraint=c),
     "gamma_constraint"),
])
def test_every_layer_keeps_its_constraints_through_save_and_load(make, argument, tmp_path):
    layer = make(constraints.MaxNorm(1.5, axis=0))
    config = layer.get_config()
    assert config[argument] == {
        "class_name": "MaxNorm", "config": {"max_value": 1.5, "axis": 0}}
    restored = type(layer).from_config(config)
    assert restored.get_config() == config
    shape = {"Dense": (None, 3), "Conv2D": (None, 4, 4, 1), "LSTM": (None, 3, 2),
             "Embedding": (None, 3), "BatchNormalization": (None, 3),
             "DepthwiseConv2D": (None, 4, 4, 2), "SeparableConv1D": (None, 5, 2)}[
        type(layer).__name__]
    model = fd.Sequential([layer])
    model.build(shape)
    model.save(tmp_path / "m.keras")
    loaded = fd.load_model(tmp_path / "m.keras")
    constrained = [v for v in loaded.layers[0].variables if v.constraint is not None]
    assert constrained and all(isinstance(v.constraint, constraints.MaxNorm) and
                               v.constraint.max_value == 1.5 for v in constrained)


def test_saving_an_unregistered_user_constraint_is_a_clear_error(tmp_path):
    model = fd.Sequential([layers.Dense(2, input_shape=(3,), kernel_constraint=ClipConstraint(1))])
    model.build((None, 3))
    with pytest.raises(ValueError, match="ClipConstraint is not a registered constraint class.*"
                                         "fusednn.constraints.register"):
        model.save(tmp_path / "m.keras")
