"""Activation functions: forward against independent NumPy formulas and PyTorch,
backward against central finite differences in float64, numerical stability at
extreme inputs, the erf behind exact GELU, and lookup / serialisation by name."""
import math

import numpy as np
import pytest

from fusednn import activations
from gradcheck import numeric_gradient

_erf_reference = np.vectorize(math.erf)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax_loop(x):
    # Row by row with the textbook formula (inputs are small, so no shift is needed).
    out = np.empty_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        e = np.exp(x[idx])
        out[idx] = e / e.sum()
    return out


# name -> independent formula (valid on the moderate inputs of these tests).
REFERENCES = {
    "linear": lambda x: x,
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "relu6": lambda x: np.minimum(np.where(x > 0, x, 0.0), 6.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),            # Keras 3 default slope 0.2
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1.0),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1.0)),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf_reference(x / math.sqrt(2.0))),
    "sigmoid": _sigmoid,
    "tanh": lambda x: (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x)),
    "hard_sigmoid": lambda x: np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0,
    "hard_silu": lambda x: x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0,
    "silu": lambda x: x * _sigmoid(x),
    "softplus": lambda x: np.log(1.0 + np.exp(x)),
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "mish": lambda x: x * np.tanh(np.log(1.0 + np.exp(x))),
    "exponential": np.exp,
    "softmax": _softmax_loop,
    "log_softmax": lambda x: np.log(_softmax_loop(x)),
}

# Points where the derivative jumps; finite differences must stay away from them.
KINKS = {"relu": [0.0], "relu6": [0.0, 6.0], "leaky_relu": [0.0],
         "hard_sigmoid": [-3.0, 3.0], "hard_silu": [-3.0, 3.0]}


