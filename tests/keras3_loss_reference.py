"""Keras 3's losses (keras/losses/losses.py and loss.py's reduce_values) transcribed
into float64 NumPy, independent of fusednn: the oracle of tests/test_losses_keras3.py.
Each function returns the per-sample values, as Keras's loss functions do."""
import numpy as np

EPSILON = 1e-7   # keras.backend.epsilon()


def reduce(values, reduction):
    if reduction in (None, "none") or np.shape(values) == ():
        return values
    total = np.sum(values)
    return total if reduction == "sum" else total / np.size(values)


def _hinge_labels(y_true):
    is_binary = np.all((y_true == 0) | (y_true == 1))
    return 2.0 * y_true - 1.0 if is_binary else y_true


def hinge(y_true, y_pred):
    return np.mean(np.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    return np.mean(np.square(np.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0)), axis=-1)


def categorical_hinge(y_true, y_pred):
    pos = np.sum(y_true * y_pred, axis=-1)
    neg = np.max((1.0 - y_true) * y_pred, axis=-1)
    return np.maximum(neg - pos + 1.0, 0.0)


def kl_divergence(y_true, y_pred):
    y_true = np.clip(y_true, EPSILON, 1)
    y_pred = np.clip(y_pred, EPSILON, 1)
    return np.sum(y_true * np.log(y_true / y_pred), axis=-1)


def poisson(y_true, y_pred):
    return np.mean(y_pred - y_true * np.log(y_pred + EPSILON), axis=-1)


def log_cosh(y_true, y_pred):
    # log(cosh(x)) directly: Keras's x + softplus(-2x) - log 2 is the same function,
    # written another way; the data keep |x| small enough for cosh not to overflow.
    return np.mean(np.log(np.cosh(y_pred - y_true)), axis=-1)


def _l2_normalize(x, axis):
    inv_norm = 1.0 / np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    return x * np.minimum(inv_norm, 1.0 / EPSILON)


def cosine_similarity(y_true, y_pred, axis=-1):
    return -np.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), axis=axis)


def mean_absolute_percentage_error(y_true, y_pred):
    diff = np.abs((y_true - y_pred) / np.maximum(np.abs(y_true), EPSILON))
    return 100.0 * np.mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    first_log = np.log(np.maximum(y_pred, EPSILON) + 1.0)
    second_log = np.log(np.maximum(y_true, EPSILON) + 1.0)
    return np.mean(np.square(first_log - second_log), axis=-1)


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25,
                              gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        y_pred = 1.0 / (1.0 + np.exp(-y_pred))
    output = np.clip(y_pred, EPSILON, 1.0 - EPSILON)   # ops.binary_crossentropy's clip
    bce = -(y_true * np.log(output) + (1.0 - y_true) * np.log(1.0 - output))
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal_bce = np.power(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal_bce = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal_bce
    return np.mean(focal_bce, axis=axis)
