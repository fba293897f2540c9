"""Keras 3's Nadam, Adamax and Lion update steps (keras/optimizers/nadam.py,
adamax.py, lion.py, with the base optimizer's decoupled weight decay applied
first) transcribed into float64 NumPy, independent of fusednn: the oracles of
tests/test_ops_nadam_adamax_lion.py and tests/test_optimizers.py.

Each function runs the steps of one variable: p the start value, grads the
gradient of each step, learning_rate a number or a function of the step index
(0 for the first step, like a schedule at `iterations`). It returns the final
p and the final slots."""
import numpy as np


def _rate(learning_rate, index):
    return learning_rate(index) if callable(learning_rate) else learning_rate


def nadam(p, grads, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0):
    """Returns (p, momentum, velocity, u_product)."""
    p = np.array(p, dtype=np.float64)
    m, v = np.zeros_like(p), np.zeros_like(p)
    u_product = 1.0   # Keras's self._u_product
    for index, g in enumerate(grads):
        lr = _rate(learning_rate, index)
        g = np.asarray(g, dtype=np.float64)
        p = p - p * weight_decay * lr
        # _backend_update_step: u_product *= beta_1 (1 - 0.5 * 0.96^(iterations + 1)) first.
        local_step, next_step = index + 1, index + 2
        u_product = u_product * beta_1 * (1.0 - 0.5 * 0.96 ** local_step)
        # update_step:
        u_t = beta_1 * (1.0 - 0.5 * 0.96 ** local_step)
        u_t_1 = beta_1 * (1.0 - 0.5 * 0.96 ** next_step)
        u_product_t = u_product
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = beta_2 ** local_step
        m = m + (g - m) * (1 - beta_1)
        v = v + (np.square(g) - v) * (1 - beta_2)
        m_hat = u_t_1 * m / (1 - u_product_t_1) + (1 - u_t) * g / (1 - u_product_t)
        v_hat = v / (1 - beta_2_power)
        p = p - (m_hat * lr) / (np.sqrt(v_hat) + epsilon)
    return p, m, v, u_product


def adamax(p, grads, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0):
    """Returns (p, momentum, norm)."""
    p = np.array(p, dtype=np.float64)
    m, u = np.zeros_like(p), np.zeros_like(p)
    for index, g in enumerate(grads):
        lr = _rate(learning_rate, index)
        g = np.asarray(g, dtype=np.float64)
        p = p - p * weight_decay * lr
        beta_1_power = beta_1 ** (index + 1)
        m = m + (g - m) * (1 - beta_1)
        u = np.maximum(beta_2 * u, np.abs(g))
        p = p - (lr * m) / ((1 - beta_1_power) * (u + epsilon))
    return p, m, u


def lion(p, grads, learning_rate, beta_1=0.9, beta_2=0.99, weight_decay=0.0):
    """Returns (p, momentum)."""
    p = np.array(p, dtype=np.float64)
    m = np.zeros_like(p)
    for index, g in enumerate(grads):
        lr = _rate(learning_rate, index)
        g = np.asarray(g, dtype=np.float64)
        p = p - p * weight_decay * lr
        p = p - lr * np.sign(m * beta_1 + g * (1.0 - beta_1))
        m = m * beta_2 + g * (1.0 - beta_2)
    return p, m
