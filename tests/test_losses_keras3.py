"""Hinge, SquaredHinge, CategoricalHinge, KLDivergence, Poisson, LogCosh,
CosineSimilarity, MeanAbsolutePercentageError, MeanSquaredLogarithmicError and
BinaryFocalCrossentropy: values against a float64 transcription of Keras 3
(tests/keras3_loss_reference.py) under every reduction, gradients against float64
finite differences of that transcription, torch where torch defines the same loss,
names, config round trips and bad arguments."""
import json

import numpy as np
import pytest

import keras3_loss_reference as keras3
from fusednn import losses
from gradcheck import numeric_gradient

# Values: the same float64 formulas evaluated in another order, a few ulps.
VALUE = dict(rtol=1e-12, atol=1e-14)
# Central differences in float64 with eps = 1e-6 (tests/gradcheck.py): ~1e-10
# relative error where the loss is smooth; the data keep every element at least
# ~1e-3 from a kink, clip or tie, so a wrong formula shows as an O(1) error.
GRAD = dict(rtol=1e-6, atol=1e-9)


def away_from(values, kinks, gap=1e-2):
    """values moved by 2 gap wherever they are within gap of a kink."""
    values = values.copy()
    for kink in kinks:
        close = np.abs(values - kink) < gap
        values[close] += 2 * gap
    return values


def hinge_data(rng):
    t = rng.choice([-1.0, 1.0], size=(6, 4))
    y = t * away_from(rng.uniform(-1, 2, size=(6, 4)), [1.0]) * 1.0
    return t, y


def categorical_data(rng):
    t = np.eye(5)[rng.integers(0, 5, size=6)]
    return t, rng.normal(size=(6, 5))


def probability_data(rng):
    t = rng.dirichlet(np.ones(5), size=6)
    y = rng.dirichlet(np.ones(5), size=6)
    return t, np.clip(y, 1e-3, None)


def poisson_data(rng):
    return rng.poisson(2.0, size=(6, 4)).astype(np.float64), rng.uniform(0.1, 3.0, size=(6, 4))


def regression_data(rng):
    return rng.normal(size=(6, 4)), rng.normal(size=(6, 4))


def percentage_data(rng):
    t = rng.choice([-1.0, 1.0], size=(6, 4)) * rng.uniform(0.2, 2.0, size=(6, 4))
    return t, t + rng.choice([-1.0, 1.0], size=(6, 4)) * rng.uniform(0.01, 1.0, size=(6, 4))


def log_data(rng):
    return rng.uniform(0.0, 3.0, size=(6, 4)), rng.uniform(0.01, 3.0, size=(6, 4))


def binary_data(rng):
    return rng.integers(0, 2, size=(6, 4)).astype(np.float64), rng.uniform(0.05, 0.95, (6, 4))


def logit_data(rng):
    return rng.integers(0, 2, size=(6, 4)).astype(np.float64), rng.normal(0, 2, size=(6, 4))


