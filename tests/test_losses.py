"""Losses vs independent NumPy formulas, finite differences (float64) and PyTorch (CPU oracle)."""
import json

import numpy as np
import pytest

from fusednn import losses
from gradcheck import numeric_gradient

# float64 tolerances: the formulas differ only in summation order (~1e-15 relative).
TIGHT = dict(rtol=1e-10, atol=1e-12)
# Central differences with h = 1e-6 in float64: truncation O(h^2 f''') plus rounding
# O(eps * |f| / h) ~ 1e-10, so agreement to 1e-6 is a strict check.
FD = dict(rtol=1e-6, atol=1e-8)


def torch_value_and_grad(fn, y_pred):
    torch = pytest.importorskip("torch")
    pred = torch.tensor(y_pred, dtype=torch.float64, requires_grad=True)
    value = fn(pred)
    value.backward()
    return value.item(), pred.grad.numpy()


def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ----- regression losses ---------------------------------------------------------
def _regression_cases():
    def huber_ref(t, p, delta):
        e = p - t
        quad = np.abs(e) <= delta
        value = np.where(quad, 0.5 * e ** 2, delta * (np.abs(e) - 0.5 * delta)).mean()
        grad = np.where(quad, e, delta * np.sign(e)) / e.size
        return value, grad

    return [
        ("mse", losses.MeanSquaredError(),
         lambda t, p: (((p - t) ** 2).mean(), 2 * (p - t) / p.size),
         lambda torch, p, t: torch.nn.MSELoss()(p, t)),
        ("mae", losses.MeanAbsoluteError(),
         lambda t, p: (np.abs(p - t).mean(), np.sign(p - t) / p.size),
         lambda torch, p, t: torch.nn.L1Loss()(p, t)),
        ("huber", losses.Huber(),
         lambda t, p: huber_ref(t, p, 1.0),
         lambda torch, p, t: torch.nn.HuberLoss(delta=1.0)(p, t)),
        ("huber_0.3", losses.Huber(delta=0.3),
         lambda t, p: huber_ref(t, p, 0.3),
         lambda torch, p, t: torch.nn.HuberLoss(delta=0.3)(p, t)),
    ]


@pytest.mark.parametrize("case", _regression_cases(), ids=lambda c: c[0])
@pytest.mark.parametrize("shape", [(7, 3), (5,), (2, 3, 4)])
def test_regression_loss_matches_numpy_fd_and_torch(case, shape, rng):
    _, loss, reference, torch_fn = case
    y_true = rng.normal(size=shape)
    y_pred = y_true + 1.5 * rng.normal(size=shape)   # errors on both sides of Huber's delta
    value, grad = loss.value_and_grad(y_true, y_pred)
    ref_value, ref_grad = reference(y_true, y_pred)
    np.testing.assert_allclose(value, ref_value, **TIGHT)
    np.testing.assert_allclose(grad, ref_grad, **TIGHT)
    assert loss(y_true, y_pred) == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(y_true, y_pred), y_pred), **FD)
    torch = pytest.importorskip("torch")
    t_value, t_grad = torch_value_and_grad(lambda p: torch_fn(torch, p, torch.tensor(y_true)), y_pred)
    np.testing.assert_allclose(value, t_value, **TIGHT)
    np.testing.assert_allclose(grad, t_grad, **TIGHT)


def test_float32_stays_float32_and_rank_rule_reshapes_targets(rng):
    y_pred = rng.normal(size=(6, 1)).astype(np.float32)
    y_true = rng.normal(size=6)                         # (N,) against (N, 1): Keras expands it
    value, grad = losses.MeanSquaredError().value_and_grad(y_true, y_pred)
    assert grad.dtype == np.float32 and grad.shape == (6, 1)
    # float32 arithmetic: ~1e-7 relative.
    np.testing.assert_allclose(value, ((y_pred[:, 0] - y_true.astype(np.float32)) ** 2).mean(),
                               rtol=1e-6)
    # (N, 1) targets against (N,) predictions: Keras squeezes the targets.
    _, grad = losses.MeanAbsoluteError().value_and_grad(y_pred, y_pred[:, 0] + 1)
    assert grad.shape == (6,)
    np.testing.assert_array_equal(grad, np.full(6, 1 / 6, np.float32))


