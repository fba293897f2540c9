"""Optimizers vs NumPy re-implementations of Keras 3's update formulas and vs torch.optim."""
import json

import numpy as np
import pytest

import fusednn as fd
import keras3_optimizer_reference as keras3
from fusednn import ops, optimizers, regularizers
from fusednn.layers import Dense
from fusednn.layers.base import Layer

SHAPES = [(3, 4), (4,)]
# float64 runs: reference and library evaluate the same formulas in a different order,
# so they agree to a few ulps per step.
TIGHT = dict(rtol=1e-11, atol=1e-13)


class Weights(Layer):
    """A layer that only holds weights of the given shapes; tests write their gradients."""

    def __init__(self, shapes=SHAPES, **kwargs):
        super().__init__(**kwargs)
        self.shapes = [tuple(s) for s in shapes]
        self.build_for((None, 1))

    def build(self, input_shape):
        for i, shape in enumerate(self.shapes):
            self.add_weight(f"w{i}", shape, "random_normal")


def make_weights(rng, dtype="float64", shapes=SHAPES):
    layer = Weights(shapes, dtype=dtype)
    layer.set_weights([rng.normal(size=s) for s in layer.shapes])
    return layer


def gradient_sequence(rng, steps, shapes=SHAPES):
    # Magnitudes in [0.1, 1.5] with random signs: no element is near zero, which keeps
    # Adam's normalised steps away from the regime where epsilon dominates.
    return [[rng.choice([-1.0, 1.0], size=s) * rng.uniform(0.1, 1.5, size=s) for s in shapes]
            for _ in range(steps)]


def run(optimizer, layer, grads_per_step):
    for grads in grads_per_step:
        for var, g in zip(layer.trainable_variables, grads):
            var.grad[...] = g
        optimizer.step(layer)
    return layer.get_weights()


# ----- NumPy references: Keras 3 update_step, one variable, in float64 ----------------
def ref_sgd(p, grads, learning_rate, momentum=0.0, nesterov=False, weight_decay=0.0):
    p, m = p.copy(), np.zeros_like(p)
    for g in grads:
        p = p - p * weight_decay * learning_rate
        if momentum:
            m = momentum * m - learning_rate * g
            p = p + (momentum * m - learning_rate * g if nesterov else m)
        else:
            p = p - learning_rate * g
    return p


def ref_adam(p, grads, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
             weight_decay=0.0):
    p, m, v, v_hat = p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        p = p - p * weight_decay * learning_rate
        alpha = learning_rate * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        if amsgrad:
            v_hat = np.maximum(v_hat, v)
        p = p - m * alpha / (np.sqrt(v_hat if amsgrad else v) + epsilon)
    return p


def ref_rmsprop(p, grads, learning_rate, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                weight_decay=0.0):
    p, vel, mom, avg = p.copy(), np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        p = p - p * weight_decay * learning_rate
        vel = rho * vel + (1 - rho) * g * g
        if centered:
            avg = rho * avg + (1 - rho) * g
            denominator = vel - avg * avg + epsilon
        else:
            denominator = vel + epsilon
        increment = learning_rate * g / np.sqrt(denominator)
        if momentum > 0:
            mom = momentum * mom + increment
            p = p - mom
        else:
            p = p - increment
    return p


def ref_adagrad(p, grads, learning_rate, initial_accumulator_value=0.1, epsilon=1e-7, weight_decay=0.0):
    p, acc = p.copy(), np.full_like(p, initial_accumulator_value)
    for g in grads:
        p = p - p * weight_decay * learning_rate
        acc = acc + g * g
        p = p - learning_rate * g / np.sqrt(acc + epsilon)
    return p


def ref_adadelta(p, grads, learning_rate, rho=0.95, epsilon=1e-7, weight_decay=0.0):
    p, acc_g, acc_d = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for g in grads:
        p = p - p * weight_decay * learning_rate
        acc_g = rho * acc_g + (1 - rho) * g * g
        delta = -np.sqrt(acc_d + epsilon) * g / np.sqrt(acc_g + epsilon)
        acc_d = rho * acc_d + (1 - rho) * delta * delta
        p = p + learning_rate * delta
    return p


def final_weights(reference):
    """A keras3_optimizer_reference function reduced to its final weights."""
    return lambda p, grads, **hp: reference(p, grads, **hp)[0]