# id -> (fusednn loss factory(reduction), Keras reference(y_true, y_pred), data(rng))
CASES = {
    "hinge": (lambda r: losses.Hinge(reduction=r), keras3.hinge, hinge_data),
    "squared_hinge": (lambda r: losses.SquaredHinge(reduction=r), keras3.squared_hinge,
                      hinge_data),
    "categorical_hinge": (lambda r: losses.CategoricalHinge(reduction=r),
                          keras3.categorical_hinge, categorical_data),
    "kl_divergence": (lambda r: losses.KLDivergence(reduction=r), keras3.kl_divergence,
                      probability_data),
    "poisson": (lambda r: losses.Poisson(reduction=r), keras3.poisson, poisson_data),
    "log_cosh": (lambda r: losses.LogCosh(reduction=r), keras3.log_cosh, regression_data),
    "cosine_similarity": (lambda r: losses.CosineSimilarity(reduction=r),
                          keras3.cosine_similarity, regression_data),
    "cosine_similarity_axis_1": (
        lambda r: losses.CosineSimilarity(axis=1, reduction=r),
        lambda t, y: keras3.cosine_similarity(t, y, axis=1),
        lambda rng: (rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2)))),
    "mape": (lambda r: losses.MeanAbsolutePercentageError(reduction=r),
             keras3.mean_absolute_percentage_error, percentage_data),
    "msle": (lambda r: losses.MeanSquaredLogarithmicError(reduction=r),
             keras3.mean_squared_logarithmic_error, log_data),
    "focal": (lambda r: losses.BinaryFocalCrossentropy(reduction=r),
              keras3.binary_focal_crossentropy, binary_data),
    "focal_balanced_smoothed_gamma_1_5": (
        lambda r: losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.4,
                                                 gamma=1.5, label_smoothing=0.1, reduction=r),
        lambda t, y: keras3.binary_focal_crossentropy(t, y, apply_class_balancing=True,
                                                      alpha=0.4, gamma=1.5,
                                                      label_smoothing=0.1),
        binary_data),
    "focal_logits": (
        lambda r: losses.BinaryFocalCrossentropy(from_logits=True, gamma=3.0, reduction=r),
        lambda t, y: keras3.binary_focal_crossentropy(t, y, gamma=3.0, from_logits=True),
        logit_data),
    "focal_logits_axis_0": (
        lambda r: losses.BinaryFocalCrossentropy(from_logits=True, axis=0, reduction=r),
        lambda t, y: keras3.binary_focal_crossentropy(t, y, from_logits=True, axis=0),
        logit_data),
}

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "none", None]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_value_matches_keras(case, reduction, rng):
    factory, reference, data = CASES[case]
    y_true, y_pred = data(rng)
    got = factory(reduction)(y_true, y_pred)
    expected = keras3.reduce(reference(y_true, y_pred), reduction)
    if reduction in ("none", None):
        assert isinstance(got, np.ndarray) and got.shape == np.shape(expected)
    else:
        assert isinstance(got, float)
    np.testing.assert_allclose(got, expected, **VALUE)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_finite_differences_of_keras(case, reduction, rng):
    factory, reference, data = CASES[case]
    y_true, y_pred = data(rng)
    value, grad = factory(reduction).value_and_grad(y_true, y_pred)
    assert grad.shape == y_pred.shape and grad.dtype == np.float64
    expected = numeric_gradient(lambda: keras3.reduce(reference(y_true, y_pred), reduction),
                                y_pred)
    np.testing.assert_allclose(grad, expected, **GRAD)
    assert value == pytest.approx(keras3.reduce(reference(y_true, y_pred), reduction), rel=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_in_float32_out(case, rng):
    factory, reference, data = CASES[case]
    y_true, y_pred = data(rng)
    value, grad = factory("sum_over_batch_size").value_and_grad(y_true.astype(np.float32),
                                                                y_pred.astype(np.float32))
    assert grad.dtype == np.float32
    _, grad64 = factory("sum_over_batch_size").value_and_grad(y_true, y_pred)
    # float32 inputs round to 6e-8 relative; the formulas amplify that by at most
    # the data's conditioning (~1e2 for MAPE's 1 / |y_true| >= 0.5 and logs near 0.01).
    np.testing.assert_allclose(value, keras3.reduce(reference(y_true, y_pred), "mean"),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, grad64, rtol=1e-4, atol=1e-5)


# ----- torch, where it defines the same loss -----------------------------------------
def test_kl_divergence_matches_torch(rng):
    torch = pytest.importorskip("torch")
    y_true, y_pred = probability_data(rng)   # all entries in (1e-7, 1]: no clip active
    value, grad = losses.KLDivergence().value_and_grad(y_true, y_pred)
    p = torch.tensor(y_pred, requires_grad=True)
    # kl_div takes log-probabilities as input; "batchmean" sums each row, then averages rows.
    expected = torch.nn.functional.kl_div(torch.log(p), torch.tensor(y_true),
                                          reduction="batchmean")
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-12)


def test_poisson_matches_torch(rng):
    torch = pytest.importorskip("torch")
    y_true, y_pred = poisson_data(rng)
    value, grad = losses.Poisson().value_and_grad(y_true, y_pred)
    p = torch.tensor(y_pred, requires_grad=True)
    # log_input=False: input - target * log(input + eps), averaged over every element,
    # Keras's per-sample mean averaged over samples (equal row lengths).
    expected = torch.nn.functional.poisson_nll_loss(p, torch.tensor(y_true), log_input=False,
                                                    full=False, eps=1e-7)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_cosine_similarity_matches_torch(rng):
    torch = pytest.importorskip("torch")
    y_true, y_pred = regression_data(rng)   # norms ~1: neither eps is active
    value, grad = losses.CosineSimilarity().value_and_grad(y_true, y_pred)
    p = torch.tensor(y_pred, requires_grad=True)
    expected = -torch.nn.functional.cosine_similarity(torch.tensor(y_true), p, dim=-1).mean()
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(grad, p.grad.numpy(), rtol=1e-10, atol=1e-14)