def test_prediction_dtype_rule(rng):
    y = rng.normal(size=(4, 2))
    assert losses.MeanSquaredError().value_and_grad(y, y)[1].dtype == np.float64
    assert losses.MeanSquaredError().value_and_grad(y, y.astype(np.float32))[1].dtype == np.float32
    ints = np.arange(8).reshape(4, 2)
    assert losses.MeanSquaredError().value_and_grad(y, ints)[1].dtype == np.float32
    assert losses.MeanSquaredError()([[1.0, 2.0]], [[1.0, 4.0]]) == pytest.approx(2.0)


@pytest.mark.parametrize("loss", [losses.MeanSquaredError(), losses.MeanAbsoluteError(),
                                  losses.Huber(), losses.BinaryCrossentropy(),
                                  losses.CategoricalCrossentropy()])
def test_batch_mismatch_names_loss_and_shapes(loss):
    with pytest.raises(ValueError, match=rf"{type(loss).__name__}.*\(3, 2\).*\(4, 2\)"):
        loss(np.zeros((3, 2)), np.full((4, 2), 0.5))


def test_empty_or_scalar_prediction_raises():
    with pytest.raises(ValueError, match="MeanSquaredError.*non-empty"):
        losses.MeanSquaredError()(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="MeanSquaredError.*non-empty"):
        losses.MeanSquaredError()(1.0, 2.0)
    with pytest.raises(TypeError, match="MeanSquaredError y_pred"):
        losses.MeanSquaredError()(["a"], ["b"])


# ----- binary cross-entropy ------------------------------------------------------
def bce_prob_ref(t, p):
    c = np.clip(p, 1e-7, 1 - 1e-7)
    value = -(t * np.log(c) + (1 - t) * np.log(1 - c)).mean()
    inside = (p >= 1e-7) & (p <= 1 - 1e-7)
    grad = np.where(inside, (c - t) / (c * (1 - c)), 0.0) / p.size
    return value, grad


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_binary_crossentropy_probabilities(label_smoothing, rng):
    torch = pytest.importorskip("torch")
    y_true = np.concatenate([rng.integers(0, 2, size=(6, 2)), rng.random((6, 1))], axis=1)
    y_pred = rng.uniform(0.02, 0.98, size=(6, 3))
    loss = losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    value, grad = loss.value_and_grad(y_true, y_pred)
    smoothed = y_true * (1 - label_smoothing) + 0.5 * label_smoothing
    ref_value, ref_grad = bce_prob_ref(smoothed, y_pred)
    np.testing.assert_allclose(value, ref_value, **TIGHT)
    np.testing.assert_allclose(grad, ref_grad, **TIGHT)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(y_true, y_pred), y_pred), **FD)
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.BCELoss()(p, torch.tensor(smoothed)), y_pred)
    np.testing.assert_allclose(value, t_value, **TIGHT)
    np.testing.assert_allclose(grad, t_grad, **TIGHT)


def test_binary_crossentropy_clips_probabilities_like_keras():
    y_true = np.array([[1.0, 0.0, 1.0, 0.0]])
    y_pred = np.array([[0.0, 1.0, 1.0, 0.5]])   # two confidently wrong, one exactly right
    value, grad = losses.BinaryCrossentropy().value_and_grad(y_true, y_pred)
    upper = 1 - 1e-7   # the clip's upper end; 1 - upper is 1e-7 up to float64 rounding
    expected = (-np.log(1e-7) - np.log(1 - upper) - np.log(upper) - np.log(0.5)) / 4
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    # The clip is flat outside [1e-7, 1 - 1e-7]: zero gradient there, as in Keras.
    np.testing.assert_array_equal(grad[0, :3], 0.0)
    np.testing.assert_allclose(grad[0, 3], (0.5 - 0.0) / 0.25 / 4, rtol=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_binary_crossentropy_from_logits(label_smoothing, rng):
    torch = pytest.importorskip("torch")
    y_true = rng.integers(0, 2, size=(5, 4)).astype(np.float64)
    logits = 3 * rng.normal(size=(5, 4))
    loss = losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    value, grad = loss.value_and_grad(y_true, logits)
    smoothed = y_true * (1 - label_smoothing) + 0.5 * label_smoothing
    sig = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(
        value, -(smoothed * np.log(sig) + (1 - smoothed) * np.log(1 - sig)).mean(), rtol=1e-12)
    np.testing.assert_allclose(grad, (sig - smoothed) / logits.size, **TIGHT)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(y_true, logits), logits), **FD)
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.BCEWithLogitsLoss()(p, torch.tensor(smoothed)), logits)
    np.testing.assert_allclose(value, t_value, **TIGHT)
    np.testing.assert_allclose(grad, t_grad, **TIGHT)