CASES = [
    ("sgd", optimizers.SGD, ref_sgd, dict(learning_rate=0.1)),
    ("sgd_momentum", optimizers.SGD, ref_sgd, dict(learning_rate=0.1, momentum=0.9)),
    ("sgd_nesterov_wd", optimizers.SGD, ref_sgd,
     dict(learning_rate=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("adam", optimizers.Adam, ref_adam, dict(learning_rate=0.01)),
    ("adam_betas_wd", optimizers.Adam, ref_adam,
     dict(learning_rate=0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-3, weight_decay=0.05)),
    # beta_2 = 0.5 lets v shrink between steps, so the running maximum matters.
    ("adam_amsgrad", optimizers.Adam, ref_adam, dict(learning_rate=0.01, beta_2=0.5, amsgrad=True)),
    ("adam_amsgrad_wd", optimizers.Adam, ref_adam,
     dict(learning_rate=0.01, amsgrad=True, weight_decay=0.1)),
    ("adamw", optimizers.AdamW, ref_adam, dict(learning_rate=0.01, weight_decay=0.004)),
    ("rmsprop", optimizers.RMSprop, ref_rmsprop, dict(learning_rate=0.01)),
    ("rmsprop_momentum_centered_wd", optimizers.RMSprop, ref_rmsprop,
     dict(learning_rate=0.01, rho=0.8, momentum=0.5, centered=True, weight_decay=0.02)),
    ("adagrad", optimizers.Adagrad, ref_adagrad, dict(learning_rate=0.1)),
    ("adagrad_init_wd", optimizers.Adagrad, ref_adagrad,
     dict(learning_rate=0.1, initial_accumulator_value=0.5, epsilon=1e-4, weight_decay=0.1)),
    ("adadelta", optimizers.Adadelta, ref_adadelta, dict(learning_rate=1.0)),
    ("adadelta_rho_wd", optimizers.Adadelta, ref_adadelta,
     dict(learning_rate=0.5, rho=0.7, epsilon=1e-5, weight_decay=0.1)),
    ("nadam", optimizers.Nadam, final_weights(keras3.nadam), dict(learning_rate=0.01)),
    ("nadam_betas_wd", optimizers.Nadam, final_weights(keras3.nadam),
     dict(learning_rate=0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-3, weight_decay=0.05)),
    ("adamax", optimizers.Adamax, final_weights(keras3.adamax), dict(learning_rate=0.01)),
    # beta_2 = 0.5 lets the infinity norm decay below |g|, so both sides of the max occur.
    ("adamax_betas_wd", optimizers.Adamax, final_weights(keras3.adamax),
     dict(learning_rate=0.02, beta_1=0.7, beta_2=0.5, epsilon=1e-4, weight_decay=0.05)),
    ("lion", optimizers.Lion, final_weights(keras3.lion), dict(learning_rate=0.01)),
    ("lion_betas_wd", optimizers.Lion, final_weights(keras3.lion),
     dict(learning_rate=0.02, beta_1=0.5, beta_2=0.9, weight_decay=0.1)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_matches_keras_formula_float64(case, rng):
    _, cls, reference, hp = case
    layer = make_weights(rng)
    start = layer.get_weights()
    grads = gradient_sequence(rng, 6)
    opt = cls(**hp)
    result = run(opt, layer, grads)
    assert opt.iterations == 6
    ref_hp = dict(hp)
    if cls is optimizers.AdamW:
        ref_hp.setdefault("weight_decay", 0.004)
    for i, (p0, p) in enumerate(zip(start, result)):
        expected = reference(p0, [g[i] for g in grads], **ref_hp)
        np.testing.assert_allclose(p, expected, **TIGHT)
        assert not np.allclose(p, p0)   # the step moved the weights


@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_matches_keras_formula_float32(case, rng):
    _, cls, reference, hp = case
    layer = make_weights(rng, dtype="float32")
    start = [w.astype(np.float64) for w in layer.get_weights()]
    grads = [[g.astype(np.float32) for g in step] for step in gradient_sequence(rng, 4)]
    result = run(cls(**hp), layer, grads)
    assert all(w.dtype == np.float32 for w in result)
    ref_hp = dict(hp)
    if cls is optimizers.AdamW:
        ref_hp.setdefault("weight_decay", 0.004)
    for i, (p0, p) in enumerate(zip(start, result)):
        expected = reference(p0, [g[i].astype(np.float64) for g in grads], **ref_hp)
        # float32 state and weights: a few float32 ulps (~1e-7) per step on O(1) weights.
        np.testing.assert_allclose(p, expected, rtol=1e-5, atol=1e-6)


# ----- torch.optim as oracle ---------------------------------------------------------
def torch_run(torch_opt_factory, start, grads):
    torch = pytest.importorskip("torch")
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in start]
    opt = torch_opt_factory(params)
    for step in grads:
        for param, g in zip(params, step):
            param.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return [p.detach().numpy() for p in params]


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_torch(nesterov, rng):
    torch = pytest.importorskip("torch")
    layer = make_weights(rng)
    start = layer.get_weights()
    grads = gradient_sequence(rng, 8)
    result = run(optimizers.SGD(0.05, momentum=0.9, nesterov=nesterov), layer, grads)
    # torch keeps buf = momentum buf + g and steps -lr buf; Keras keeps m = -lr buf:
    # the same iterates, so only float64 rounding separates them.
    expected = torch_run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=nesterov),
                         start, grads)
    for p, e in zip(result, expected):
        np.testing.assert_allclose(p, e, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("variant", ["adam", "amsgrad", "adamw"])
def test_adam_matches_torch(variant, rng):
    torch = pytest.importorskip("torch")
    layer = make_weights(rng)
    start = layer.get_weights()
    grads = gradient_sequence(rng, 10)
    # Keras divides by sqrt(v) + eps_hat with bias correction outside; torch by
    # sqrt(v_hat) + eps. Keras equals torch with eps_t = eps_hat / sqrt(1 - b2^t), which
    # lies in [eps_hat, 32 eps_hat] for these steps. With eps = 1e-10 in both and
    # |g| >= 0.1 (so sqrt(v_hat) >= 0.1), the relative difference of each update is
    # < 32e-10 / 0.1 = 3.2e-8; updates are <= lr = 0.01, so after 10 steps the weights
    # differ by < 10 * 0.01 * 3.2e-8 = 3.2e-9 (atol below) plus rounding.
    eps, lr = 1e-10, 0.01
    if variant == "adamw":
        ours = optimizers.AdamW(lr, weight_decay=0.1, epsilon=eps)
        theirs = lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=0.1, eps=eps)
    else:
        # amsgrad with beta_2 = 0.5: v shrinks between some steps, so the maximum matters.
        beta_2 = 0.5 if variant == "amsgrad" else 0.999
        ours = optimizers.Adam(lr, beta_2=beta_2, epsilon=eps, amsgrad=variant == "amsgrad")
        theirs = lambda ps: torch.optim.Adam(ps, lr=lr, betas=(0.9, beta_2), eps=eps,
                                             amsgrad=variant == "amsgrad")
    result = run(ours, layer, grads)
    for p, e in zip(result, torch_run(theirs, start, grads)):
        np.testing.assert_allclose(p, e, rtol=0, atol=5e-9)


def test_done_when_20_adam_steps_on_dense_model_match_torch(rng):
    """Two Dense layers, MSE loss, random data: fusednn vs torch.nn + torch.optim.Adam."""
    torch = pytest.importorskip("torch")
    from fusednn import losses
    x = rng.normal(size=(32, 10)).astype(np.float32)
    y = rng.normal(size=(32, 3)).astype(np.float32)
    hidden, out = Dense(16, activation="tanh"), Dense(3)
    out(hidden(x))   # builds both
    for layer in (hidden, out):   # fixed weights, independent of the global seed
        layer.set_weights([rng.uniform(-0.5, 0.5, size=w.shape) for w in layer.get_weights()])
    t_hidden, t_out = torch.nn.Linear(10, 16), torch.nn.Linear(16, 3)
    with torch.no_grad():
        for layer, t_layer in ((hidden, t_hidden), (out, t_out)):
            kernel, bias = layer.get_weights()
            t_layer.weight.copy_(torch.tensor(kernel.T))
            t_layer.bias.copy_(torch.tensor(bias))
    variables = hidden.trainable_variables + out.trainable_variables
    # Keras's eps_hat acts like torch's eps scaled by 1/sqrt(1 - b2^t) <= 32 over these steps.
    # Epsilon 1e-12 in both keeps that difference (< 3.2e-11 in a denominator ~|g|) far below
    # float32 rounding for every gradient entry above ~1e-6; with epsilon 1e-8 the entries
    # whose gradient is ~1e-5 would already move by a few percent of lr per step.
    opt = optimizers.Adam(learning_rate=0.01, epsilon=1e-12)
    t_opt = torch.optim.Adam(list(t_hidden.parameters()) + list(t_out.parameters()),
                             lr=0.01, eps=1e-12)
    mse = losses.MeanSquaredError()
    tx, ty = torch.tensor(x), torch.tensor(y)
    for _ in range(20):
        for layer in (hidden, out):
            layer.zero_grad()
        loss, dy = mse.value_and_grad(y, out(hidden(x, training=True), training=True))
        hidden.backward(out.backward(dy))
        opt.step(variables)
        t_opt.zero_grad()
        t_loss = torch.nn.functional.mse_loss(t_out(torch.tanh(t_hidden(tx))), ty)
        t_loss.backward()
        t_opt.step()
        assert loss == pytest.approx(t_loss.item(), rel=1e-4)
    assert opt.iterations == 20
    ours = hidden.get_weights() + out.get_weights()
    theirs = [t_hidden.weight.detach().numpy().T, t_hidden.bias.detach().numpy(),
              t_out.weight.detach().numpy().T, t_out.bias.detach().numpy()]
    for w, t in zip(ours, theirs):
        # 1e-4 relative, with an absolute floor of 1e-4 x the weight scale for entries near
        # zero. Float32 rounding alone gives ~3e-6 of that budget (worst of 50 seeds checked).
        np.testing.assert_allclose(w, t, rtol=1e-4, atol=1e-4 * np.abs(t).max())


# ----- clipping and regularizers --------------------------------------------------
def one_sgd_step(rng, grads, **kwargs):
    """Weights and their values after one SGD(lr=1) step: the applied gradient is start - after."""
    layer = make_weights(rng)
    start = layer.get_weights()
    after = run(optimizers.SGD(learning_rate=1.0, **kwargs), layer, [grads])
    return [s - a for s, a in zip(start, after)]


def test_clipnorm_rescales_each_gradient(rng):
    grads = [np.full((3, 4), 0.5), np.full(4, 0.1)]   # norms sqrt(3) and 0.2
    applied = one_sgd_step(rng, grads, clipnorm=1.0)
    np.testing.assert_allclose(applied[0], grads[0] / np.sqrt(3.0), **TIGHT)
    np.testing.assert_allclose(applied[1], grads[1], **TIGHT)   # already below the norm


@pytest.mark.parametrize("scale", [0.1, 10.0])
def test_global_clipnorm_rescales_jointly(scale, rng):
    torch = pytest.importorskip("torch")
    grads = [scale * g for g in gradient_sequence(rng, 1)[0]]
    applied = one_sgd_step(rng, grads, global_clipnorm=2.0)
    norm = np.sqrt(sum((g ** 2).sum() for g in grads))
    factor = min(1.0, 2.0 / norm)
    tensors = [torch.tensor(g) for g in grads]
    for t in tensors:
        t.grad = t.clone()
    torch.nn.utils.clip_grad_norm_(tensors, 2.0)
    for a, g, t in zip(applied, grads, tensors):
        np.testing.assert_allclose(a, g * factor, **TIGHT)
        # torch divides by (norm + 1e-6): 1e-6 relative to a norm >= 1.
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=2e-6)


