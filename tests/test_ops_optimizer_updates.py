"""Fused optimizer updates (fusednn.ops.adam_update / sgd_update): several steps
over lists of tensors against a NumPy reference of Keras's formulas and against
torch.optim (Adam, AdamW, SGD with momentum and Nesterov), edge sizes, the
in-place rules and bad input; CPU vs CUDA parity where a GPU exists."""
import math

import numpy as np
import pytest

import fusednn._C as _C
from fusednn import backend, ops

# Tensor shapes of one "model": a scalar, empty tensors, prime sizes, and one
# large enough (> 2^15 elements) to be split into chunks across the OpenMP threads.
SHAPES = [(), (0,), (7,), (3, 5), (2, 0, 3), (13, 17), (211, 199)]

# float64: kernel and reference differ only by rounding, ~1e-16 per step.
# float32: each step rounds p, m, v to 2^-24 relative; over 5 steps the drift is
# a few 1e-7 relative to |p| ~ 1, so 2e-6 absolute leaves a ~5x margin.
ATOL = {np.float64: 1e-13, np.float32: 2e-6}

ADAM = dict(learning_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-7)


def make_tensors(rng, dtype, shapes=SHAPES):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def reference_adam(p, g, m, v, *, learning_rate, beta_1, beta_2, epsilon, step, weight_decay=0.0):
    """Keras's Adam (and AdamW decay) in float64, returning new (p, m, v)."""
    p, g, m, v = (np.asarray(a, dtype=np.float64) for a in (p, g, m, v))
    alpha = learning_rate * math.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    m = m + (1 - beta_1) * (g - m)
    v = v + (1 - beta_2) * (g * g - v)
    p = p - learning_rate * weight_decay * p
    p = p - alpha * m / (np.sqrt(v) + epsilon)
    return p, m, v