# ----- definitions at their edges ------------------------------------------------------
def test_hinge_maps_binary_labels_to_plus_minus_one(rng):
    y_pred = rng.normal(size=(5, 3))
    labels = rng.integers(0, 2, size=(5, 3)).astype(np.float64)
    for cls in (losses.Hinge, losses.SquaredHinge):
        a = cls().value_and_grad(labels, y_pred)
        b = cls().value_and_grad(2 * labels - 1, y_pred)
        assert a[0] == b[0]
        np.testing.assert_array_equal(a[1], b[1])


def test_cosine_similarity_of_a_zero_vector_is_zero_with_a_finite_gradient():
    y_true = np.array([[1.0, 2.0], [0.5, -1.0]])
    y_pred = np.array([[0.0, 0.0], [1.0, 1.0]])
    values = losses.CosineSimilarity(reduction="none")(y_true, y_pred)
    assert values[0] == 0.0
    _, grad = losses.CosineSimilarity().value_and_grad(y_true, y_pred)
    assert np.all(np.isfinite(grad))
    # Below the cap the normalisation is the constant 1 / 1e-7: the gradient is
    # -unit(y_true) * 1e7 / 2 samples.
    np.testing.assert_allclose(grad[0], -y_true[0] / np.linalg.norm(y_true[0]) * 1e7 / 2)


def test_focal_with_gamma_0_is_binary_crossentropy(rng):
    y_true, y_pred = logit_data(rng)
    for from_logits in (False, True):
        pred = y_pred if from_logits else 1 / (1 + np.exp(-y_pred))
        focal = losses.BinaryFocalCrossentropy(gamma=0.0, from_logits=from_logits)
        bce = losses.BinaryCrossentropy(from_logits=from_logits)
        # Different routes (sigmoid then clip and log vs the stable logits form).
        assert focal(y_true, pred) == pytest.approx(bce(y_true, pred), rel=1e-10)
        np.testing.assert_allclose(focal.value_and_grad(y_true, pred)[1],
                                   bce.value_and_grad(y_true, pred)[1], rtol=1e-8, atol=1e-15)


def test_kl_divergence_clips_like_keras():
    y_true = np.array([[0.0, 1.0, 0.0]])
    y_pred = np.array([[0.5, 0.5, 0.0]])   # a zero prediction under a zero target
    value, grad = losses.KLDivergence().value_and_grad(y_true, y_pred)
    assert value == pytest.approx(keras3.kl_divergence(y_true, y_pred)[0], rel=1e-12)
    assert grad[0, 2] == 0.0 and np.all(np.isfinite(grad))


def test_targets_follow_the_rank_rule(rng):
    y_pred = rng.normal(size=(5, 1))
    y_true = rng.choice([-1.0, 1.0], size=5)
    assert losses.Hinge()(y_true, y_pred) == losses.Hinge()(y_true[:, None], y_pred)
    with pytest.raises(ValueError, match="Hinge: y_true and y_pred must have the same shape"):
        losses.Hinge()(np.ones((5, 2)), y_pred)


# ----- names, configs, arguments ----------------------------------------------------------
@pytest.mark.parametrize("name, cls", [
    ("hinge", losses.Hinge), ("Hinge", losses.Hinge), ("squared_hinge", losses.SquaredHinge),
    ("SquaredHinge", losses.SquaredHinge), ("categorical_hinge", losses.CategoricalHinge),
    ("kl_divergence", losses.KLDivergence), ("kld", losses.KLDivergence),
    ("KLD", losses.KLDivergence), ("KLDivergence", losses.KLDivergence),
    ("poisson", losses.Poisson), ("log_cosh", losses.LogCosh), ("LogCosh", losses.LogCosh),
    ("cosine_similarity", losses.CosineSimilarity),
    ("mean_absolute_percentage_error", losses.MeanAbsolutePercentageError),
    ("mape", losses.MeanAbsolutePercentageError), ("MAPE", losses.MeanAbsolutePercentageError),
    ("mean_squared_logarithmic_error", losses.MeanSquaredLogarithmicError),
    ("msle", losses.MeanSquaredLogarithmicError), ("MSLE", losses.MeanSquaredLogarithmicError),
    ("binary_focal_crossentropy", losses.BinaryFocalCrossentropy),
    ("BinaryFocalCrossentropy", losses.BinaryFocalCrossentropy)])