def test_clipvalue_clips_elementwise(rng):
    torch = pytest.importorskip("torch")
    grads = [3 * g for g in gradient_sequence(rng, 1)[0]]
    applied = one_sgd_step(rng, grads, clipvalue=0.7)
    for a, g in zip(applied, grads):
        t = torch.tensor(g)
        t.grad = t.clone()
        torch.nn.utils.clip_grad_value_([t], 0.7)
        np.testing.assert_allclose(a, np.clip(g, -0.7, 0.7), **TIGHT)
        np.testing.assert_allclose(a, t.grad.numpy(), **TIGHT)


def test_regularizer_gradient_is_added_before_clipping_without_touching_grad(rng):
    layer = make_weights(rng)
    kernel, bias = layer.trainable_variables
    kernel.regularizer = regularizers.L1L2(l1=0.01, l2=0.2)
    start = layer.get_weights()
    grads = gradient_sequence(rng, 1)[0]
    opt = optimizers.SGD(learning_rate=0.5, clipnorm=1.0)
    run(opt, layer, [grads])
    total = grads[0] + 0.01 * np.sign(start[0]) + 0.4 * start[0]
    clipped = total / max(1.0, np.sqrt((total ** 2).sum()))
    np.testing.assert_allclose(kernel.value, start[0] - 0.5 * clipped, **TIGHT)
    np.testing.assert_array_equal(kernel.grad, grads[0])   # var.grad is left as the layer left it