def reference_sgd(p, g, m, *, learning_rate, momentum, nesterov, weight_decay):
    p, g = np.asarray(p, np.float64), np.asarray(g, np.float64)
    p = p - learning_rate * weight_decay * p
    if m is None:
        return p - learning_rate * g, None
    m = momentum * np.asarray(m, np.float64) - learning_rate * g
    p = p + (momentum * m - learning_rate * g if nesterov else m)
    return p, m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_matches_keras_reference(rng, dtype, weight_decay):
    params = make_tensors(rng, dtype)
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    ref = [(p.astype(np.float64), np.zeros(p.shape), np.zeros(p.shape)) for p in params]
    for step in range(1, 6):
        grads = make_tensors(rng, dtype)
        ops.adam_update(params, grads, ms, vs, step=step, weight_decay=weight_decay, **ADAM)
        ref = [reference_adam(p, g, m, v, step=step, weight_decay=weight_decay, **ADAM)
               for (p, m, v), g in zip(ref, grads)]
    for got, want in zip(zip(params, ms, vs), ref):
        for a, b in zip(got, want):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=0, atol=ATOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sgd_matches_keras_reference(rng, dtype, momentum, nesterov, weight_decay):
    params = make_tensors(rng, dtype)
    moments = [np.zeros_like(p) for p in params] if momentum else None
    ref = [(p.astype(np.float64), np.zeros(p.shape) if momentum else None) for p in params]
    hyper = dict(learning_rate=0.05, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    for _ in range(5):
        grads = make_tensors(rng, dtype)
        ops.sgd_update(params, grads, moments, **hyper)
        ref = [reference_sgd(p, g, m, **hyper) for (p, m), g in zip(ref, grads)]
    for i, (p_ref, m_ref) in enumerate(ref):
        np.testing.assert_allclose(params[i], p_ref, rtol=0, atol=ATOL[dtype])
        if momentum:
            np.testing.assert_allclose(moments[i], m_ref, rtol=0, atol=ATOL[dtype])


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_torch(rng, weight_decay):
    torch = pytest.importorskip("torch")
    # Keras: p -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps).
    # torch: p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps_torch).
    # Multiplying torch's fraction by sqrt(1-b2^t)/sqrt(1-b2^t) shows the two are
    # the same update when eps_torch = eps / sqrt(1 - b2^t); torch reads eps from
    # the param group at every step, so setting it per step makes torch an exact
    # oracle. Decay: torch's AdamW multiplies p by (1 - lr*wd) before the step,
    # Keras subtracts lr*wd*p: the same. Moments are identical in both.
    params = make_tensors(rng, np.float64)
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    torch_params = [torch.tensor(p) for p in params]
    cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    opt = cls(torch_params, lr=ADAM["learning_rate"], betas=(ADAM["beta_1"], ADAM["beta_2"]),
              eps=ADAM["epsilon"], weight_decay=weight_decay, foreach=False)
    for step in range(1, 8):
        grads = make_tensors(rng, np.float64)
        ops.adam_update(params, grads, ms, vs, step=step, weight_decay=weight_decay, **ADAM)
        for group in opt.param_groups:
            group["eps"] = ADAM["epsilon"] / math.sqrt(1 - ADAM["beta_2"] ** step)
        for tp, g in zip(torch_params, grads):
            tp.grad = torch.tensor(g)
        opt.step()
    for p, tp in zip(params, torch_params):
        np.testing.assert_allclose(p, tp.numpy(), rtol=0, atol=1e-14)
    # With torch's constant eps the two differ only through eps; the difference
    # is below 1e-4 of a step here (eps = 1e-7 against sqrt(v) ~ 1).


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.8, True)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_sgd_matches_torch(rng, momentum, nesterov, weight_decay):
    torch = pytest.importorskip("torch")
    # torch keeps buf = momentum * buf + g and steps p -= lr * buf (Nesterov:
    # p -= lr * (g + momentum * buf)); Keras keeps m = momentum * m - lr * g, i.e.
    # m = -lr * buf for a constant lr, so both trace the same parameters. torch's
    # weight_decay is an L2 term added to g, not Keras's decoupled decay, so the
    # decay is applied to the torch parameters by hand: p *= 1 - lr * wd.
    lr = 0.05
    params = make_tensors(rng, np.float64)
    moments = [np.zeros_like(p) for p in params] if momentum else None
    torch_params = [torch.tensor(p) for p in params]
    opt = torch.optim.SGD(torch_params, lr=lr, momentum=momentum, nesterov=nesterov,
                          foreach=False)
    for _ in range(6):
        grads = make_tensors(rng, np.float64)
        ops.sgd_update(params, grads, moments, learning_rate=lr, momentum=momentum,
                       nesterov=nesterov, weight_decay=weight_decay)
        with torch.no_grad():
            for tp in torch_params:
                tp.mul_(1 - lr * weight_decay)
        for tp, g in zip(torch_params, grads):
            tp.grad = torch.tensor(g)
        opt.step()
    for p, tp in zip(params, torch_params):
        np.testing.assert_allclose(p, tp.numpy(), rtol=0, atol=1e-13)


def test_adam_float32_matches_torch_float32(rng):
    torch = pytest.importorskip("torch")
    params = make_tensors(rng, np.float32, shapes=[(64, 32), (32,)])
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    torch_params = [torch.tensor(p) for p in params]
    opt = torch.optim.Adam(torch_params, lr=1e-3, eps=1e-7, foreach=False)
    for step in range(1, 6):
        grads = make_tensors(rng, np.float32, shapes=[(64, 32), (32,)])
        ops.adam_update(params, grads, ms, vs, learning_rate=1e-3, beta_1=0.9, beta_2=0.999,
                        epsilon=1e-7, step=step)
        opt.param_groups[0]["eps"] = 1e-7 / math.sqrt(1 - 0.999**step)
        for tp, g in zip(torch_params, grads):
            tp.grad = torch.tensor(g)
        opt.step()
    # Steps of 1e-3 computed in float32 by two different operation orders.
    for p, tp in zip(params, torch_params):
        np.testing.assert_allclose(p, tp.numpy(), rtol=0, atol=1e-6)


def test_every_element_is_updated(rng):
    # A missed element would keep its old value; every gradient entry is nonzero.
    params = make_tensors(rng, np.float32)
    before = [p.copy() for p in params]
    grads = [np.where(g == 0, 1.0, g).astype(np.float32) for g in make_tensors(rng, np.float32)]
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    ops.adam_update(params, grads, ms, vs, step=1, **ADAM)
    for p, b, m, v in zip(params, before, ms, vs):
        assert (p != b).all() and (m != 0).all() and (v != 0).all()