def test_get_by_keras_name(name, cls):
    loss = losses.get(name)
    assert type(loss) is cls and loss.reduction == "sum_over_batch_size"


@pytest.mark.parametrize("loss", [
    losses.Hinge(reduction="sum"), losses.SquaredHinge(name="sq"), losses.CategoricalHinge(),
    losses.KLDivergence(reduction="none"), losses.Poisson(), losses.LogCosh(reduction=None),
    losses.CosineSimilarity(axis=1, reduction="mean"), losses.MeanAbsolutePercentageError(),
    losses.MeanSquaredLogarithmicError(),
    losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.3, gamma=1.0,
                                   from_logits=True, label_smoothing=0.2, axis=0,
                                   reduction="sum", name="focal")])
def test_config_round_trip(loss):
    config = json.loads(json.dumps(losses.serialize(loss)))
    restored = losses.deserialize(config)
    assert type(restored) is type(loss) and restored.get_config() == loss.get_config()


def test_keras_default_configs():
    assert losses.Hinge().get_config() == {"name": "hinge", "reduction": "sum_over_batch_size"}
    assert losses.CosineSimilarity().get_config() == {
        "name": "cosine_similarity", "reduction": "sum_over_batch_size", "axis": -1}
    assert losses.BinaryFocalCrossentropy().get_config() == {
        "name": "binary_focal_crossentropy", "reduction": "sum_over_batch_size",
        "apply_class_balancing": False, "alpha": 0.25, "gamma": 2.0, "from_logits": False,
        "label_smoothing": 0.0, "axis": -1}


@pytest.mark.parametrize("factory, error, message", [
    (lambda: losses.Hinge(reduction="avg"), ValueError,
     "Hinge: Invalid value for argument `reduction`: expected one of 'sum_over_batch_size', "
     ".*got 'avg'"),
    (lambda: losses.BinaryFocalCrossentropy(alpha=1.5), ValueError,
     r"BinaryFocalCrossentropy: alpha must be a number in \[0, 1\], got 1.5"),
    (lambda: losses.BinaryFocalCrossentropy(gamma=-1), ValueError,
     "BinaryFocalCrossentropy: gamma must be a number >= 0, got -1"),
    (lambda: losses.BinaryFocalCrossentropy(gamma=float("nan")), ValueError, "gamma"),
    (lambda: losses.BinaryFocalCrossentropy(label_smoothing=2), ValueError,
     "label_smoothing must be a number in"),
    (lambda: losses.BinaryFocalCrossentropy(axis=1.0), TypeError,
     "BinaryFocalCrossentropy: axis must be an int, got float 1.0"),
    (lambda: losses.CosineSimilarity(axis="-1"), TypeError,
     "CosineSimilarity: axis must be an int"),
    (lambda: losses.Poisson(name=""), ValueError, "name must be a non-empty string"),
    (lambda: losses.LogCosh(delta=1.0), TypeError, "delta"),
])
def test_bad_arguments(factory, error, message):
    with pytest.raises(error, match=message):
        factory()


