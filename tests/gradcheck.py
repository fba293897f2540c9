"""The finite-difference gradient checker every test file uses (one copy, float64).

Central differences (f(a + eps) - f(a - eps)) / (2 eps) in float64 with eps = 1e-6 err by
about eps^2 * |f'''| / 6 ~ 1e-12 (truncation) plus 1e-16 * |f| / eps ~ 1e-10 * |f|
(rounding), so an analytic gradient that agrees to rtol=1e-6 has the right formula; a
wrong one is off by O(1). float32 arrays would round each perturbation away (its spacing
near 1 is 1.2e-7), so the checker refuses them.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6


def numeric_gradient(f, array, eps=EPS):
    """Central differences of the scalar f() w.r.t. every entry of `array` (float64),
    perturbed in place and restored; f reads `array` (directly or through a layer's
    weight it is the value of)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float64:
        raise TypeError(f"numeric_gradient needs a float64 NumPy array, got "
                        f"{getattr(array, 'dtype', type(array).__name__)}")
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + eps
        plus = f()
        array[index] = original - eps
        minus = f()
        array[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def numeric_directional_derivative(f, array, direction, eps=EPS):
    """Central difference of the scalar f() along `direction` (array's shape) at `array`
    (float64, perturbed in place and restored): compare with sum(gradient * direction).
    One evaluation pair checks every entry of a large gradient at once."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float64:
        raise TypeError(f"numeric_directional_derivative needs a float64 NumPy array, got "
                        f"{getattr(array, 'dtype', type(array).__name__)}")
    original = array.copy()
    array[...] = original + eps * direction
    plus = f()
    array[...] = original - eps * direction
    minus = f()
    array[...] = original
    return (plus - minus) / (2 * eps)


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_layer_gradients(layer, x, seed=0, training=False, rtol=1e-6, atol=1e-7, **call):
    """A float64 layer's backward (gradients w.r.t. x, initial states and every weight)
    against finite differences of sum_i <g_i, output_i> for random g_i.

    `call` holds extra forward arguments (mask=, initial_state=); `training` is the mode
    of the forwards the differences are taken over.
    """
    rng = np.random.default_rng(seed)
    outputs = as_list(layer.forward(x, training=True, **call))
    grads = [rng.normal(size=o.shape) for o in outputs]
    layer.zero_grad()
    result = as_list(layer.backward(grads if len(grads) > 1 else grads[0]))
    states = as_list(call.get("initial_state") or [])
    assert len(result) == 1 + len(states)

    def loss():
        out = as_list(layer.forward(x_work, training=training, **call))
        return float(sum(np.sum(g * o) for g, o in zip(grads, out)))

    x_work = x.copy()
    for name, analytic, array in [("x", result[0], x_work)] + [
            (f"state {i}", g, s) for i, (g, s) in enumerate(zip(result[1:], states))]:
        assert analytic.shape == array.shape and analytic.dtype == np.float64, name
        np.testing.assert_allclose(analytic, numeric_gradient(loss, array), rtol=rtol,
                                   atol=atol, err_msg=name)
    for var, analytic in zip(layer.variables, layer.get_gradients()):
        np.testing.assert_allclose(analytic, numeric_gradient(loss, var.value), rtol=rtol,
                                   atol=atol, err_msg=var.name)
