"""Fused Nadam, Adamax and Lion updates (fusednn.ops.nadam_update / adamax_update /
lion_update): several steps over lists of tensors against a float64 NumPy
transcription of Keras 3 (tests/keras3_optimizer_reference.py) and against
torch.optim where torch defines the same update; bad input; CPU vs CUDA parity
where a GPU exists. tests/test_cpu_isa.py runs this file on every CPU path."""
import numpy as np
import pytest

import fusednn._C as _C
import keras3_optimizer_reference as keras3
from fusednn import backend, ops

# A scalar, empty tensors, prime sizes, and one large enough (> 2^15 elements)
# to be split into chunks across the OpenMP threads.
SHAPES = [(), (0,), (7,), (3, 5), (2, 0, 3), (13, 17), (211, 199)]

# float64: kernel and reference differ only by rounding order (the kernel folds
# the learning rate into its coefficients), ~1e-16 per step on O(1) values.
# float32: each step rounds p and the slots to 2^-24 relative; over 5 steps a few
# 1e-7 on |p| ~ 1, so 2e-6 absolute leaves a ~5x margin.
ATOL = {np.float64: 1e-13, np.float32: 2e-6}
STEPS = 5


def make_tensors(rng, dtype, shapes=SHAPES):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def run_nadam(params, grads_per_step, slots, **hyper):
    u_product = 1.0
    for step, grads in enumerate(grads_per_step, start=1):
        u_product = ops.nadam_update(params, grads, *slots, step=step, u_product=u_product,
                                     **hyper)
    return u_product


def run_adamax(params, grads_per_step, slots, **hyper):
    for step, grads in enumerate(grads_per_step, start=1):
        ops.adamax_update(params, grads, *slots, step=step, **hyper)


def run_lion(params, grads_per_step, slots, **hyper):
    for grads in grads_per_step:
        ops.lion_update(params, grads, *slots, **hyper)


# name -> (fused runner, number of slots, Keras 3 reference, hyperparameters)
OPTIMIZERS = {
    "nadam": (run_nadam, 2, keras3.nadam,
              dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7)),
    "adamax": (run_adamax, 2, keras3.adamax,
               dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-7)),
    # Lion's step is lr * sign(...): a sign argument within float32 rounding of 0
    # would differ by 2 lr, but with normal draws that has probability ~1e-8 per
    # element and step, and the generator is seeded.
    "lion": (run_lion, 1, keras3.lion, dict(learning_rate=0.01, beta_1=0.9, beta_2=0.99)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_matches_keras_reference(rng, name, dtype, weight_decay):
    runner, num_slots, reference, hyper = OPTIMIZERS[name]
    params = make_tensors(rng, dtype)
    start = [p.astype(np.float64) for p in params]
    slots = [[np.zeros_like(p) for p in params] for _ in range(num_slots)]
    grads_per_step = [make_tensors(rng, dtype) for _ in range(STEPS)]
    result = runner(params, grads_per_step, slots, weight_decay=weight_decay, **hyper)
    for i, p0 in enumerate(start):
        want = reference(p0, [g[i] for g in grads_per_step], weight_decay=weight_decay, **hyper)
        for got, expected in zip([params[i]] + [s[i] for s in slots], want):
            assert got.dtype == dtype
            np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL[dtype])
        if p0.size:
            assert not np.allclose(params[i], p0)   # the steps moved the weights
    if name == "nadam":   # the returned momentum-cache product is Keras's u_product
        assert result == pytest.approx(want[-1], rel=1e-15)


def test_nadam_empty_lists_still_advance_the_product():
    u_1 = ops.nadam_update([], [], [], [], learning_rate=0.1, beta_1=0.9, beta_2=0.999,
                           epsilon=1e-7, step=1, u_product=1.0)
    assert u_1 == pytest.approx(0.9 * (1 - 0.5 * 0.96), rel=1e-15)


def test_lion_sign_of_zero_is_zero_and_nan_is_not_swallowed():
    params = [np.array([1.0, 2.0, 3.0])]
    grads = [np.array([0.0, np.nan, -1.0])]
    ms = [np.zeros(3)]
    ops.lion_update(params, grads, ms, learning_rate=0.1, beta_1=0.9, beta_2=0.99)
    assert params[0][0] == 1.0                        # sign(0) = 0: no step
    assert np.isnan(params[0][1]) and np.isnan(ms[0][1])
    assert params[0][2] == pytest.approx(3.1)