def test_only_one_clipping_is_allowed():
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(ValueError, match="only one of"):
        optimizers.SGD(clipnorm=1.0, clipvalue=0.5)


# ----- fused calls, grouping, bookkeeping -------------------------------------------
def test_one_fused_call_per_step_per_device_and_dtype(rng, monkeypatch):
    calls = []
    real_update = ops.adam_update

    def counting_update(params, *args, **kwargs):
        calls.append(len(params))
        return real_update(params, *args, **kwargs)

    monkeypatch.setattr(ops, "adam_update", counting_update)
    single, double = make_weights(rng, "float32"), make_weights(rng, "float64")
    starts = single.get_weights() + double.get_weights()
    grads = gradient_sequence(rng, 3)
    opt = optimizers.Adam(0.01)
    for step in grads:
        for layer in (single, double):
            for var, g in zip(layer.trainable_variables, step):
                var.grad[...] = g
        opt.step(single.trainable_variables + double.trainable_variables)
    assert calls == [2, 2] * 3   # float32 group and float64 group, both variables each
    results = single.get_weights() + double.get_weights()
    for i, (p0, p) in enumerate(zip(starts, results)):
        expected = ref_adam(p0.astype(np.float64), [g[i % 2] for g in grads], learning_rate=0.01)
        np.testing.assert_allclose(p, expected, rtol=1e-5 if p.dtype == np.float32 else 1e-11,
                                   atol=1e-6 if p.dtype == np.float32 else 1e-13)


def test_step_skips_frozen_weights_and_leaves_gradients(rng):
    layer = make_weights(rng)
    frozen = make_weights(rng)
    frozen.trainable = False
    layer.trainable_variables[1].trainable = False
    start, frozen_start = layer.get_weights(), frozen.get_weights()
    opt = optimizers.SGD(0.1)
    grads = gradient_sequence(rng, 1)
    run(opt, layer, grads)
    for var in frozen.variables:
        var.grad[...] = 1.0
    opt.step(frozen)   # nothing trainable: a no-op that does not count as a step
    assert opt.iterations == 1
    np.testing.assert_allclose(layer.get_weights()[0], start[0] - 0.1 * grads[0][0], **TIGHT)
    np.testing.assert_array_equal(layer.get_weights()[1], start[1])
    np.testing.assert_array_equal(layer.variables[0].grad, grads[0][0])   # not zeroed
    for w, w0 in zip(frozen.get_weights(), frozen_start):
        np.testing.assert_array_equal(w, w0)


def test_step_rejects_other_arguments():
    with pytest.raises(TypeError, match="SGD.step expects a layer or model"):
        optimizers.SGD().step(3)
    with pytest.raises(TypeError, match="holding ndarray"):
        optimizers.SGD().step([np.zeros(3)])


# ----- learning rate and schedules ------------------------------------------------
@pytest.mark.parametrize("staircase", [False, True])
def test_exponential_decay_values(staircase):
    schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5,
                                                     staircase=staircase)
    for step in [0, 1, 3, 4, 7, 10]:
        exponent = step // 4 if staircase else step / 4
        assert schedule(step) == pytest.approx(0.1 * 0.5 ** exponent, rel=1e-15)