def test_bad_calls():
    with pytest.raises(ValueError, match=r"CosineSimilarity: axis 2 is out of range for y_pred "
                                         r"of shape \(3, 4\)"):
        losses.CosineSimilarity(axis=2)(np.ones((3, 4)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="Poisson: reduction='none' gives one value per sample"):
        losses.Poisson(reduction="none").value_and_grad(np.ones((3, 4)), np.ones((3, 4)))
    with pytest.raises(TypeError, match="KLDivergence y_pred"):
        losses.KLDivergence()(np.ones(3), np.array(["a", "b", "c"]))


@pytest.mark.parametrize("loss", ["hinge", "squared_hinge", "log_cosh", "poisson",
                                  "binary_focal_crossentropy"])
def test_compiled_by_name_a_model_learns(loss, rng):
    import fusednn as fd
    from fusednn.layers import Dense
    x = rng.normal(size=(64, 3)).astype(np.float32)
    positive = (x @ np.array([1.0, -2.0, 0.5]) > 0).astype(np.float32)[:, None]
    y = {"hinge": 2 * positive - 1, "squared_hinge": 2 * positive - 1, "log_cosh": positive,
         "poisson": positive + 0.5, "binary_focal_crossentropy": positive}[loss]
    activation = {"poisson": "softplus", "binary_focal_crossentropy": "sigmoid"}.get(loss)
    fd.utils.set_random_seed(3)
    model = fd.models.Sequential([Dense(1, activation=activation, input_shape=(3,))])
    model.compile(optimizer=fd.optimizers.Adam(0.05), loss=loss)
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    first, last = history.history["loss"][0], history.history["loss"][-1]
    assert last < 0.7 * first, (first, last)


# ----- reductions of the losses that predate these --------------------------------------
def per_sample_mse(t, y):
    return np.mean((y - t) ** 2, axis=-1)


def per_sample_bce_logits(t, x):
    return np.mean(np.log1p(np.exp(x)) - x * t, axis=-1)   # |x| < 5 here: no overflow


def per_sample_cce(t, logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -(t * log_softmax).sum(axis=-1)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("factory, reference, data", [
    (lambda r: losses.MeanSquaredError(reduction=r), per_sample_mse, regression_data),
    (lambda r: losses.MeanAbsoluteError(reduction=r),
     lambda t, y: np.mean(np.abs(y - t), axis=-1), regression_data),
    (lambda r: losses.Huber(0.5, reduction=r),
     lambda t, y: np.mean(np.where(np.abs(y - t) <= 0.5, 0.5 * (y - t) ** 2,
                                   0.5 * np.abs(y - t) - 0.125), axis=-1), regression_data),
    (lambda r: losses.BinaryCrossentropy(from_logits=True, reduction=r), per_sample_bce_logits,
     logit_data),
    (lambda r: losses.CategoricalCrossentropy(from_logits=True, reduction=r), per_sample_cce,
     lambda rng: (np.eye(4)[rng.integers(0, 4, size=(3, 5))], rng.normal(size=(3, 5, 4)))),
    (lambda r: losses.SparseCategoricalCrossentropy(from_logits=True, reduction=r),
     lambda t, y: per_sample_cce(np.eye(4)[t], y),
     lambda rng: (rng.integers(0, 4, size=(3, 5)), rng.normal(size=(3, 5, 4)))),
    (lambda r: losses.CategoricalCrossentropy(reduction=r),
     lambda t, p: -(t * np.log(p / p.sum(axis=-1, keepdims=True))).sum(axis=-1),
     lambda rng: (np.eye(4)[rng.integers(0, 4, size=6)], rng.dirichlet(np.ones(4), size=6))),
], ids=["mse", "mae", "huber", "bce_logits", "cce_logits_3d", "sparse_cce_logits_3d",
        "cce_probabilities"])
def test_reductions_of_the_earlier_losses(factory, reference, data, reduction, rng):
    y_true, y_pred = data(rng)
    expected = keras3.reduce(reference(y_true, y_pred), reduction)
    np.testing.assert_allclose(factory(reduction)(y_true, y_pred), expected, **VALUE)
    if reduction in ("none", None):
        return
    value, grad = factory(reduction).value_and_grad(y_true, y_pred)
    assert value == pytest.approx(expected, rel=1e-12)
    fd_grad = numeric_gradient(lambda: keras3.reduce(reference(y_true, y_pred), reduction),
                               y_pred)
    # Huber and MAE have kinks; the normal draws keep every element ~1e-3 away from them.
    np.testing.assert_allclose(grad, fd_grad, **GRAD)


def test_fused_logits_path_follows_the_reduction(rng):
    labels = rng.integers(0, 3, size=8)
    logits = rng.normal(size=(8, 3))
    mean_loss = losses.SparseCategoricalCrossentropy()
    sum_loss = losses.SparseCategoricalCrossentropy(reduction="sum")
    mean_value, mean_grad = mean_loss.value_and_grad_from_logits(labels, logits)
    sum_value, sum_grad = sum_loss.value_and_grad_from_logits(labels, logits)
    assert sum_value == pytest.approx(8 * mean_value, rel=1e-12)
    np.testing.assert_allclose(sum_grad, 8 * mean_grad, rtol=1e-12)
    with pytest.raises(ValueError, match="reduction='none' gives one value per sample"):
        losses.SparseCategoricalCrossentropy(reduction="none").value_and_grad_from_logits(
            labels, logits)
