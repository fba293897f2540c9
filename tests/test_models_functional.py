"""Functional models, fd.Model(inputs, outputs): the graph's forward and backward against
PyTorch and float64 finite differences, shared layers against a hand computation, nested
models, masks and call arguments along edges, save/load, training, and bad input.

Tolerances: float64 throughout. Against PyTorch the arithmetic is the same up to
summation order (sums of <= 16 products of O(1) values), so 1e-10 relative is far above
the rounding (~1e-15) and far below any wrong formula (O(1)). Finite differences use
tests/gradcheck.py (its error analysis: ~1e-9 here), checked to rtol 1e-5.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from gradcheck import numeric_gradient

import fusednn as fd
from fusednn import layers
from fusednn.errors import StateError

F64 = {"dtype": "float64"}
CLOSE = {"rtol": 1e-10, "atol": 1e-12}


def _rand(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def _two_branch_model():
    """Two inputs, two outputs, a shared layer called twice, a skip connection."""
    a, b = fd.Input((4,), name="a"), fd.Input((3,), name="b")
    ha = layers.Dense(5, activation="tanh", name="da", **F64)(a)
    hb = layers.Dense(5, name="db", **F64)(b)
    shared = layers.Dense(5, activation="sigmoid", name="shared", **F64)
    u = shared(layers.Add(name="add", **F64)([ha, hb]))
    v = shared(ha)
    joined = layers.Concatenate(name="join", **F64)([u, v, hb])
    out1 = layers.Dense(2, name="out1", **F64)(joined)
    out2 = layers.Multiply(name="out2", **F64)([u, v])
    return fd.Model(inputs=[a, b], outputs=[out1, out2], name="two_branch")


def test_graph_forward_and_backward_match_pytorch():
    torch = pytest.importorskip("torch")
    model = _two_branch_model()
    xa, xb = _rand((6, 4), (6, 3))
    outputs = model.forward([xa, xb], training=True)
    grads = _rand((6, 2), (6, 5), seed=1)
    model.zero_grad()
    dxa, dxb = model.backward(grads)
    ta, tb = (torch.tensor(x, requires_grad=True) for x in (xa, xb))
    weights = {v.name: torch.tensor(v.value, requires_grad=True) for v in model.weights}
    expected = _torch_graph_with(torch, weights, ta, tb)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want.detach().numpy(), **CLOSE)
    sum((torch.tensor(g) * o).sum() for g, o in zip(grads, expected)).backward()
    np.testing.assert_allclose(dxa, ta.grad.numpy(), **CLOSE)
    np.testing.assert_allclose(dxb, tb.grad.numpy(), **CLOSE)
    for var, grad in zip(model.weights, model.get_gradients()):
        np.testing.assert_allclose(grad, weights[var.name].grad.numpy(), **CLOSE,
                                   err_msg=var.name)


def _torch_graph_with(torch, w, a, b):
    """The two-branch model in PyTorch with the weights `w` (by fusednn name)."""
    def dense(x, name):
        return x @ w[f"{name}/kernel"] + w[f"{name}/bias"]

    ha = torch.tanh(dense(a, "da"))
    hb = dense(b, "db")
    u = torch.sigmoid(dense(ha + hb, "shared"))
    v = torch.sigmoid(dense(ha, "shared"))
    return [dense(torch.cat([u, v, hb], dim=-1), "out1"), u * v]


def _check_against_finite_differences(model, inputs, seed=2):
    """backward's input and weight gradients against float64 central differences of
    sum_i <g_i, output_i>."""
    given = inputs if len(inputs) > 1 else inputs[0]
    outputs = model.forward(given, training=True)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    grads = _rand(*[o.shape for o in outputs], seed=seed)
    model.zero_grad()
    dx = model.backward(grads if len(grads) > 1 else grads[0])
    dx = dx if isinstance(dx, list) else [dx]
    weight_grads = model.get_gradients()

    def loss():
        out = model.forward(given)
        out = out if isinstance(out, list) else [out]
        return float(sum(np.sum(g * o) for g, o in zip(grads, out)))

    for i, (x, d) in enumerate(zip(inputs, dx)):
        np.testing.assert_allclose(d, numeric_gradient(loss, x), rtol=1e-5, atol=1e-7,
                                   err_msg=f"input {i}")
    for var, grad in zip(model.weights, weight_grads):
        np.testing.assert_allclose(grad, numeric_gradient(loss, var.value), rtol=1e-5,
                                   atol=1e-7, err_msg=var.name)


def test_graph_backward_matches_finite_differences():
    _check_against_finite_differences(_two_branch_model(), _rand((3, 4), (3, 3)))


def test_shared_layer_keeps_one_cache_per_call_and_sums_its_gradients():
    # y = tanh(x1 W + c) + tanh(x2 W + c), one Dense called twice. By hand, with
    # y1, y2 the two calls' outputs and g the output gradient:
    #   dW = x1^T (g (1 - y1^2)) + x2^T (g (1 - y2^2)), dc = column sums of both,
    #   dx1 = (g (1 - y1^2)) W^T, dx2 = (g (1 - y2^2)) W^T.
    # Using only the last call's cache for both would give x1^T (g (1 - y2^2)) + ...
    x1_in, x2_in = fd.Input((3,)), fd.Input((3,))
    shared = layers.Dense(2, activation="tanh", name="shared", **F64)
    model = fd.Model([x1_in, x2_in], layers.Add(**F64)([shared(x1_in), shared(x2_in)]))
    assert [v.name for v in model.weights] == ["shared/kernel", "shared/bias"]
    assert model.count_params() == 3 * 2 + 2
    x1, x2, g = _rand((4, 3), (4, 3), (4, 2))
    W, c = model.get_weights()
    model.forward([x1, x2], training=True)
    model.zero_grad()
    dx1, dx2 = model.backward(g)
    y1, y2 = np.tanh(x1 @ W + c), np.tanh(x2 @ W + c)
    d1, d2 = g * (1 - y1 ** 2), g * (1 - y2 ** 2)
    dW, dc = model.get_gradients()
    np.testing.assert_allclose(dW, x1.T @ d1 + x2.T @ d2, **CLOSE)
    np.testing.assert_allclose(dc, d1.sum(0) + d2.sum(0), **CLOSE)
    np.testing.assert_allclose(dx1, d1 @ W.T, **CLOSE)
    np.testing.assert_allclose(dx2, d2 @ W.T, **CLOSE)


def test_a_tensor_feeding_several_layers_gets_the_sum_of_their_gradients():
    # y = x + 2x (Add of x and a linear Dense with kernel 2I, no bias): dx = 3g.
    x_in = fd.Input((3,))
    double = layers.Dense(3, use_bias=False, kernel_initializer="identity", **F64)
    model = fd.Model(x_in, layers.Add(**F64)([x_in, double(x_in)]))
    model.set_weights([2 * np.eye(3)])
    x, g = _rand((2, 3), (2, 3))
    np.testing.assert_allclose(model.forward(x, training=True), 3 * x, **CLOSE)
    np.testing.assert_allclose(model.backward(g), 3 * g, **CLOSE)


def _encoder_decoder():
    x_in = fd.Input((4,), name="x")
    encoder = fd.Model(x_in, layers.Dense(3, activation="tanh", name="enc_dense",
                                          **F64)(x_in), name="encoder")
    decoder = fd.Sequential([layers.Dense(5, activation="relu", name="dec_1", **F64),
                             layers.Dense(4, name="dec_2", **F64)], name="decoder")
    decoder.build((None, 3))
    return encoder, decoder


def test_nested_models_called_once_and_twice():
    encoder, decoder = _encoder_decoder()
    x_in = fd.Input((4,), name="outer_x")
    reconstruction = decoder(encoder(x_in))
    # The encoder again on a transformed input: a shared nested model (two stashes).
    again = encoder(layers.Dense(4, name="pre", **F64)(x_in))
    model = fd.Model(x_in, [reconstruction, again], name="autoencoder")
    # Keras's order: by depth from the inputs, ties in the order the outputs reach them.
    assert [l.name for l in model.layers] == ["outer_x", "encoder", "pre", "decoder"]
    assert model.weights[0].name == "enc_dense/kernel" and len(model.weights) == 2 + 2 + 4
    x = _rand((3, 4))[0]
    out = model.forward(x)
    np.testing.assert_allclose(out[0], decoder.forward(encoder.forward(x)), **CLOSE)
    _check_against_finite_differences(model, [x])


def test_graph_masks_and_recurrent_initial_state_tensors():
    # An encoder-decoder: the decoder LSTM starts from the encoder's states (tensors as
    # a call argument), the encoder reads an Embedding's mask along the edge.
    ids = fd.Input((5,), dtype="int32", name="ids")
    target = fd.Input((4, 2), name="target")
    embedded = layers.Embedding(6, 3, mask_zero=True, name="embed", **F64)(ids)
    _, h, c = layers.LSTM(3, return_state=True, name="encoder", **F64)(embedded)
    decoded = layers.LSTM(3, return_sequences=True, name="decoder", **F64)(
        target, initial_state=[h, c])
    model = fd.Model([ids, target], layers.Dense(2, name="head", **F64)(decoded))
    token_ids = np.array([[1, 2, 3, 0, 0], [4, 5, 1, 2, 3]])
    steps = _rand((2, 4, 2), seed=5)[0]
    out = model.forward([token_ids, steps])
    # The same numbers by hand through the layers: the mask reaches the encoder.
    embed, encoder, decoder, head = (model.get_layer(n) for n in
                                     ("embed", "encoder", "decoder", "head"))
    e = embed.forward(token_ids)
    _, h_ref, c_ref = encoder.forward(e, mask=token_ids != 0)
    expected = head.forward(decoder.forward(steps, initial_state=[h_ref, c_ref]))
    np.testing.assert_allclose(out, expected, **CLOSE)
    # Gradients: ids have none; the float input and every weight against differences.
    model.forward([token_ids, steps], training=True)
    g = _rand(out.shape, seed=7)[0]
    model.zero_grad()
    d_ids, d_steps = model.backward(g)
    assert d_ids is None
    weight_grads = model.get_gradients()

    def loss():
        return float(np.sum(model.forward([token_ids, steps]) * g))

    np.testing.assert_allclose(d_steps, numeric_gradient(loss, steps), rtol=1e-5, atol=1e-7)
    for var, grad in zip(model.weights, weight_grads):
        np.testing.assert_allclose(grad, numeric_gradient(loss, var.value), rtol=1e-5,
                                   atol=1e-7, err_msg=var.name)


def test_training_argument_recorded_in_the_graph():
    # Keras: a call with training=True runs in training mode whatever the model's mode.
    x_in = fd.Input((200,))
    model = fd.Model(x_in, layers.Dropout(0.5, seed=1)(x_in, training=True))
    out = model.forward(np.ones((2, 200)), training=False)
    assert set(np.unique(out)) == {0.0, 2.0}


def test_dict_inputs_and_outputs():
    a, b = fd.Input((2,), name="a"), fd.Input((3,), name="b")
    joined = layers.Concatenate(**F64)([a, b])
    model = fd.Model({"left": a, "right": b},
                     {"p": layers.Dense(1, name="p", **F64)(joined),
                      "q": layers.Dense(2, name="q", **F64)(joined)})
    assert model.input_names == ["left", "right"] and model.output_names == ["p", "q"]
    xa, xb = _rand((4, 2), (4, 3))
    out = model.forward({"right": xb, "left": xa}, training=True)
    assert list(out) == ["p", "q"] and out["p"].shape == (4, 1)
    # The same as the list form; a dict gradient may leave an output out (zeros).
    np.testing.assert_array_equal(out["q"], model.forward([xa, xb])["q"])
    model.forward([xa, xb], training=True)
    model.zero_grad()
    dxa, dxb = model.backward({"q": np.ones((4, 2))})
    q_kernel = model.get_layer("q").get_weights()[0]
    np.testing.assert_allclose(np.concatenate([dxa, dxb], axis=1),
                               np.ones((4, 2)) @ q_kernel.T, **CLOSE)


def test_layer_call_on_arrays_runs_forward():
    layer = layers.Dense(3, **F64)
    x = _rand((2, 4))[0]
    np.testing.assert_array_equal(layer(x), layer.forward(x))


def test_input_and_sequential_keep_working_together():
    tensor = fd.Input((8,), name="features", batch_size=4)
    assert tensor.shape == (4, 8) and tensor.dtype == np.float32
    model = fd.Sequential([fd.Input((8,)), layers.Dense(2)])
    assert model.built and model.count_params() == 18
    # A Sequential called on a symbolic tensor inside a graph.
    x_in = fd.Input((8,))
    graph = fd.Model(x_in, model(x_in))
    x = _rand((3, 8))[0].astype(np.float32)
    np.testing.assert_array_equal(graph.forward(x), model.forward(x))
    assert graph.weights[0] is model.weights[0]
    assert isinstance(graph, fd.Model) and isinstance(model, fd.Model)
    assert fd.models.Model is fd.Model


def test_get_layer_and_structure():
    model = _two_branch_model()
    assert [l.name for l in model.layers] == ["a", "b", "da", "db", "add", "shared", "join",
                                              "out1", "out2"]
    assert model.get_layer("shared") is model.layers[5] is model.get_layer(index=5)
    assert model.input_names == ["a", "b"] and model.output_names == ["out1", "out2"]
    assert [t.shape for t in model.inputs] == [(None, 4), (None, 3)]
    assert [t.shape for t in model.outputs] == [(None, 2), (None, 5)]
    assert model.compute_output_shape([(7, 4), (7, 3)]) == [(7, 2), (7, 5)]
    with pytest.raises(ValueError, match="no layer named 'nope'.*'shared'"):
        model.get_layer("nope")
    with pytest.raises(ValueError, match=r"index in \[0, 9\), got 9"):
        model.get_layer(index=9)
    with pytest.raises(ValueError, match="exactly one of name= or index="):
        model.get_layer()


def test_summary_has_keras_connected_to_column_and_counts():
    lines = []
    _two_branch_model().summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in lines[2]
    assert " a (InputLayer)                 [(None, 4)]          0           []" in lines
    assert any(line.startswith(" shared (Dense)") and "30" in line and
               "['add[0][0]', 'da[0][0]']" in line for line in lines)
    # Keras's counts: da 4*5+5, db 3*5+5, shared 5*5+5 once, out1 15*2+2.
    assert "Total params: 107" in text and "Trainable params: 107" in text


def test_parameter_count_of_the_keras_guide_multi_input_model():
    # The Keras functional API guide's ticket model (title, body, tags -> priority,
    # department); by Keras's formulas: two Embeddings 10000*64, LSTM(128) on 64
    # features 4*(128*(64+128)+128), LSTM(32) 4*(32*(64+32)+32), Dense(1) on 172
    # features 173, Dense(4) 172*4+4.
    title, body = fd.Input((None,), name="title"), fd.Input((None,), name="body")
    tags = fd.Input((12,), name="tags")
    title_features = layers.LSTM(128)(layers.Embedding(10000, 64)(title))
    body_features = layers.LSTM(32)(layers.Embedding(10000, 64)(body))
    x = layers.concatenate([title_features, body_features, tags])
    model = fd.Model([title, body, tags], [layers.Dense(1, name="priority")(x),
                                           layers.Dense(4, name="department")(x)])
    assert model.count_params() == 2 * 640_000 + 98_816 + 12_416 + 173 + 692
    assert model.output_names == ["priority", "department"]


def _round_trip_model():
    encoder, decoder = _encoder_decoder()
    a, b = fd.Input((4,), name="in_a"), fd.Input((4,), name="in_b")
    shared = layers.Dense(4, activation="tanh", name="shared", **F64)
    za, zb = encoder(shared(a)), encoder(shared(b))
    distance = layers.Dot(axes=1, normalize=True, name="cosine", **F64)([za, zb])
    return fd.Model([a, b], {"cosine": distance, "reconstruction": decoder(za)}, name="siamese")


def test_save_and_load_round_trip(tmp_path):
    model = _round_trip_model()
    rng = np.random.default_rng(4)
    model.set_weights([rng.standard_normal(w.shape) for w in model.get_weights()])
    model.compile(optimizer="adam", loss="mse")
    x = _rand((3, 4), (3, 4), seed=9)
    expected = model.forward(x)
    path = tmp_path / "siamese.keras"
    model.save(path)
    loaded = fd.models.load_model(path)
    assert type(loaded) is type(model) and loaded.name == "siamese"
    assert loaded.get_config() == model.get_config()
    assert [v.name for v in loaded.weights] == [v.name for v in model.weights]
    got = loaded.forward(x)
    for key in expected:  # the same weights and arithmetic: equal bit for bit
        np.testing.assert_array_equal(got[key], expected[key])
    assert loaded.get_layer("encoder").get_layer("enc_dense").dtype == np.float64


def test_a_nested_model_with_dict_inputs_and_outputs(tmp_path):
    a, b = fd.Input((2,), name="a"), fd.Input((3,), name="b")
    joined = layers.Concatenate(**F64)([a, layers.Dense(2, name="inner_b", **F64)(b)])
    inner = fd.Model({"a": a, "b": b}, {"sum": layers.Dense(2, name="sum", **F64)(joined),
                                        "b_out": layers.Dense(1, name="b_out", **F64)(b)},
                     name="inner")
    x, y = fd.Input((3,), name="x"), fd.Input((2,), name="y")
    parts = inner({"b": x, "a": y})  # keys in another order than the inner inputs
    assert sorted(parts) == ["b_out", "sum"] and parts["sum"].shape == (None, 2)
    model = fd.Model([x, y], layers.Multiply(**F64)([parts["sum"], parts["b_out"]]))
    xs = _rand((3, 3), (3, 2))
    inner_out = inner.forward({"a": xs[1], "b": xs[0]})
    np.testing.assert_allclose(model.forward(xs), inner_out["sum"] * inner_out["b_out"],
                               **CLOSE)
    _check_against_finite_differences(model, xs)
    model.save(tmp_path / "model.keras")
    loaded = fd.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.forward(xs), model.forward(xs))


def test_a_graph_inside_a_sequential_trains_saves_and_loads(tmp_path):
    x_in = fd.Input((4,))
    block = fd.Model(x_in, layers.Add(**F64)([x_in, layers.Dense(4, **F64)(x_in)]),
                     name="residual")
    model = fd.Sequential([fd.Input((4,)), block, layers.Dense(2, **F64)])
    assert [type(l).__name__ for l in model.layers] == ["Functional", "Dense"]
    x = _rand((3, 4))[0]
    _check_against_finite_differences(model, [x])
    model.save(tmp_path / "model.keras")
    loaded = fd.models.load_model(tmp_path / "model.keras")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


def _saved_config(model):
    return json.loads(json.dumps({"class_name": "Functional", "config": model.get_config()}))


def test_loading_refuses_unknown_layers_and_cycles(tmp_path):
    x_in = fd.Input((3,), name="x")
    first = layers.Dense(3, name="first")(x_in)
    model = fd.Model(x_in, layers.Dense(2, name="second")(first))
    config = _saved_config(model)["config"]
    unknown = json.loads(json.dumps(config))
    unknown["layers"][1]["class_name"] = "Evil"
    with pytest.raises(ValueError, match="unknown layer class 'Evil'"):
        fd.models.Functional.from_config(unknown)
    cyclic = json.loads(json.dumps(config))
    by_name = {item["config"]["name"]: item for item in cyclic["layers"]}
    by_name["first"]["inbound_nodes"][0]["args"] = {"__tensor__": ["second", 0, 0]}
    with pytest.raises(ValueError, match=r"never get their inputs.*cycle"):
        fd.models.Functional.from_config(cyclic)
    missing = json.loads(json.dumps(config))
    missing["layers"][1]["inbound_nodes"][0]["args"] = {"__tensor__": ["ghost", 0, 0]}
    with pytest.raises(ValueError, match="layer 'ghost', which is not in the config"):
        fd.models.Functional.from_config(missing)
    malformed = json.loads(json.dumps(config))
    malformed["layers"][1]["inbound_nodes"][0]["args"] = {"__tensor__": ["x", "0"]}
    with pytest.raises(ValueError, match=r"expected a tensor reference \[layer name"):
        fd.models.Functional.from_config(malformed)
    # Through a file: the refusal comes from load_model, before any weight is read.
    path = tmp_path / "model.keras"
    model.save(path)
    tensors, metadata = fd.io.read_safetensors(path)
    metadata["fusednn_config"] = json.dumps({"class_name": "Functional", "config": unknown})
    fd.io.write_safetensors(path, tensors, metadata)
    with pytest.raises(ValueError, match="unknown layer class 'Evil'"):
        fd.models.load_model(path)


def test_fit_on_a_two_branch_problem_learns():
    # The label is the sign of x0 * x1 (XOR-like: no linear model gets past ~50%), one
    # input feeding two branches joined by Concatenate; a softmax output (the fused
    # cross-entropy path of the training loop).
    fd.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(600, 2)).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
    x_in = fd.Input((2,))
    relu = layers.Dense(16, activation="relu")(x_in)
    tanh = layers.Dense(16, activation="tanh")(x_in)
    out = layers.Dense(2, activation="softmax")(layers.Concatenate()([relu, tanh]))
    model = fd.Model(x_in, out)
    assert model.outputs_softmax
    model.compile(optimizer=fd.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=40, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.9
    assert model.predict(x[:5]).shape == (5, 2)


def test_a_chain_graph_trains_exactly_as_the_same_sequential():
    # The same layers, weights, data and order: the same arithmetic, step for step.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = rng.standard_normal((64, 2)).astype(np.float32)
    sequential = fd.Sequential([fd.Input((5,)), layers.Dense(8, activation="tanh"),
                                layers.Dense(2)])
    x_in = fd.Input((5,))
    graph = fd.Model(x_in, layers.Dense(2)(layers.Dense(8, activation="tanh")(x_in)))
    graph.set_weights(sequential.get_weights())
    histories = []
    for model in (sequential, graph):
        model.compile(optimizer="sgd", loss="mse")
        histories.append(model.fit(x, y, epochs=3, batch_size=16, shuffle=False,
                                   verbose=0).history["loss"])
    np.testing.assert_array_equal(histories[0], histories[1])
    for got, want in zip(graph.get_weights(), sequential.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_frozen_layer_gets_no_gradient_in_the_graph():
    model = _two_branch_model()
    model.get_layer("shared").trainable = False
    names = {v.name for v in model.trainable_weights}
    assert "shared/kernel" not in names and "da/kernel" in names
    model.forward(_rand((2, 4), (2, 3)), training=True)
    model.zero_grad()
    model.backward(_rand((2, 2), (2, 5)))
    shared_grads = [g for v, g in zip(model.weights, model.get_gradients())
                    if v.name.startswith("shared/")]
    assert all(not g.any() for g in shared_grads)


# ----- bad input: each a clear error naming what was expected -------------------------------

def test_inputs_must_be_input_tensors():
    x_in = fd.Input((3,), name="x")
    hidden = layers.Dense(2, name="hidden")(x_in)
    with pytest.raises(ValueError, match=r"inputs must be tensors made by fd.Input.*Dense "
                                         r"'hidden'"):
        fd.Model(hidden, layers.Dense(1)(hidden))
    with pytest.raises(TypeError, match="expected inputs to be symbolic tensors.*ndarray"):
        fd.Model(np.ones((2, 3)), hidden)
    with pytest.raises(TypeError, match="expected outputs to be symbolic tensors.*Dense"):
        fd.Model(x_in, layers.Dense(1))
    with pytest.raises(ValueError, match="the same Input tensor is given twice"):
        fd.Model([x_in, x_in], hidden)


def test_disconnected_graphs_and_unused_inputs():
    a, b = fd.Input((3,), name="a"), fd.Input((3,), name="b")
    from_b = layers.Dense(2)(b)
    with pytest.raises(ValueError, match=r"graph disconnected.*input 'b'.*inputs \['a'\]"):
        fd.Model(a, layers.Add()([layers.Dense(2)(a), from_b]))
    with pytest.raises(ValueError, match=r"do not depend on the input\(s\) \['b'\]"):
        fd.Model([a, b], layers.Dense(2)(a))


def test_duplicate_layer_names():
    x_in = fd.Input((3,))
    first = layers.Dense(3, name="same")(x_in)
    with pytest.raises(ValueError, match=r"layer names must be unique.*\['same'\]"):
        fd.Model(x_in, layers.Dense(2, name="same")(first))


def test_wrong_number_of_inputs_and_unknown_dict_keys():
    model = _two_branch_model()
    xa, xb = _rand((2, 4), (2, 3))
    with pytest.raises(ValueError, match=r"expected 2 inputs, one per input \['a', 'b'\].*"
                                         r"a list of length 3"):
        model.forward([xa, xb, xb])
    with pytest.raises(ValueError, match=r"expected 2 inputs.*got ndarray"):
        model.forward(xa)
    with pytest.raises(ValueError, match=r"\['c'\] name no input"):
        model.forward({"a": xa, "c": xb})
    with pytest.raises(ValueError, match=r"\['b'\] missing"):
        model.forward({"a": xa})
    with pytest.raises(ValueError, match=r"InputLayer 'b'.*size 3 on axis 1"):
        model.forward([xa, xa])


def test_backward_checks():
    model = _two_branch_model()
    with pytest.raises(StateError, match="needs a preceding forward"):
        model.backward([np.ones((2, 2)), np.ones((2, 5))])
    model.forward(_rand((2, 4), (2, 3)), training=True)
    with pytest.raises(ValueError, match=r"expected 2 gradient\(s\), one per output "
                                         r"\['out1', 'out2'\].*length 1"):
        model.backward([np.ones((2, 2))])
    with pytest.raises(ValueError, match=r"shape \(2, 5\) for output 'out2', got \(2, 4\)"):
        model.backward([np.ones((2, 2)), np.ones((2, 4))])
    with pytest.raises(ValueError, match=r"\['nope'\], which name no output"):
        model.backward({"nope": np.ones((2, 2))})


def test_symbolic_calls_refuse_mixing_and_bad_arguments():
    x_in = fd.Input((3,))
    with pytest.raises(TypeError, match="on symbolic tensors or on arrays, not on a mix"):
        layers.Add()([x_in, np.ones((2, 3))])
    with pytest.raises(TypeError, match="mask= cannot be given to a symbolic call"):
        layers.Dense(2)(x_in, mask=x_in)
    with pytest.raises(TypeError, match="is symbolic"):
        np.asarray(x_in)
    with pytest.raises(ValueError, match=r"Dense 'd'.*size 4 on axis -1, got shape "
                                         r"\(None, 3\)"):
        dense = layers.Dense(2, name="d")
        dense(fd.Input((4,)))
        dense(x_in)
    with pytest.raises(TypeError, match="Input 'ids'.*numeric dtype"):
        fd.Input((3,), dtype="U3", name="ids")


def test_frozen_base_called_in_inference_mode_trains_the_head():
    # keras-io's transfer learning: base_model.trainable = False, x = base_model(inputs,
    # training=False), a new head on top. Nothing reads the base's backward in a training
    # step, so it is skipped; the head learns as the same head on the base's fixed outputs.
    layers = fd.layers
    fd.utils.set_random_seed(3)
    base = fd.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                          layers.BatchNormalization()])
    base.trainable = False
    inputs = fd.Input((4,))
    head = layers.Dense(1)
    model = fd.Model(inputs, head(base(inputs, training=False)))
    model.compile(optimizer=fd.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    y = rng.standard_normal((32, 1)).astype(np.float32)
    features = base.predict(x, verbose=0)
    base_before = [w.copy() for w in base.get_weights()]
    twin = fd.Sequential([layers.Dense(1, input_shape=(8,))])
    twin.build((None, 8))
    twin.set_weights(head.get_weights())
    twin.compile(optimizer=fd.optimizers.SGD(0.1), loss="mse")
    for _ in range(3):
        loss = model.train_on_batch(x, y)
        twin_loss = twin.train_on_batch(features, y)
        np.testing.assert_allclose(loss, twin_loss, rtol=1e-5)
    for got, want in zip(base.get_weights(), base_before):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(head.get_weights()[0], twin.get_weights()[0], rtol=1e-5,
                               atol=1e-6)

    # Unfrozen, its gradient is needed, which an inference-mode call cannot give: said so.
    base.trainable = True
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(StateError, match=r"was called with training=False.*freeze it"):
        model.train_on_batch(x, y)