def test_schedule_drives_the_learning_rate_of_each_step(rng):
    schedule = optimizers.schedules.ExponentialDecay(0.5, decay_steps=2, decay_rate=0.1)
    layer = make_weights(rng)
    start = layer.get_weights()[0]
    opt = optimizers.SGD(learning_rate=schedule)
    assert opt.learning_rate == pytest.approx(0.5)
    grads = [[np.ones(s) for s in SHAPES]] * 3
    run(opt, layer, grads)
    # Step k uses schedule(k): the learning rate is evaluated before iterations increments.
    moved = sum(0.5 * 0.1 ** (k / 2) for k in range(3))
    np.testing.assert_allclose(layer.get_weights()[0], start - moved, **TIGHT)
    assert opt.learning_rate == pytest.approx(0.5 * 0.1 ** 1.5)
    # As in Keras 3, a number cannot replace the schedule (ReduceLROnPlateau raises too).
    with pytest.raises(TypeError, match="created with a LearningRateSchedule"):
        opt.learning_rate = 0.25
    assert opt.learning_rate_schedule is schedule


def test_learning_rate_setter_validates():
    opt = optimizers.Adam()
    opt.learning_rate = 0.0   # callbacks may anneal to exactly zero
    with pytest.raises(ValueError, match="Adam: learning_rate must be a number >= 0"):
        opt.learning_rate = -0.1
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = float("nan")
    with pytest.raises(TypeError, match="learning_rate"):
        opt.learning_rate = "fast"


def test_schedule_config_round_trip():
    schedule = optimizers.schedules.ExponentialDecay(0.1, 100, 0.9, staircase=True)
    opt = optimizers.SGD(learning_rate=schedule, momentum=0.5)
    config = json.loads(json.dumps(optimizers.serialize(opt)))
    restored = optimizers.deserialize(config)
    assert isinstance(restored.learning_rate_schedule, optimizers.schedules.ExponentialDecay)
    assert restored.get_config() == opt.get_config()
    with pytest.raises(ValueError, match="decay_steps must be > 0"):
        optimizers.schedules.ExponentialDecay(0.1, 0, 0.9)


# ----- state for checkpoints -------------------------------------------------------
@pytest.mark.parametrize("factory", [
    lambda: optimizers.Adam(0.01), lambda: optimizers.SGD(0.1, momentum=0.9),
    lambda: optimizers.SGD(0.1), lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    lambda: optimizers.Adagrad(0.1), lambda: optimizers.Adadelta(1.0),
    lambda: optimizers.Adam(0.01, amsgrad=True), lambda: optimizers.Nadam(0.01),
    lambda: optimizers.Adamax(0.01), lambda: optimizers.Lion(0.01)])