def test_adamax_nan_gradient_reaches_the_weights():
    params, ms, us = [np.ones(2)], [np.zeros(2)], [np.zeros(2)]
    ops.adamax_update(params, [np.array([np.nan, 1.0])], ms, us, learning_rate=0.1,
                      beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=1)
    assert np.isnan(params[0][0]) and np.isnan(us[0][0]) and np.isfinite(params[0][1])


# ----- torch.optim as oracle ---------------------------------------------------------
def torch_run(factory, start, grads_per_step):
    torch = pytest.importorskip("torch")
    # torch keeps scalar state (NAdam's mu_product, the step) in the default dtype:
    # float64 here, so that it is not a float32 rounding (~1e-8) off the formula.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        params = [torch.tensor(p, requires_grad=True) for p in start]
        opt = factory(params)
        for grads in grads_per_step:
            for param, g in zip(params, grads):
                param.grad = torch.tensor(g)
            opt.step()
    finally:
        torch.set_default_dtype(default)
    return [p.detach().numpy() for p in params]


def torch_case(rng):
    """float64 weights (two tensors), a copy of them, 6 steps of gradients, two zero slots."""
    shapes = [(3, 4), (5,)]
    params = make_tensors(rng, np.float64, shapes)
    grads_per_step = [make_tensors(rng, np.float64, shapes) for _ in range(6)]
    slots = [[np.zeros_like(p) for p in params] for _ in range(2)]
    return params, [p.copy() for p in params], grads_per_step, slots


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_nadam_matches_torch(rng, weight_decay):
    torch = pytest.importorskip("torch")
    params, start, grads_per_step, slots = torch_case(rng)
    run_nadam(params, grads_per_step, slots, learning_rate=0.01, beta_1=0.9, beta_2=0.999,
              epsilon=1e-8, weight_decay=weight_decay)
    # torch's momentum cache is beta_1 (1 - 0.5 * 0.96^(t * momentum_decay)); Keras's is
    # 0.96^t, i.e. momentum_decay = 1 (torch's default 0.004 is a different schedule).
    # Both divide by sqrt(v / (1 - beta_2^t)) + eps; torch's decoupled_weight_decay is
    # Keras's p -= lr wd p (its default is an L2 term added to the gradient instead).
    expected = torch_run(lambda ps: torch.optim.NAdam(
        ps, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
        momentum_decay=1.0, decoupled_weight_decay=True), start, grads_per_step)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_adamax_matches_torch(rng):
    torch = pytest.importorskip("torch")
    params, start, grads_per_step, slots = torch_case(rng)
    eps = 1e-14
    run_adamax(params, grads_per_step, slots, learning_rate=0.01, beta_1=0.9, beta_2=0.999,
               epsilon=eps)
    # torch keeps u = max(beta_2 u, |g| + eps) and divides by u; Keras keeps
    # u = max(beta_2 u, |g|) and divides by u + eps. The two denominators differ by
    # at most eps / (1 - beta_2) = 1e-11 on |u| >~ 0.01 here: ~1e-9 relative on a
    # step of lr = 0.01, hence atol 1e-10. torch's weight_decay is an L2 term in the
    # gradient, not Keras's decoupled decay, so only weight_decay = 0 is compared.
    expected = torch_run(lambda ps: torch.optim.Adamax(ps, lr=0.01, betas=(0.9, 0.999),
                                                       eps=eps), start, grads_per_step)
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


# ----- bad input -------------------------------------------------------------------
def _lists(n=2, dtype=np.float32):
    return [[np.zeros((3, 2), dtype) for _ in range(2)] for _ in range(n)]


NADAM = dict(learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=1, u_product=1.0)
ADAMAX = dict(learning_rate=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-7, step=1)
LION = dict(learning_rate=0.1, beta_1=0.9, beta_2=0.99)