def test_many_tensors_in_one_call(rng):
    shapes = [(int(n),) for n in rng.integers(1, 300, size=150)]
    params = make_tensors(rng, np.float64, shapes)
    grads = make_tensors(rng, np.float64, shapes)
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    want = [reference_adam(p, g, m, v, step=1, **ADAM) for p, g, m, v in zip(params, grads, ms, vs)]
    ops.adam_update(params, grads, ms, vs, step=1, **ADAM)
    for p, (p_ref, _, _) in zip(params, want):
        np.testing.assert_allclose(p, p_ref, rtol=0, atol=1e-15)


def test_empty_lists_are_a_no_op():
    ops.adam_update([], [], [], [], step=1, **ADAM)
    ops.sgd_update([], [], None, learning_rate=0.1)


def test_non_contiguous_gradients_are_copied(rng):
    params = make_tensors(rng, np.float64, [(6, 4)])
    params_copy = [p.copy() for p in params]
    big = rng.standard_normal((12, 4))
    for ps, grads in [(params, [big[::2]]), (params_copy, [np.ascontiguousarray(big[::2])])]:
        ops.sgd_update(ps, grads, None, learning_rate=0.1)
    np.testing.assert_array_equal(params[0], params_copy[0])


def test_tuples_and_numpy_scalars_are_accepted(rng):
    params = tuple(make_tensors(rng, np.float32, [(3,)]))
    grads = tuple(make_tensors(rng, np.float32, [(3,)]))
    ms, vs = (np.zeros(3, np.float32),), (np.zeros(3, np.float32),)
    ops.adam_update(params, grads, ms, vs, learning_rate=np.float32(0.1), beta_1=0.9,
                    beta_2=np.float64(0.99), epsilon=1e-7, step=np.int64(3))


def _adam_lists(rng, dtype=np.float32, shapes=((3, 2), (4,))):
    params = make_tensors(rng, dtype, shapes)
    grads = make_tensors(rng, dtype, shapes)
    return params, grads, [np.zeros_like(p) for p in params], [np.zeros_like(p) for p in params]


@pytest.mark.parametrize("mutate, error, pattern", [
    (lambda a: a.update(grads=a["grads"][:1]), ValueError, r"adam_update: the lists must have one entry per parameter"),
    (lambda a: a["ms"].__setitem__(1, np.zeros(5, np.float32)), ValueError, r"adam_update: ms\[1\] has shape \(5,\), expected \(4,\) like params\[1\]"),
    (lambda a: a["vs"].__setitem__(0, np.zeros((3, 2))), TypeError, r"adam_update: vs\[0\] has dtype float64, expected float32"),
    (lambda a: a["grads"].__setitem__(0, a["grads"][0].tolist()), TypeError, r"adam_update: grads\[0\] must be a NumPy or CuPy array, got list"),
    (lambda a: a.update(params=np.zeros(3)), TypeError, r"adam_update: params must be a list of arrays"),
    (lambda a: a["ms"].__setitem__(0, np.zeros((2, 3), np.float32).T), ValueError, r"adam_update: ms\[0\] must be C-contiguous.*lose the update"),
    (lambda a: a["params"][0].setflags(write=False), ValueError, r"adam_update: params\[0\] is read-only"),
    (lambda a: a.update(step=0), ValueError, r"adam_update: step must be an integer >= 1.*got 0"),
    (lambda a: a.update(step=1.5), TypeError, r"adam_update: step must be an integer >= 1, got 1.5"),
    (lambda a: a.update(step=True), TypeError, r"adam_update: step must be an integer"),
    (lambda a: a.update(learning_rate=-0.1), ValueError, r"adam_update: learning_rate must be finite and in \[0.0, inf\), got -0.1"),
    (lambda a: a.update(learning_rate="0.1"), TypeError, r"adam_update: learning_rate must be a real number"),
    (lambda a: a.update(beta_1=1.0), ValueError, r"adam_update: beta_1 must be finite and in \[0.0, 1.0\), got 1.0"),
    (lambda a: a.update(beta_2=-0.5), ValueError, r"adam_update: beta_2"),
    (lambda a: a.update(epsilon=math.nan), ValueError, r"adam_update: epsilon must be finite"),
    (lambda a: a.update(weight_decay=-1.0), ValueError, r"adam_update: weight_decay"),
])
def test_adam_bad_input(rng, mutate, error, pattern):
    params, grads, ms, vs = _adam_lists(rng)
    args = dict(params=params, grads=grads, ms=ms, vs=vs, step=1, **ADAM)
    mutate(args)
    snapshot = [p.copy() for p in params]
    with pytest.raises(error, match=pattern):
        ops.adam_update(**args)
    for p, s in zip(params, snapshot):  # rejected before any kernel ran
        np.testing.assert_array_equal(p, s)