def test_state_restores_training_exactly(factory, rng):
    layer = make_weights(rng)
    grads = gradient_sequence(rng, 5)
    opt = factory()
    run(opt, layer, grads[:3])
    state = opt.get_state()
    assert state["iterations"] == 3
    assert all(isinstance(a, np.ndarray) for a in state["slots"].values())
    clone = make_weights(rng)
    clone.set_weights(layer.get_weights())
    restored = factory()
    restored.set_state(state)   # before any step: applied on the first one
    assert restored.get_state()["slots"].keys() == state["slots"].keys()
    run(opt, layer, grads[3:])
    run(restored, clone, grads[3:])
    for a, b in zip(layer.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert restored.iterations == opt.iterations == 5
    # Restoring into an optimizer that has stepped replaces its slots at once.
    restored.set_state(opt.get_state())
    run(opt, layer, grads[:1])
    run(restored, clone, grads[:1])
    for a, b in zip(layer.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_state_is_a_copy_and_carries_the_learning_rate(rng):
    layer = make_weights(rng)
    opt = optimizers.Adam(0.01)
    run(opt, layer, gradient_sequence(rng, 1))
    opt.learning_rate = 0.003
    state = opt.get_state()
    state["slots"]["0/momentum"][...] = 123.0
    assert not np.any(opt.get_state()["slots"]["0/momentum"] == 123.0)
    fresh = optimizers.Adam()
    fresh.set_state(state)
    assert fresh.learning_rate == 0.003 and fresh.iterations == 1


def test_state_mismatches_raise(rng):
    layer = make_weights(rng)
    opt = optimizers.Adam(0.01)
    run(opt, layer, gradient_sequence(rng, 1))
    state = opt.get_state()
    other = make_weights(rng, shapes=[(2, 2), (4,)])
    restored = optimizers.Adam(0.01)
    restored.set_state(state)
    with pytest.raises(ValueError, match=r"Adam: restored slot 'momentum' .* shape \(3, 4\), expected \(2, 2\)"):
        restored.step(other)
    with pytest.raises(ValueError, match="slots for 2 variables but there are 1"):
        fresh = optimizers.Adam(0.01)
        fresh.set_state(state)
        fresh.step(other.trainable_variables[:1])
    with pytest.raises(ValueError, match="unexpected slot '0/velocity'"):
        optimizers.SGD(momentum=0.9).set_state(state)
    with pytest.raises(ValueError, match="iterations must be an int >= 0"):
        optimizers.Adam().set_state({"iterations": -1, "slots": {}})
    with pytest.raises(TypeError, match="expects the dict returned by get_state"):
        optimizers.Adam().set_state([1, 2])


@pytest.mark.cuda
def test_slots_follow_the_model_between_devices(rng):
    cupy = pytest.importorskip("cupy")
    grads = gradient_sequence(rng, 4)
    cpu_layer = make_weights(rng, "float32")
    gpu_layer = make_weights(rng, "float32")
    gpu_layer.set_weights(cpu_layer.get_weights())
    cpu_opt, gpu_opt = optimizers.Adam(0.01), optimizers.Adam(0.01)
    run(cpu_opt, cpu_layer, grads[:2])
    gpu_layer.to("cuda")
    for step in grads[:2]:
        for var, g in zip(gpu_layer.trainable_variables, step):
            var.grad[...] = cupy.asarray(g, dtype=np.float32)
        gpu_opt.step(gpu_layer)
    assert all(isinstance(a, cupy.ndarray) for a in gpu_opt._slots[id(gpu_layer.variables[0])].values())
    gpu_layer.to("cpu")   # the slots come along on the next step
    run(cpu_opt, cpu_layer, grads[2:])
    run(gpu_opt, gpu_layer, grads[2:])
    for a, b in zip(cpu_layer.get_weights(), gpu_layer.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)   # float32, two kernels


# ----- names, configuration, validation ---------------------------------------------
def test_keras_defaults_and_names():
    fd.utils.clear_session()  # automatic names count from here (adam, then adam_1, ...)
    assert optimizers.SGD().get_config() == {
        "name": "sgd", "learning_rate": 0.01, "weight_decay": None, "clipnorm": None,
        "global_clipnorm": None, "clipvalue": None, "momentum": 0.0, "nesterov": False}
    adam = optimizers.Adam()
    assert (adam.name, adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.amsgrad) \
        == ("adam", 0.001, 0.9, 0.999, 1e-7, False)
    adamw = optimizers.AdamW()
    assert (adamw.weight_decay, adamw.name) == (0.004, "adam_w")
    rms = optimizers.RMSprop()
    assert (rms.name, rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) \
        == ("rm_sprop", 0.001, 0.9, 0.0, 1e-7, False)
    ada = optimizers.Adagrad()
    assert (ada.name, ada.learning_rate, ada.initial_accumulator_value, ada.epsilon) \
        == ("adagrad", 0.001, 0.1, 1e-7)
    delta = optimizers.Adadelta()
    assert (delta.name, delta.learning_rate, delta.rho, delta.epsilon) \
        == ("adadelta", 0.001, 0.95, 1e-7)


@pytest.mark.parametrize("name, cls", [
    ("adam", optimizers.Adam), ("Adam", optimizers.Adam), ("sgd", optimizers.SGD),
    ("SGD", optimizers.SGD), ("rmsprop", optimizers.RMSprop), ("RMSprop", optimizers.RMSprop),
    ("adamw", optimizers.AdamW), ("adagrad", optimizers.Adagrad),
    ("adadelta", optimizers.Adadelta), ("nadam", optimizers.Nadam), ("Nadam", optimizers.Nadam),
    ("adamax", optimizers.Adamax), ("Adamax", optimizers.Adamax), ("lion", optimizers.Lion),
    ("Lion", optimizers.Lion)])
def test_get_by_name(name, cls):
    opt = optimizers.get(name)
    assert type(opt) is cls
    assert optimizers.get(opt) is opt


@pytest.mark.parametrize("opt", [
    optimizers.SGD(0.1, momentum=0.9, nesterov=True, clipnorm=1.0),
    optimizers.Adam(0.002, beta_1=0.8, amsgrad=True, global_clipnorm=2.0, name="g_opt"),
    optimizers.AdamW(0.003, weight_decay=0.01, clipvalue=0.5),
    optimizers.RMSprop(0.01, rho=0.8, momentum=0.1, centered=True, weight_decay=0.1),
    optimizers.Adagrad(0.1, initial_accumulator_value=0.5),
    optimizers.Adadelta(1.0, rho=0.9),
    optimizers.Nadam(0.002, beta_1=0.8, beta_2=0.99, epsilon=1e-6, clipnorm=1.0),
    optimizers.Adamax(0.003, beta_2=0.9, weight_decay=0.01, clipvalue=0.5),
    optimizers.Lion(optimizers.schedules.ExponentialDecay(1e-3, 10, 0.5), beta_1=0.8,
                    global_clipnorm=2.0, name="lion_opt")])
def test_serialize_round_trip(opt):
    config = json.loads(json.dumps(optimizers.serialize(opt)))
    restored = optimizers.deserialize(config)
    assert type(restored) is type(opt) and restored.get_config() == opt.get_config()


def test_get_errors():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        optimizers.get("adamm")
    with pytest.raises(TypeError, match="optimizer must be a name"):
        optimizers.get(0.1)
    with pytest.raises(ValueError, match="unknown optimizer class 'Ftrl'"):
        optimizers.deserialize({"class_name": "Ftrl", "config": {}})
    assert optimizers.get(None) is None


@pytest.mark.parametrize("factory, error, message", [
    (lambda: optimizers.SGD(learning_rate=0), ValueError, "SGD: learning_rate must be a number > 0, got 0"),
    (lambda: optimizers.Adam(learning_rate=-1e-3), ValueError, "Adam: learning_rate must be a number > 0"),
    (lambda: optimizers.Adam(learning_rate="0.1"), TypeError, "Adam: learning_rate must be"),
    (lambda: optimizers.SGD(momentum=1.0), ValueError, r"SGD: momentum must be a number in \[0, 1\), got 1.0"),
    (lambda: optimizers.SGD(momentum=-0.1), ValueError, "SGD: momentum"),
    (lambda: optimizers.Adam(beta_1=1.0), ValueError, r"Adam: beta_1 must be a number in \[0, 1\)"),
    (lambda: optimizers.Adam(beta_2=-0.5), ValueError, "Adam: beta_2"),
    (lambda: optimizers.Adam(epsilon=0.0), ValueError, "Adam: epsilon must be a number > 0"),
    (lambda: optimizers.AdamW(beta_1=2), ValueError, "AdamW: beta_1"),
    (lambda: optimizers.AdamW(weight_decay=None), ValueError, "AdamW: weight_decay"),
    (lambda: optimizers.Adam(weight_decay=-0.1), ValueError, "Adam: weight_decay must be None or a number >= 0"),
    (lambda: optimizers.RMSprop(rho=1.5), ValueError, "RMSprop: rho"),
    (lambda: optimizers.RMSprop(momentum=1.0), ValueError, "RMSprop: momentum"),
    (lambda: optimizers.RMSprop(epsilon=-1), ValueError, "RMSprop: epsilon"),
    (lambda: optimizers.Adagrad(initial_accumulator_value=-0.1), ValueError,
     "Adagrad: initial_accumulator_value must be a number >= 0"),
    (lambda: optimizers.Adagrad(epsilon=0), ValueError, "Adagrad: epsilon"),
    (lambda: optimizers.Adadelta(rho=1.0), ValueError, "Adadelta: rho"),
    (lambda: optimizers.SGD(clipnorm=0), ValueError, "SGD: clipnorm must be None or a number > 0"),
    (lambda: optimizers.SGD(global_clipnorm=-1), ValueError, "SGD: global_clipnorm"),
    (lambda: optimizers.SGD(clipvalue=float("inf")), ValueError, "SGD: clipvalue"),
    (lambda: optimizers.Adam(decay=0.1), TypeError, "Adam: unknown keyword argument"),
    (lambda: optimizers.Adam(name=""), ValueError, "name must be a non-empty string"),
    (lambda: optimizers.Nadam(beta_1=1.0), ValueError,
     r"Nadam: beta_1 must be a number in \[0, 1\)"),
    (lambda: optimizers.Nadam(beta_2=-0.1), ValueError, "Nadam: beta_2"),
    (lambda: optimizers.Nadam(epsilon=0), ValueError, "Nadam: epsilon must be a number > 0"),
    (lambda: optimizers.Nadam(momentum_decay=0.004), TypeError,
     "Nadam: unknown keyword argument.*momentum_decay"),
    (lambda: optimizers.Adamax(beta_1=1.5), ValueError, "Adamax: beta_1"),
    (lambda: optimizers.Adamax(beta_2=1.0), ValueError, "Adamax: beta_2"),
    (lambda: optimizers.Adamax(epsilon=-1e-7), ValueError, "Adamax: epsilon"),
    (lambda: optimizers.Lion(beta_1=0.0), ValueError,
     r"Lion: beta_1 must be a number in \(0, 1\], got 0.0"),
    (lambda: optimizers.Lion(beta_1=1.01), ValueError, "Lion: beta_1"),
    (lambda: optimizers.Lion(beta_2=1.0), ValueError, r"Lion: beta_2 must be a number in \[0, 1\)"),
    (lambda: optimizers.Lion(epsilon=1e-7), TypeError, "Lion: unknown keyword argument"),
    (lambda: optimizers.Lion(learning_rate=-1), ValueError, "Lion: learning_rate"),
])
def test_hyperparameter_validation(factory, error, message):
    with pytest.raises(error, match=message):
        factory()


# ----- Nadam, Adamax, Lion beyond the formula ---------------------------------------
def test_keras_defaults_of_nadam_adamax_lion():
    fd.utils.clear_session()  # automatic names count from here
    nadam, adamax, lion = optimizers.Nadam(), optimizers.Adamax(), optimizers.Lion()
    assert (nadam.name, nadam.learning_rate, nadam.beta_1, nadam.beta_2, nadam.epsilon) \
        == ("nadam", 0.001, 0.9, 0.999, 1e-7)
    assert (adamax.name, adamax.learning_rate, adamax.beta_1, adamax.beta_2, adamax.epsilon) \
        == ("adamax", 0.001, 0.9, 0.999, 1e-7)
    assert (lion.name, lion.learning_rate, lion.beta_1, lion.beta_2) == ("lion", 0.001, 0.9, 0.99)
    assert lion.get_config() == {
        "name": "lion", "learning_rate": 0.001, "weight_decay": None, "clipnorm": None,
        "global_clipnorm": None, "clipvalue": None, "beta_1": 0.9, "beta_2": 0.99}


@pytest.mark.parametrize("cls, reference", [
    (optimizers.Nadam, keras3.nadam), (optimizers.Adamax, keras3.adamax),
    (optimizers.Lion, keras3.lion)])
def test_schedule_and_global_clipnorm_feed_the_fused_update(cls, reference, rng):
    layer = make_weights(rng)
    start = layer.get_weights()
    # Scaled up so that the joint norm (~10) is clipped to 1 on every step.
    grads = [[5.0 * g for g in step] for step in gradient_sequence(rng, 5)]
    schedule = optimizers.schedules.ExponentialDecay(0.05, decay_steps=2, decay_rate=0.5)
    result = run(cls(learning_rate=schedule, global_clipnorm=1.0), layer, grads)
    clipped = []
    for step in grads:
        norm = np.sqrt(sum(float((g * g).sum()) for g in step))
        assert norm > 1.0
        clipped.append([g / norm for g in step])
    for i, (p0, p) in enumerate(zip(start, result)):
        expected = reference(p0, [g[i] for g in clipped], learning_rate=schedule)[0]
        np.testing.assert_allclose(p, expected, **TIGHT)


def test_nadam_advances_its_momentum_cache_once_per_step_across_dtype_groups(rng):
    """float64 and float32 weights are two fused calls in one step; both must see the
    same U_{t-1}, and the product must advance once."""
    wide, narrow = make_weights(rng, "float64"), make_weights(rng, "float32")
    variables = wide.trainable_variables + narrow.trainable_variables
    starts = [v.value.astype(np.float64) for v in variables]
    grads = gradient_sequence(rng, 4, SHAPES + SHAPES)
    opt = optimizers.Nadam(0.01)
    for step in grads:
        for var, g in zip(variables, step):
            var.grad[...] = g
        opt.step(variables)
    for i, (var, p0) in enumerate(zip(variables, starts)):
        expected, _, _, u_product = keras3.nadam(p0, [g[i].astype(var.value.dtype) for g in grads],
                                                 learning_rate=0.01)
        # float32 weights: a few float32 ulps per step on O(1) weights.
        tolerance = TIGHT if var.value.dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var.value, expected, **tolerance)
    assert opt.get_state()["u_product"] == pytest.approx(u_product, rel=1e-15)


def test_nadam_state_needs_its_momentum_cache(rng):
    layer = make_weights(rng)
    opt = optimizers.Nadam(0.01)
    run(opt, layer, gradient_sequence(rng, 2))
    state = opt.get_state()
    del state["u_product"]
    with pytest.raises(ValueError, match="Nadam.set_state: the state of a Nadam that has "
                                         "stepped must hold 'u_product'"):
        optimizers.Nadam().set_state(state)
    with pytest.raises(ValueError, match=r"u_product must be a number in \(0, 1\]"):
        optimizers.Nadam().set_state({**state, "u_product": 2.0})
    optimizers.Nadam().set_state({"iterations": 0, "slots": {}})   # a fresh state needs none


@pytest.mark.parametrize("optimizer", ["nadam", "adamax", "lion"])
def test_saved_model_continues_training_identically(optimizer, tmp_path, rng):
    x = rng.normal(size=(32, 5)).astype(np.float32)
    y = x @ rng.normal(size=(5, 2)).astype(np.float32)
    model = fd.models.Sequential([Dense(8, activation="tanh", input_shape=(5,)), Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    model.save(tmp_path / "model.safetensors")
    restored = fd.models.load_model(tmp_path / "model.safetensors")
    assert type(restored.optimizer) is type(model.optimizer)
    assert restored.optimizer.iterations == model.optimizer.iterations == 8
    for m in (model, restored):
        m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_apply_gradients_is_a_step_with_the_gradients_given(rng):
    # Keras's optimizer.apply_gradients(zip(grads, layer.trainable_weights)): the same
    # update as step() from gradient buffers holding those gradients (Adam keeps state,
    # so three steps), with the buffers left as they were.
    x = rng.standard_normal((8, 3)).astype(np.float32)
    by_step, by_apply = Dense(4), Dense(4)
    by_step.build((None, 3))
    by_apply.build((None, 3))
    by_apply.set_weights(by_step.get_weights())
    step_optimizer, apply_optimizer = optimizers.Adam(0.01), optimizers.Adam(0.01)
    for _ in range(3):
        by_step.zero_grad()
        by_step.forward(x, training=True)
        by_step.backward(np.ones((8, 4), np.float32))
        grads = [var.grad.copy() for var in by_step.trainable_weights]
        step_optimizer.step(by_step)
        apply_optimizer.apply_gradients(zip(grads, by_apply.trainable_weights))
    for got, want in zip(by_apply.get_weights(), by_step.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert all(not var.grad.any() for var in by_apply.trainable_weights)
    # A None gradient skips its variable (Keras); bad pairs are named.
    kernel, bias = by_apply.trainable_weights
    before = bias.value.copy()
    apply_optimizer.apply_gradients([(np.ones((3, 4)), kernel), (None, bias)])
    np.testing.assert_array_equal(bias.value, before)
    with pytest.raises(ValueError, match=r"gradient of .*kernel has shape \(4, 3\), expected"):
        apply_optimizer.apply_gradients([(np.ones((4, 3)), kernel)])
    with pytest.raises(TypeError, match="expected fusednn Variables.*got ndarray"):
        apply_optimizer.apply_gradients([(np.ones(4), np.zeros(4))])
    with pytest.raises(ValueError, match="one gradient per variable, got 1 gradients for 2"):
        apply_optimizer.apply([np.ones((3, 4))], by_apply.trainable_weights)