def test_binary_crossentropy_from_logits_is_stable_for_huge_logits():
    torch = pytest.importorskip("torch")
    logits = np.array([[-1000.0, -40.0, 40.0, 1000.0]])
    y_true = np.array([[1.0, 0.0, 1.0, 0.0]])
    value, grad = losses.BinaryCrossentropy(from_logits=True).value_and_grad(y_true, logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(value, (1000 + 0 + 0 + 1000) / 4, rtol=1e-12)
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.BCEWithLogitsLoss()(p, torch.tensor(y_true)), logits)
    np.testing.assert_allclose(value, t_value, rtol=1e-12)
    np.testing.assert_allclose(grad, t_grad, rtol=1e-12, atol=1e-30)


# ----- categorical cross-entropy --------------------------------------------------
def _soft_targets(rng, shape):
    return softmax(2 * rng.normal(size=shape))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.15])
@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4)])
def test_categorical_crossentropy_probabilities(label_smoothing, shape, rng):
    torch = pytest.importorskip("torch")
    y_true = _soft_targets(rng, shape)
    y_pred = rng.uniform(0.1, 2.0, size=shape)   # rows not normalised: Keras normalises them
    loss = losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    value, grad = loss.value_and_grad(y_true, y_pred)
    smoothed = y_true * (1 - label_smoothing) + label_smoothing / shape[-1]
    q = y_pred / y_pred.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(value, -(smoothed * np.log(q)).sum(axis=-1).mean(), **TIGHT)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(y_true, y_pred), y_pred), **FD)
    # log_softmax(log p) = log(p / sum p): torch's cross_entropy on log-probabilities.
    classes = shape[-1]
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.functional.cross_entropy(
            torch.log(p).reshape(-1, classes), torch.tensor(y_true).reshape(-1, classes),
            label_smoothing=label_smoothing), y_pred)
    np.testing.assert_allclose(value, t_value, **TIGHT)
    np.testing.assert_allclose(grad, t_grad, **TIGHT)


def test_categorical_crossentropy_clips_tiny_probabilities():
    y_true = np.array([[0.0, 1.0, 0.0]])
    y_pred = np.array([[0.5, 0.0, 0.5]])
    value, grad = losses.CategoricalCrossentropy().value_and_grad(y_true, y_pred)
    np.testing.assert_allclose(value, -np.log(1e-7), rtol=1e-12)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_categorical_crossentropy_from_logits(label_smoothing, dtype, rng):
    torch = pytest.importorskip("torch")
    y_true = _soft_targets(rng, (7, 4))
    logits = 3 * rng.normal(size=(7, 4))
    loss = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    value, grad = loss.value_and_grad(y_true, logits.astype(dtype))
    assert grad.dtype == dtype
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.functional.cross_entropy(p, torch.tensor(y_true),
                                                    label_smoothing=label_smoothing), logits)
    # float32 logits: the kernel rounds to ~1e-7 relative per element.
    tol = TIGHT if dtype == np.float64 else dict(rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(value, t_value, **tol)
    np.testing.assert_allclose(grad, t_grad, **tol)
    if dtype == np.float64:
        numeric = numeric_gradient(lambda: loss(y_true, logits), logits)
        np.testing.assert_allclose(grad, numeric, **FD)


def test_categorical_crossentropy_rank3_logits_average_over_all_rows(rng):
    torch = pytest.importorskip("torch")
    y_true = _soft_targets(rng, (2, 3, 5))
    logits = rng.normal(size=(2, 3, 5))
    value, grad = losses.CategoricalCrossentropy(from_logits=True).value_and_grad(y_true, logits)
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.functional.cross_entropy(p.reshape(6, 5),
                                                    torch.tensor(y_true).reshape(6, 5)), logits)
    np.testing.assert_allclose(value, t_value, **TIGHT)
    np.testing.assert_allclose(grad, t_grad, **TIGHT)