def test_adam_rejects_integer_and_mixed_precision_parameters(rng):
    params = [np.zeros(3, np.int32)]
    with pytest.raises(TypeError, match=r"adam_update: NumPy parameters must be float32 or float64, "
                                        r"got params\[0\] of dtype int32"):
        ops.adam_update(params, params, params, params, step=1, **ADAM)
    params, grads, ms, vs = _adam_lists(rng)
    grads[1] = grads[1].astype(np.float64)
    with pytest.raises(TypeError, match=r"grads\[1\] has dtype float64, expected float32"):
        ops.adam_update(params, grads, ms, vs, step=1, **ADAM)


@pytest.mark.parametrize("kwargs, moments, error, pattern", [
    (dict(momentum=0.9), None, ValueError, r"sgd_update: momentum = 0.9 needs a list of moment buffers"),
    (dict(momentum=1.5), "zeros", ValueError, r"sgd_update: momentum must be finite and in \[0.0, 1.0\]"),
    (dict(nesterov="yes"), None, TypeError, r"sgd_update: nesterov must be True or False"),
    (dict(learning_rate=math.inf), None, ValueError, r"sgd_update: learning_rate must be finite"),
    (dict(momentum=0.5), "short", ValueError, r"sgd_update: the lists must have one entry per parameter"),
])
def test_sgd_bad_input(rng, kwargs, moments, error, pattern):
    params = make_tensors(rng, np.float64, [(3,), (2, 2)])
    grads = make_tensors(rng, np.float64, [(3,), (2, 2)])
    if moments == "zeros":
        moments = [np.zeros_like(p) for p in params]
    elif moments == "short":
        moments = [np.zeros(3)]
    call = dict(learning_rate=0.1)
    call.update(kwargs)
    with pytest.raises(error, match=pattern):
        ops.sgd_update(params, grads, moments, **call)


def test_moments_with_zero_momentum_follow_the_same_formula(rng):
    # Keras keeps no moments at momentum 0; given buffers, m = -lr * g and p += m.
    params = make_tensors(rng, np.float64, [(5,)])
    grads = make_tensors(rng, np.float64, [(5,)])
    moments = [np.full(5, 3.0)]
    want = params[0] - 0.1 * grads[0]
    ops.sgd_update(params, grads, moments, learning_rate=0.1, momentum=0.0)
    np.testing.assert_allclose(params[0], want, rtol=1e-15)
    np.testing.assert_allclose(moments[0], -0.1 * grads[0], rtol=1e-15)


def test_bindings_reject_what_would_lose_an_update(rng):
    params = [np.zeros((4, 4), np.float32)]
    grads = [np.ones((4, 4), np.float32)]
    state = [np.zeros((4, 4), np.float32)]
    with pytest.raises(TypeError):  # a strided view would be copied, the update lost
        _C.adam_update_cpu([np.zeros((4, 8), np.float32)[:, ::2]], grads, state, state,
                           0.1, 0.9, 0.999, 1e-7, 1, 0.0)
    with pytest.raises(ValueError, match="expected as many ms as params"):
        _C.adam_update_cpu(params, grads, [], state, 0.1, 0.9, 0.999, 1e-7, 1, 0.0)
    with pytest.raises(ValueError, match=r"grads\[0\] has 8 elements, params\[0\] has 16"):
        _C.sgd_update_cpu(params, [np.ones(8, np.float32)], None, 0.1, 0.0, False, 0.0)
    with pytest.raises(ValueError, match="step must be >= 1"):
        _C.adam_update_cpu(params, grads, state, [np.zeros((4, 4), np.float32)],
                           0.1, 0.9, 0.999, 1e-7, 0, 0.0)
    with pytest.raises(TypeError):  # host arrays are not CUDA arrays
        _C.sgd_update_cuda(params, grads, None, 0.1, 0.0, False, 0.0, 0)
    np.testing.assert_array_equal(params[0], 0)


# ---------------------------------------------------------------- CUDA parity