def _inputs(name, shape=(4, 7), seed=0):
    x = np.random.default_rng(seed).normal(0.0, 3.0, shape)
    for kink in KINKS.get(name, []):
        near = np.abs(x - kink) < 1e-2
        x[near] = kink + np.where(x[near] >= kink, 0.05, -0.05)
    if name == "relu6":
        x[0, :3] = [6.5, 7.0, 5.5]  # make sure the upper clip is exercised
    return x


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_forward_matches_independent_formula(name):
    x = _inputs(name)
    y = activations.get(name).forward(x)
    assert y.shape == x.shape and y.dtype == np.float64
    # Same math in float64 in a different form: agreement to rounding.
    np.testing.assert_allclose(y, REFERENCES[name](x), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_backward_matches_finite_differences(name):
    act = activations.get(name)
    x = _inputs(name, seed=1)
    dy = np.random.default_rng(2).normal(size=x.shape)
    y = act.forward(x)
    dx = act.backward(x, y, dy)
    assert dx.shape == x.shape
    numeric = numeric_gradient(lambda: np.sum(dy * act.forward(x)), x)
    # Central differences with eps=1e-6 in float64: truncation ~eps^2 * f''' and
    # rounding ~1e-16 * |f| / eps, so ~1e-8 absolute on these O(10) values.
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_float32_keeps_dtype_and_agrees_with_float64(name):
    act = activations.get(name)
    x = _inputs(name)
    x32 = x.astype(np.float32)
    y32 = act.forward(x32)
    dx32 = act.backward(x32, y32, np.ones_like(x32))
    assert y32.dtype == np.float32 and dx32.dtype == np.float32
    y64 = act.forward(x32.astype(np.float64))
    dx64 = act.backward(x32.astype(np.float64), y64, np.ones_like(y64))
    # float32 rounding through a handful of operations, on values up to ~e^9 (exponential).
    np.testing.assert_allclose(y32, y64, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(dx32, dx64, rtol=2e-6, atol=2e-6)


def _torch_functions(torch):
    F = torch.nn.functional
    return {
        "linear": lambda t: t, "relu": F.relu, "relu6": F.relu6,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.2), "elu": F.elu, "selu": F.selu,
        "gelu": F.gelu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
        "hard_sigmoid": F.hardsigmoid, "hard_silu": F.hardswish, "silu": F.silu,
        "softplus": lambda t: F.softplus(t, threshold=50.0), "softsign": F.softsign,
        "mish": F.mish, "exponential": torch.exp, "softmax": lambda t: F.softmax(t, dim=-1),
        "log_softmax": lambda t: F.log_softmax(t, dim=-1),
    }


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_forward_and_backward_match_torch(name):
    torch = pytest.importorskip("torch")
    act = activations.get(name)
    x = _inputs(name, seed=3)
    dy = np.random.default_rng(4).normal(size=x.shape)
    t = torch.tensor(x, requires_grad=True)
    ty = _torch_functions(torch)[name](t)
    ty.backward(torch.tensor(dy))
    y = act.forward(x)
    # Both float64; PyTorch evaluates the same functions with its own formulas, except
    # that its hardsigmoid backward multiplies by 1/6 rounded to float32 (3e-8 relative).
    backward_rtol = 1e-7 if name == "hard_sigmoid" else 1e-10
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(act.backward(x, y, dy), t.grad.numpy(), rtol=backward_rtol, atol=1e-12)


def test_approximate_gelu_matches_torch_tanh_form():
    torch = pytest.importorskip("torch")
    act = activations.GELU(approximate=True)
    x = _inputs("gelu", seed=5)
    dy = np.ones_like(x)
    t = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.gelu(t, approximate="tanh")
    ty.backward(torch.tensor(dy))
    y = act.forward(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(act.backward(x, y, dy), t.grad.numpy(), rtol=1e-10, atol=1e-12)
    numeric = numeric_gradient(lambda: np.sum(dy * act.forward(x)), x)
    np.testing.assert_allclose(act.backward(x, y, dy), numeric, rtol=1e-6, atol=1e-7)
    # The approximation differs from exact GELU, but by less than 1e-3.
    assert 0 < np.abs(y - activations.gelu(x)).max() < 1e-3


def test_erf_and_erfc_accuracy():
    z = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 2.5, -2.5, 2.4999999, 1e-300]])
    reference = _erf_reference(z)
    assert np.abs(activations.erf(z) - reference).max() <= 2e-15
    positive = z[z > 0]
    erfc_ref = np.vectorize(math.erfc)(positive)
    # erfc is computed directly (no 1 - erf cancellation): relative accuracy even at 1e-22.
    assert np.max(np.abs(activations.erfc(positive) - erfc_ref) / erfc_ref) <= 1e-11
    z32 = z.astype(np.float32)
    out32 = activations.erf(z32)
    assert out32.dtype == np.float32
    # float32 has ~6e-8 relative spacing; the series adds a few roundings.
    assert np.abs(out32 - _erf_reference(z32.astype(np.float64))).max() <= 1e-6
    assert activations.erf(np.array(0.5)).shape == ()
    assert np.all(np.abs(activations.erf(np.array([1e9, -1e9]))) == 1.0)


def test_extreme_inputs_stay_finite():
    x = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        np.testing.assert_allclose(activations.sigmoid(x), [[0.0, _sigmoid(-50.0), 0.5, 1.0, 1.0]],
                                   rtol=1e-12, atol=0)
        np.testing.assert_allclose(activations.softplus(x), [[0.0, np.exp(-50.0), math.log(2), 50.0, 1000.0]],
                                   rtol=1e-12, atol=0)
        s = activations.softmax(x)
        np.testing.assert_allclose(s, [[0, 0, 0, 0, 1.0]], atol=1e-300)
        assert np.isfinite(activations.log_softmax(x)).all()
        assert activations.log_softmax(x)[0, 0] == pytest.approx(-2000.0)
        for name in ("elu", "selu", "gelu", "silu", "mish"):
            assert np.isfinite(activations.get(name)(x)).all(), name
        # Exact GELU far in the left tail keeps relative accuracy: x Phi(x) with Phi(-10) ~ 7.6e-24.
        assert activations.gelu(np.array([-10.0]))[0] == pytest.approx(-10.0 * 0.5 * math.erfc(10 / math.sqrt(2)),
                                                                      rel=1e-10)