def test_categorical_crossentropy_rejects_label_vectors():
    with pytest.raises(ValueError, match=r"CategoricalCrossentropy.*\(4,\).*\(4, 3\).*Sparse"):
        losses.CategoricalCrossentropy()(np.array([0, 1, 2, 0]), np.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"CategoricalCrossentropy.*\(N, C\)"):
        losses.CategoricalCrossentropy()(np.array([0.0, 1.0]), np.array([0.5, 0.5]))


# ----- sparse categorical cross-entropy -------------------------------------------
@pytest.mark.parametrize("label_form", ["int", "int_column", "float", "float_column", "list"])
def test_sparse_crossentropy_from_logits_matches_torch(label_form, rng):
    torch = pytest.importorskip("torch")
    labels = rng.integers(0, 5, size=8)
    logits = 2 * rng.normal(size=(8, 5))
    y_true = {"int": labels, "int_column": labels[:, None], "float": labels.astype(np.float32),
              "float_column": labels[:, None].astype(np.float64),
              "list": labels.tolist()}[label_form]
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value, grad = loss.value_and_grad(y_true, logits)
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.functional.cross_entropy(p, torch.tensor(labels)), logits)
    np.testing.assert_allclose(value, t_value, **TIGHT)
    np.testing.assert_allclose(grad, t_grad, **TIGHT)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(labels, logits), logits), **FD)


def test_sparse_crossentropy_probabilities_matches_torch(rng):
    torch = pytest.importorskip("torch")
    labels = rng.integers(0, 4, size=6)
    y_pred = rng.uniform(0.05, 1.0, size=(6, 4))
    loss = losses.SparseCategoricalCrossentropy()
    value, grad = loss.value_and_grad(labels, y_pred)
    t_value, t_grad = torch_value_and_grad(
        lambda p: torch.nn.functional.nll_loss(torch.log(p / p.sum(-1, keepdim=True)),
                                               torch.tensor(labels)), y_pred)
    np.testing.assert_allclose(value, t_value, **TIGHT)
    np.testing.assert_allclose(grad, t_grad, **TIGHT)
    np.testing.assert_allclose(grad, numeric_gradient(lambda: loss(labels, y_pred), y_pred), **FD)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_crossentropy_bad_labels(from_logits):
    loss = losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    probs = np.full((3, 4), 0.25)
    with pytest.raises(IndexError, match=r"SparseCategoricalCrossentropy.*class index 4.*4 classes"):
        loss(np.array([0, 4, 1]), probs)
    with pytest.raises(IndexError, match=r"SparseCategoricalCrossentropy.*class index -1"):
        loss(np.array([0, -1, 1]), probs)
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy.*non-integral.*1\.5"):
        loss(np.array([0.0, 1.5, 1.0]), probs)
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy.*non-integral"):
        loss(np.array([0.0, np.nan, 1.0]), probs)
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy.*\(3,\).*got y_true of shape \(2,\)"):
        loss(np.array([0, 1]), probs)
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy.*\(3, 4\)"):
        loss(np.eye(4)[[0, 1, 2]], probs)   # one-hot rows belong to CategoricalCrossentropy
    with pytest.raises(TypeError, match=r"SparseCategoricalCrossentropy.*integer class indices"):
        loss(np.array(["a", "b", "c"]), probs)