@pytest.mark.cuda
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_cuda_adam_matches_cpu(rng, weight_decay):
    cp = backend.cupy_module()
    # 150 tensors: more than one kernel-parameter table (64 per launch); sizes
    # around and above one chunk (16384), empty ones, and a 1M-element one.
    shapes = [(int(n),) for n in rng.integers(0, 40000, size=149)] + [(1000, 1000)]
    params = make_tensors(rng, np.float32, shapes)
    ms = [np.zeros_like(p) for p in params]
    vs = [np.zeros_like(p) for p in params]
    d_params, d_ms, d_vs = ([cp.asarray(a) for a in lst] for lst in (params, ms, vs))
    for step in range(1, 4):
        grads = make_tensors(rng, np.float32, shapes)
        ops.adam_update(params, grads, ms, vs, step=step, weight_decay=weight_decay, **ADAM)
        ops.adam_update(d_params, [cp.asarray(g) for g in grads], d_ms, d_vs, step=step,
                        weight_decay=weight_decay, **ADAM)
    # The same float32 formulas; only the compilers' contraction into FMAs differs.
    for host, dev in zip(params + ms + vs, d_params + d_ms + d_vs):
        np.testing.assert_allclose(dev.get(), host, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_cuda_sgd_matches_cpu_on_a_side_stream(rng, momentum, nesterov):
    cp = backend.cupy_module()
    shapes = [(int(n),) for n in rng.integers(0, 30000, size=70)]
    params = make_tensors(rng, np.float32, shapes)
    moments = [np.zeros_like(p) for p in params] if momentum else None
    d_params = [cp.asarray(p) for p in params]
    d_moments = [cp.asarray(m) for m in moments] if momentum else None
    hyper = dict(learning_rate=0.05, momentum=momentum, nesterov=nesterov, weight_decay=0.01)
    with cp.cuda.Stream(non_blocking=True) as stream:
        for _ in range(3):
            grads = make_tensors(rng, np.float32, shapes)
            ops.sgd_update(params, grads, moments, **hyper)
            ops.sgd_update(d_params, [cp.asarray(g) for g in grads], d_moments, **hyper)
        stream.synchronize()
    for host, dev in zip(params, d_params):
        np.testing.assert_allclose(dev.get(), host, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
def test_cuda_rejects_mixed_devices_and_float64():
    cp = backend.cupy_module()
    p = [cp.zeros(3, cp.float32)]
    with pytest.raises(TypeError, match="different devices"):
        ops.sgd_update(p, [np.zeros(3, np.float32)], None, learning_rate=0.1)
    p64 = [cp.zeros(3, cp.float64)]
    with pytest.raises(TypeError, match="CuPy parameters must be float32"):
        ops.sgd_update(p64, p64, None, learning_rate=0.1)


# The CUDA kernels' multi-tensor indexing (tables of up to 64 tensors per
# launch, chunk lookup, per-thread strides), compiled by nvcc as host code from
# the kernels' own source: every block's every thread is run on the host.
_KERNEL_SIMULATION = r"""
#include "optimizers.cu"
#include <cstdio>
#include <cstring>
#include <vector>
using namespace fusednn;
using namespace fusednn::cuda;

int main(int argc, char** argv) {
  // argv: mode (adam | sgd | momentum | nesterov), input file, output file.
  // Input: int64 count, int64 sizes[count], then p, g, m, v of all tensors (float32).
  const char* mode = argv[1];
  FILE* in = std::fopen(argv[2], "rb");
  std::int64_t count;
  std::fread(&count, sizeof count, 1, in);
  std::vector<std::int64_t> sizes(count);
  std::fread(sizes.data(), sizeof(std::int64_t), count, in);
  std::int64_t total = 0;
  for (auto s : sizes) total += s;
  std::vector<float> data(4 * total);
  std::fread(data.data(), sizeof(float), data.size(), in);
  std::fclose(in);
  std::vector<float*> ptrs[4];
  for (int a = 0; a < 4; ++a)
    for (std::int64_t i = 0, offset = 0; i < count; offset += sizes[i++])
      ptrs[a].push_back(data.data() + a * total + offset);
  int launches = 0;
  if (std::strcmp(mode, "adam") == 0) {
    const auto h = device_hyperparameters(adam_hyperparameters(0.01, 0.9, 0.999, 1e-7, 3, 0.01));
    float* const* const arrays[4] = {ptrs[0].data(), ptrs[1].data(), ptrs[2].data(), ptrs[3].data()};
    for_each_table<4>(arrays, sizes.data(), count, [&](const TensorTable<4>& t, std::int64_t chunks) {
      ++launches;
      for (std::int64_t chunk = 0; chunk < chunks; ++chunk)
        for (int thread = 0; thread < kThreadsPerBlock; ++thread) adam_chunk(t, chunk, thread, h);
    });
  } else {
    const bool momentum = std::strcmp(mode, "sgd") != 0, nesterov = std::strcmp(mode, "nesterov") == 0;
    const auto h = device_hyperparameters(SgdHyperparameters{0.05, 0.9, 0.05 * 0.01, nesterov});
    float* const* const arrays[3] = {ptrs[0].data(), ptrs[1].data(), momentum ? ptrs[2].data() : nullptr};
    for_each_table<3>(arrays, sizes.data(), count, [&](const TensorTable<3>& t, std::int64_t chunks) {
      ++launches;
      for (std::int64_t chunk = 0; chunk < chunks; ++chunk)
        for (int thread = 0; thread < kThreadsPerBlock; ++thread) {
          if (!momentum) sgd_chunk<false, false>(t, chunk, thread, h);
          else if (nesterov) sgd_chunk<true, true>(t, chunk, thread, h);
          else sgd_chunk<true, false>(t, chunk, thread, h);
        }
    });
  }
  FILE* out = std::fopen(argv[3], "wb");
  std::fwrite(data.data(), sizeof(float), data.size(), out);
  std::fclose(out);
  std::printf("%d\n", launches);
}
"""


def test_cuda_kernel_indexing_on_the_host(tmp_path, rng):
    import pathlib
    import shutil
    import subprocess

    nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc"
                                    if pathlib.Path("/usr/local/cuda/bin/nvcc").exists() else None)
    kernel_dir = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "cuda"
    if nvcc is None or not (kernel_dir / "optimizers.cu").exists():
        pytest.skip("needs nvcc and the CUDA sources")
    source = tmp_path / "kernel_simulation.cu"
    source.write_text(_KERNEL_SIMULATION)
    program = tmp_path / "kernel_simulation"
    subprocess.run([nvcc, "-std=c++17", "--expt-relaxed-constexpr", f"-I{kernel_dir}",
                    f"-I{kernel_dir.parent / 'include'}", str(source), "-o", str(program)],
                   check=True, capture_output=True)
    # 150 tensors (3 launches of <= 64 non-empty ones): empty, tiny, and sizes on
    # both sides of the 16384-element chunk and of the 1024-element thread stride.
    sizes = [0, 1, 1023, 1024, 1025, 16383, 16384, 16385, 40000] + \
        [int(n) for n in rng.integers(0, 3000, size=141)]
    nonempty = sum(1 for n in sizes if n)
    for mode in ["adam", "sgd", "momentum", "nesterov"]:
        arrays = [make_tensors(rng, np.float32, [(n,) for n in sizes]) for _ in range(4)]
        arrays[3] = [np.abs(v) for v in arrays[3]]  # second moments are >= 0
        data = tmp_path / f"{mode}.in"
        with open(data, "wb") as f:
            np.array([len(sizes)] + sizes, dtype=np.int64).tofile(f)
            for kind in arrays:
                np.concatenate(kind).astype(np.float32).tofile(f)
        result = tmp_path / f"{mode}.out"
        launches = subprocess.run([str(program), mode, str(data), str(result)], check=True,
                                  capture_output=True, text=True).stdout
        assert int(launches) == -(-nonempty // 64)
        got = np.fromfile(result, dtype=np.float32).reshape(4, -1)
        params, grads, ms, vs = arrays
        if mode == "adam":
            ops.adam_update(params, grads, ms, vs, learning_rate=0.01, beta_1=0.9,
                            beta_2=0.999, epsilon=1e-7, step=3, weight_decay=0.01)
            expected = [params, grads, ms, vs]
        else:
            moments = None if mode == "sgd" else ms
            ops.sgd_update(params, grads, moments, learning_rate=0.05, momentum=0.9 if moments else 0.0,
                           nesterov=mode == "nesterov", weight_decay=0.01)
            expected = [params, grads, ms, vs]
        # Same float32 formulas compiled by two compilers (FMA contraction may differ).
        for row, want in zip(got, expected):
            np.testing.assert_allclose(row, np.concatenate(want), rtol=1e-5, atol=1e-6)