def test_softmax_rows_sum_to_one_on_other_axes():
    x = np.random.default_rng(6).normal(size=(3, 4, 5))
    for axis in (0, 1, -1):
        y = activations.Softmax(axis=axis)(x)
        np.testing.assert_allclose(y.sum(axis=axis), 1.0, rtol=1e-12)
        dy = np.random.default_rng(7).normal(size=x.shape)
        forward = activations.Softmax(axis=axis).forward
        numeric = numeric_gradient(lambda: np.sum(dy * forward(x)), x)
        np.testing.assert_allclose(activations.Softmax(axis=axis).backward(x, y, dy), numeric,
                                   rtol=1e-6, atol=1e-8)


def test_parameterised_relu_follows_keras_piecewise_definition():
    act = activations.ReLU(negative_slope=0.1, max_value=4.0, threshold=1.0)
    x = np.array([-2.0, 0.5, 1.5, 3.0, 5.0])
    # Keras docs: max_value if x >= max_value; x if threshold <= x < max_value;
    # negative_slope * (x - threshold) otherwise.
    np.testing.assert_allclose(act(x), [0.1 * -3.0, 0.1 * -0.5, 1.5, 3.0, 4.0])
    dy = np.ones_like(x)
    np.testing.assert_allclose(act.backward(x, act(x), dy), [0.1, 0.1, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(activations.LeakyReLU(0.3)(np.array([-1.0, 2.0])), [-0.3, 2.0])
    np.testing.assert_allclose(activations.ELU(0.5)(np.array([-1.0])), [0.5 * (math.exp(-1) - 1)])
    with pytest.raises(ValueError, match="max_value"):
        activations.ReLU(max_value=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        activations.ReLU(threshold=-1.0)
    with pytest.raises(ValueError, match="negative_slope"):
        activations.LeakyReLU(-0.1)


def test_get_names_aliases_and_errors():
    assert activations.get("swish") is activations.get("silu") and activations.get("silu").name == "silu"
    assert activations.get("hard_swish").name == "hard_silu"
    assert activations.get(None).name == "linear"
    assert activations.get("ReLU") is activations.relu
    assert activations.get(activations.tanh) is activations.tanh
    with pytest.raises(ValueError, match=r"unknown activation 'relux'.*gelu.*softmax"):
        activations.get("relux")
    with pytest.raises(TypeError, match="no backward"):
        activations.get(lambda x: x)
    with pytest.raises(TypeError):
        activations.get(3)


def test_serialize_round_trips():
    assert activations.serialize("relu") == "relu"
    assert activations.serialize(activations.swish) == "silu"
    for act in (activations.LeakyReLU(0.3), activations.GELU(approximate=True),
                activations.Softmax(axis=1), activations.ReLU(max_value=2.0, threshold=0.5)):
        config = activations.serialize(act)
        assert isinstance(config, dict)
        back = activations.deserialize(config)
        assert type(back) is type(act) and back.get_config() == act.get_config()
        assert activations.get(config).get_config() == act.get_config()
    with pytest.raises(ValueError, match="unknown activation class 'nope'"):
        activations.deserialize({"class_name": "nope", "config": {}})


@pytest.mark.cuda
@pytest.mark.parametrize("name", ["relu", "gelu", "sigmoid", "softmax", "elu", "softplus"])
def test_cupy_matches_numpy(name):
    import cupy
    act = activations.get(name)
    x = _inputs(name).astype(np.float32)
    y = act.forward(cupy.asarray(x))
    assert isinstance(y, cupy.ndarray)
    np.testing.assert_allclose(y.get(), act.forward(x), rtol=1e-5, atol=1e-6)
    dx = act.backward(cupy.asarray(x), y, cupy.ones_like(y))
    np.testing.assert_allclose(dx.get(), act.backward(x, act.forward(x), np.ones_like(x)),
                               rtol=1e-5, atol=1e-6)