# ----- softmax fusion path ----------------------------------------------------------
def _softmax_jacobian_vjp(probs, g):
    """d/dlogits of f(softmax(logits)) given g = df/dprobs, per row."""
    return probs * (g - (g * probs).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("sparse", [False, True])
def test_value_and_grad_from_logits_is_the_chain_rule_through_softmax(sparse, rng):
    logits = rng.normal(size=(6, 4))
    labels = rng.integers(0, 4, size=6)
    if sparse:
        loss, y_true = losses.SparseCategoricalCrossentropy(), labels
        fused = losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss, y_true = losses.CategoricalCrossentropy(label_smoothing=0.1), _soft_targets(rng, (6, 4))
        fused = losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
    value, dlogits = loss.value_and_grad_from_logits(y_true, logits)
    probs = softmax(logits)   # all far from the clip, so the probability path is exact
    prob_value, dprobs = loss.value_and_grad(y_true, probs)
    np.testing.assert_allclose(value, prob_value, **TIGHT)
    np.testing.assert_allclose(dlogits, _softmax_jacobian_vjp(probs, dprobs), **TIGHT)
    fused_value, fused_grad = fused.value_and_grad(y_true, logits)
    np.testing.assert_allclose(value, fused_value, **TIGHT)
    np.testing.assert_allclose(dlogits, fused_grad, **TIGHT)


def test_value_and_grad_from_logits_exists_only_for_probability_losses():
    assert hasattr(losses.CategoricalCrossentropy(), "value_and_grad_from_logits")
    assert hasattr(losses.SparseCategoricalCrossentropy(), "value_and_grad_from_logits")
    assert not hasattr(losses.CategoricalCrossentropy(from_logits=True), "value_and_grad_from_logits")
    assert not hasattr(losses.SparseCategoricalCrossentropy(from_logits=True),
                       "value_and_grad_from_logits")
    assert not hasattr(losses.MeanSquaredError(), "value_and_grad_from_logits")


# ----- names, configuration, validation ---------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("mse", losses.MeanSquaredError), ("MSE", losses.MeanSquaredError),
    ("mean_squared_error", losses.MeanSquaredError), ("MeanSquaredError", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
    ("MeanAbsoluteError", losses.MeanAbsoluteError), ("huber", losses.Huber), ("Huber", losses.Huber),
    ("binary_crossentropy", losses.BinaryCrossentropy), ("bce", losses.BinaryCrossentropy),
    ("BinaryCrossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("CategoricalCrossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
])
def test_get_by_keras_name(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls
    assert losses.get(loss) is loss


def test_keras_default_names():
    assert [c().name for c in (losses.MeanSquaredError, losses.MeanAbsoluteError, losses.Huber,
                               losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                               losses.SparseCategoricalCrossentropy)] == [
        "mean_squared_error", "mean_absolute_error", "huber_loss", "binary_crossentropy",
        "categorical_crossentropy", "sparse_categorical_crossentropy"]


@pytest.mark.parametrize("loss", [
    losses.MeanSquaredError(name="my_mse"), losses.MeanAbsoluteError(), losses.Huber(delta=0.7),
    losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
    losses.CategoricalCrossentropy(label_smoothing=0.2),
    losses.SparseCategoricalCrossentropy(from_logits=True)])
def test_serialize_round_trip(loss):
    config = json.loads(json.dumps(losses.serialize(loss)))
    restored = losses.deserialize(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert losses.get(config).get_config() == loss.get_config()


def test_get_and_deserialize_errors():
    with pytest.raises(ValueError, match="unknown loss 'msee'"):
        losses.get("msee")
    with pytest.raises(TypeError, match="loss must be a name"):
        losses.get(0.5)  # (a function is a LossFunctionWrapper: tests/test_custom_losses.py)
    with pytest.raises(ValueError, match="unknown loss class 'Os'"):
        losses.deserialize({"class_name": "Os", "config": {}})
    with pytest.raises(TypeError, match="serialize expects"):
        losses.serialize("mse")
    assert losses.get(None) is None


def test_hyperparameter_validation():
    with pytest.raises(ValueError, match="Huber: delta must be a finite number > 0, got 0"):
        losses.Huber(delta=0)
    with pytest.raises(ValueError, match=r"BinaryCrossentropy: label_smoothing must be .*\[0, 1\].*1.5"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="CategoricalCrossentropy: label_smoothing"):
        losses.CategoricalCrossentropy(label_smoothing=-0.1)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        losses.MeanSquaredError(name="")