@pytest.mark.parametrize("call, error, pattern", [
    (lambda p, g, m, v: ops.nadam_update(p, g, m, v, **{**NADAM, "step": 0}), ValueError,
     r"nadam_update: step must be an integer >= 1"),
    (lambda p, g, m, v: ops.nadam_update(p, g, m, v, **{**NADAM, "u_product": 1.5}), ValueError,
     r"nadam_update: u_product must be finite and in \[0.0, 1.0\], got 1.5"),
    (lambda p, g, m, v: ops.nadam_update(p, g, m, v[:1], **NADAM), ValueError,
     r"nadam_update: the lists must have one entry per parameter"),
    (lambda p, g, m, v: ops.adamax_update(p, g, m, v, **{**ADAMAX, "beta_2": 1.0}), ValueError,
     r"adamax_update: beta_2 must be finite and in \[0.0, 1.0\)"),
    (lambda p, g, m, v: ops.adamax_update(p, g, m, [np.zeros((2, 3), np.float32)] * 2,
                                          **ADAMAX), ValueError,
     r"adamax_update: us\[0\] has shape \(2, 3\), expected \(3, 2\)"),
    (lambda p, g, m, v: ops.lion_update(p, g, m, **{**LION, "beta_1": 1.5}), ValueError,
     r"lion_update: beta_1 must be finite and in \[0.0, 1.0\]"),
    (lambda p, g, m, v: ops.lion_update(p, g, [a.astype(np.float64) for a in m], **LION),
     TypeError, r"lion_update: ms\[0\] has dtype float64, expected float32"),
    (lambda p, g, m, v: ops.lion_update(p, g, [a.T for a in m], **LION), ValueError,
     r"lion_update: ms\[0\] has shape \(2, 3\)"),
    (lambda p, g, m, v: ops.lion_update(p, g, m, **{**LION, "learning_rate": "0.1"}), TypeError,
     r"lion_update: learning_rate must be a real number"),
])
def test_bad_input_is_a_clear_error_and_changes_nothing(call, error, pattern):
    params, grads = _lists()
    grads = [g + 1 for g in grads]
    ms, vs = _lists()
    with pytest.raises(error, match=pattern):
        call(params, grads, ms, vs)
    assert all(not p.any() for p in params + ms + vs)


def test_read_only_state_is_refused():
    params, grads = _lists()
    ms = [np.zeros((3, 2), np.float32) for _ in range(2)]
    ms[1].flags.writeable = False
    with pytest.raises(ValueError, match=r"lion_update: ms\[1\] is read-only"):
        ops.lion_update(params, grads, ms, **LION)


def test_bindings_check_lists_and_step_themselves():
    params, grads = _lists()
    with pytest.raises(ValueError, match="expected as many us as params"):
        _C.adamax_update_cpu(params, grads, params, params[:1], 0.1, 0.9, 0.999, 1e-7, 1, 0.0)
    with pytest.raises(ValueError, match="nadam_update: step must be >= 1, got 0"):
        _C.nadam_update_cpu(params, grads, params, params, 0.1, 0.9, 0.999, 1e-7, 0, 1.0, 0.0)
    with pytest.raises(TypeError):   # host arrays are not CUDA arrays
        _C.lion_update_cuda(params, grads, params, 0.1, 0.9, 0.99, 0.0, 0)


# ----- CUDA parity -----------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_cuda_matches_cpu(rng, name):
    cp = backend.cupy_module()
    runner, num_slots, _, hyper = OPTIMIZERS[name]
    # 150 tensors: more than one kernel-parameter table (64 per launch), sizes around
    # and above one chunk (16384), empty ones.
    shapes = [(int(n),) for n in rng.integers(0, 40000, size=150)]
    params = make_tensors(rng, np.float32, shapes)
    slots = [[np.zeros_like(p) for p in params] for _ in range(num_slots)]
    d_params = [cp.asarray(p) for p in params]
    d_slots = [[cp.asarray(a) for a in s] for s in slots]
    grads_per_step = [make_tensors(rng, np.float32, shapes) for _ in range(3)]
    runner(params, grads_per_step, slots, weight_decay=0.01, **hyper)
    runner(d_params, [[cp.asarray(g) for g in grads] for grads in grads_per_step], d_slots,
           weight_decay=0.01, **hyper)
    # The same float32 formulas; only the compilers' contraction into FMAs differs.
    for host, dev in zip(params + sum(slots, []), d_params + sum(d_slots, [])):
        np.testing.assert_allclose(dev.get(), host, rtol=1e-5, atol=1e-6)
