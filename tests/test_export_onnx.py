"""fusednn.export.onnx: every exportable layer, the lecture models and the demos' models
run in onnxruntime and match fusednn's predict, at two batch sizes (the batch axis is
dynamic); onnx.checker runs inside the export; unsupported layers are named."""
import numpy as np
import pytest

from fusednn import activations, export, layers, models
from fusednn.demos import autoencoder, cnn, denoising, gan, gru, lstm

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# float32 in both; the graphs compute the same formulas with other summation orders and
# other exp/tanh implementations: a few float32 ulps per operation (~1e-6 relative), which
# grow over a recurrence of ~10 steps and the sums of a few hundred products to ~1e-5.
TOL = {"rtol": 1e-4, "atol": 2e-5}
BATCHES = (1, 5)


def _randomized(model, seed=0):
    """The model with every weight random (biases and BatchNormalization statistics
    included, so none of them is at a default that would hide a wrong layout).
    Matrices are drawn at the fan-in scale of trained networks: with a larger gain a
    recurrence is chaotic and amplifies rounding differences exponentially (a 256-unit
    LSTM with N(0, 0.5^2) weights went from 1e-7 to 1.8 apart in 60 steps)."""
    rng = np.random.default_rng(seed)
    for var in model.variables:
        if var.name.endswith("moving_variance"):
            var.value[...] = rng.uniform(0.5, 1.5, size=var.shape)
        elif len(var.shape) >= 2:
            fan_in = int(np.prod(var.shape[:-1]))
            var.value[...] = rng.normal(scale=1.0 / np.sqrt(fan_in), size=var.shape)
        else:
            var.value[...] = rng.normal(scale=0.5, size=var.shape)
    return model


def _inputs(model, batch, seed):
    rng = np.random.default_rng(seed)
    shape = (batch,) + tuple(model.input_shape[1:])
    first = model.layers[0]
    if isinstance(first, layers.Embedding):
        return rng.integers(0, first.input_dim, size=shape).astype(np.int64)
    return rng.normal(size=shape).astype(np.float32)


def _check(model, tmp_path, opset=export.DEFAULT_OPSET, inputs=None):
    path = tmp_path / "model.onnx"
    export.onnx(model, path, opset=opset)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert session.get_inputs()[0].shape[0] == "batch"
    for seed, x in enumerate(inputs or [_inputs(model, b, b) for b in BATCHES]):
        (got,) = session.run(["output"], {"input": x})
        np.testing.assert_allclose(got, model.predict(x), **TOL)


def _sequential(*stack, input_shape):
    return _randomized(models.Sequential([layers.InputLayer(shape=input_shape), *stack]))


LAYER_CASES = {
    "dense": lambda: _sequential(layers.Dense(6, activation="relu"), layers.Dense(3),
                                 input_shape=(4,)),
    "dense_rank3_no_bias": lambda: _sequential(layers.Dense(5, use_bias=False),
                                               input_shape=(3, 4)),
    "conv2d_valid_strided": lambda: _sequential(layers.Conv2D(4, 3, strides=2,
                                                              activation="relu"),
                                                input_shape=(9, 8, 3)),
    "conv2d_same_dilated": lambda: _sequential(layers.Conv2D(3, (3, 2), padding="same",
                                                             dilation_rate=2,
                                                             activation="tanh"),
                                               input_shape=(7, 6, 2)),
    "conv1d_causal": lambda: _sequential(layers.Conv1D(4, 3, padding="causal", dilation_rate=2),
                                         input_shape=(10, 3)),
    "conv1d_same_strided": lambda: _sequential(layers.Conv1D(4, 4, strides=2, padding="same"),
                                               input_shape=(11, 3)),
    "conv2d_transpose_valid": lambda: _sequential(layers.Conv2DTranspose(3, 3, strides=2),
                                                  input_shape=(4, 5, 2)),
    "conv2d_transpose_same": lambda: _sequential(
        layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid"),
        input_shape=(4, 5, 2)),
    "conv2d_transpose_kernel_below_stride": lambda: _sequential(
        layers.Conv2DTranspose(2, 2, strides=3), input_shape=(3, 4, 2)),
    "conv2d_transpose_output_padding": lambda: _sequential(
        layers.Conv2DTranspose(2, 3, strides=2, padding="same", output_padding=0),
        input_shape=(3, 4, 2)),
    "conv2d_grouped": lambda: _sequential(layers.Conv2D(6, 3, groups=3, padding="same"),
                                          input_shape=(5, 6, 3)),
    "depthwise_and_separable": lambda: _sequential(
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
        layers.SeparableConv2D(5, 3, strides=2, depth_multiplier=2, activation="tanh"),
        input_shape=(8, 7, 3)),
    "depthwise_and_separable_1d": lambda: _sequential(
        layers.DepthwiseConv1D(2, dilation_rate=2), layers.SeparableConv1D(3, 3, use_bias=False),
        input_shape=(11, 2)),
    "channels_first": lambda: _sequential(
        layers.Conv2D(4, 3, data_format="channels_first", activation="relu"),
        layers.MaxPooling2D(data_format="channels_first"),
        layers.UpSampling2D(data_format="channels_first"),
        layers.ZeroPadding2D(1, data_format="channels_first"),
        layers.Cropping2D(((0, 1), (2, 0)), data_format="channels_first"),
        layers.Conv2DTranspose(2, 3, data_format="channels_first"),
        layers.GlobalAveragePooling2D(data_format="channels_first"), input_shape=(2, 8, 7)),
    "conv1d_channels_first": lambda: _sequential(
        layers.Conv1D(3, 2, data_format="channels_first"),
        layers.AveragePooling1D(2, data_format="channels_first"),
        layers.GlobalMaxPooling1D(data_format="channels_first", keepdims=True),
        input_shape=(4, 9)),
    "pool2d": lambda: _sequential(layers.MaxPooling2D(), layers.AveragePooling2D(
        3, strides=1, padding="same"), layers.MaxPooling2D(2, padding="same"),
        input_shape=(9, 7, 3)),
    "pool1d": lambda: _sequential(layers.MaxPooling1D(3, strides=2, padding="same"),
                                  layers.AveragePooling1D(2), input_shape=(11, 3)),
    "global_pool2d": lambda: _sequential(layers.GlobalMaxPooling2D(keepdims=True),
                                         layers.GlobalAveragePooling2D(), input_shape=(5, 4, 3)),
    "global_pool1d": lambda: _sequential(layers.GlobalAveragePooling1D(keepdims=True),
                                         layers.GlobalMaxPooling1D(), input_shape=(6, 3)),
    "upsampling": lambda: _sequential(layers.UpSampling2D((2, 3)), layers.Reshape((-1, 3)),
                                      layers.UpSampling1D(2), input_shape=(3, 2, 3)),
    "padding_and_cropping": lambda: _sequential(
        layers.ZeroPadding2D(((1, 2), (0, 3))), layers.Cropping2D(((2, 0), (1, 1))),
        input_shape=(4, 5, 2)),
    "batch_norm": lambda: _sequential(layers.Conv2D(3, 2), layers.BatchNormalization(),
                                      layers.Flatten(), layers.BatchNormalization(center=False),
                                      layers.Dropout(0.5), layers.Dense(2),
                                      input_shape=(4, 4, 2)),
    "batch_norm_axis1": lambda: _sequential(layers.BatchNormalization(axis=1, scale=False),
                                            input_shape=(3, 4)),
    "reshape_repeat_flatten": lambda: _sequential(layers.Reshape((2, -1)), layers.Flatten(),
                                                  layers.RepeatVector(3), input_shape=(3, 4)),
    "flatten_channels_first": lambda: _sequential(layers.Flatten(data_format="channels_first"),
                                                  input_shape=(2, 3, 4)),
    "time_distributed": lambda: _sequential(
        layers.TimeDistributed(layers.Dense(3, activation="softmax")), input_shape=(5, 4)),
    "time_distributed_conv": lambda: _sequential(
        layers.TimeDistributed(layers.Conv2D(2, 2)), input_shape=(3, 4, 4, 1)),
    "embedding": lambda: _sequential(layers.Embedding(12, 4), layers.Flatten(),
                                     input_shape=(5,)),
    "activation_layers": lambda: _sequential(
        layers.ReLU(max_value=1.0, negative_slope=0.1, threshold=0.2), layers.LeakyReLU(0.2),
        layers.ELU(0.7), layers.PReLU(shared_axes=[1]), layers.ReLU(max_value=0.8),
        layers.Softmax(axis=1), input_shape=(3, 4)),
}

for _cell, _rs in [(c, r) for c in ("lstm", "gru", "gru_reset_before", "rnn_tanh", "rnn_relu")
                   for r in (False, True)]:
    def _recurrent_case(cell=_cell, return_sequences=_rs):
        kind = {"lstm": layers.LSTM, "gru": layers.GRU, "gru_reset_before": layers.GRU,
                "rnn_tanh": layers.SimpleRNN, "rnn_relu": layers.SimpleRNN}[cell]
        options = {"gru_reset_before": {"reset_after": False},
                   "rnn_relu": {"activation": "relu"}}.get(cell, {})
        return _sequential(kind(4, return_sequences=True, **options),
                           kind(3, return_sequences=return_sequences, go_backwards=True,
                                **options),
                           layers.Bidirectional(kind(2, return_sequences=return_sequences,
                                                     **options))
                           if return_sequences else layers.Dense(2),
                           input_shape=(7, 3))
    LAYER_CASES[f"{_cell}_{'sequences' if _rs else 'last'}"] = _recurrent_case

for _mode in ("sum", "mul", "ave"):
    LAYER_CASES[f"bidirectional_{_mode}"] = lambda mode=_mode: _sequential(
        layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode=mode),
        layers.Bidirectional(layers.GRU(2), merge_mode=mode), input_shape=(6, 2))


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_layer_matches_onnxruntime(case, tmp_path):
    _check(LAYER_CASES[case](), tmp_path)


@pytest.mark.parametrize("name", sorted(n for n in activations._ACTIVATIONS.names()))
@pytest.mark.parametrize("opset", [export.MIN_OPSET, 20])
def test_every_activation(name, opset, tmp_path):
    function = activations.get(name)
    if name == "gelu":
        function = activations.GELU(approximate=opset == 20)
    _check(_sequential(layers.Dense(5, activation=function), input_shape=(4,)), tmp_path,
           opset=opset)


def _end_padded_ids(batch, steps, vocabulary, seed):
    """Ids with zeros (the padding id) after a random length >= 1 per sequence."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocabulary, size=(batch, steps))
    lengths = rng.integers(1, steps + 1, size=batch)
    ids[np.arange(steps)[None, :] >= lengths[:, None]] = 0
    return ids.astype(np.int64)


@pytest.mark.parametrize("cell", [layers.LSTM, layers.GRU, layers.SimpleRNN])
@pytest.mark.parametrize("sequences_out", [False, True])
def test_masks_become_sequence_lens(cell, sequences_out, tmp_path):
    """The last output of masked sequences, and (sequences_out) the outputs at padded
    steps, where fusednn repeats the forward direction's last output."""
    model = _sequential(layers.Embedding(9, 4, mask_zero=True), layers.Dropout(0.1),
                        cell(3, return_sequences=True),
                        layers.Bidirectional(cell(3, return_sequences=True)),
                        layers.Bidirectional(cell(2, return_sequences=sequences_out)),
                        input_shape=(6,))
    inputs = [_end_padded_ids(b, 6, 9, b) for b in (1, 7)]
    assert (inputs[1] == 0).any()  # some padding reaches the recurrent layers
    _check(model, tmp_path, inputs=inputs)


def test_masking_layer(tmp_path):
    model = _sequential(layers.Masking(0.0), layers.LSTM(3), input_shape=(5, 2))
    x = np.random.default_rng(4).normal(size=(4, 5, 2)).astype(np.float32)
    x[1, 3:] = 0.0
    x[2, 1:] = 0.0
    _check(model, tmp_path, inputs=[x[:1], x])


def test_lecture_and_demo_models(tmp_path):
    demo_models = [cnn.lecture_cnn(), lstm.lecture_lstm(), autoencoder.autoencoder(),
                   denoising.denoiser(), *gan.networks(), gru.row_reader()]
    for index, model in enumerate(demo_models):
        folder = tmp_path / str(index)
        folder.mkdir()
        _check(_randomized(model, index), folder)


def test_model_export_method_names_and_opset(tmp_path):
    model = _sequential(layers.Dense(2), input_shape=(3,))
    path = tmp_path / "m.onnx"
    model.export(path, format="onnx", opset=18, input_name="features", output_name="scores")
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == 18
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["scores"]
    x = np.ones((2, 3), np.float32)
    (got,) = ort.InferenceSession(str(path)).run(None, {"features": x})
    np.testing.assert_allclose(got, model.predict(x), **TOL)
    with pytest.raises(ValueError, match="unknown format 'tflite'"):
        model.export(path, format="tflite")


class _Doubling(layers.Layer):
    """A layer of the user's own: it has no exporter."""

    def call(self, x, training):
        return 2 * x, None

    def call_backward(self, dy, cache):
        return 2 * dy


def test_errors_name_what_is_wrong(tmp_path):
    path = tmp_path / "m.onnx"
    cases = [
        (_sequential(layers.Dense(2), _Doubling(name="twice"), input_shape=(3,)),
         {}, ValueError, "_Doubling 'twice': the layer class _Doubling has no ONNX export"),
        (_sequential(layers.Bidirectional(layers.LSTM(2), merge_mode=None), input_shape=(4, 3)),
         {}, ValueError, "merge_mode=None"),
        (_sequential(layers.Embedding(5, 2, mask_zero=True), layers.GlobalAveragePooling1D(),
                     input_shape=(4,)), {}, ValueError, "averages the unmasked steps"),
        (_sequential(layers.Conv1DTranspose(2, 3), input_shape=(5, 2)), {}, ValueError,
         "Conv1DTranspose has no ONNX export"),
        (_sequential(layers.UpSampling2D(interpolation="bilinear"), input_shape=(3, 3, 1)), {},
         ValueError, "interpolation 'bilinear' has no ONNX export"),
        (models.Sequential([layers.Dense(2)]), {}, ValueError, "not built"),
        (_sequential(layers.Dense(2), input_shape=(3,)), {"opset": 9}, ValueError,
         "opset to be an int from 14"),
        (_sequential(layers.Dense(2), input_shape=(3,)), {"input_name": "x", "output_name": "x"},
         ValueError, "must differ"),
        (layers.Dense(2), {}, TypeError, "Sequential or functional Model, got Dense"),
    ]
    for model, options, error, message in cases:
        with pytest.raises(error, match=message):
            export.onnx(model, path, **options)
        assert not path.exists()  # nothing is written when the export fails
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.onnx(_sequential(layers.Dense(2), input_shape=(3,)), tmp_path / "no" / "m.onnx")


def test_float64_model_exports_float32(tmp_path):
    model = _randomized(models.Sequential([layers.Dense(3, dtype="float64", input_shape=(4,))]))
    x = np.random.default_rng(5).normal(size=(3, 4))
    path = tmp_path / "m.onnx"
    export.onnx(model, path)
    (got,) = ort.InferenceSession(str(path)).run(None, {"input": x.astype(np.float32)})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, model.predict(x), **TOL)


def test_functional_model_with_merges_and_a_shared_layer(tmp_path):
    import fusednn as fd

    image = fd.Input((6, 6, 2), name="image")
    side = fd.Input((4,), name="side")
    features = layers.Flatten()(layers.Conv2D(3, 3, activation="relu")(image))
    shared = layers.Dense(4, activation="tanh")
    a, b = shared(layers.Dense(4)(features)), shared(side)
    merged = [layers.Add()([a, b]), layers.Subtract()([a, b]), layers.Multiply()([a, b]),
              layers.Average()([a, b]), layers.Maximum()([a, b]), layers.Minimum()([a, b])]
    scores = layers.Dense(3, activation="softmax", name="scores")(
        layers.Concatenate()(merged))
    model = _randomized(fd.Model([image, side], [scores, a]), 7)
    path = tmp_path / "graph.onnx"
    export.onnx(model, path)
    session = ort.InferenceSession(str(path))
    assert [i.name for i in session.get_inputs()] == ["image", "side"]
    assert [o.name for o in session.get_outputs()] == model.output_names
    for batch in BATCHES:
        rng = np.random.default_rng(batch)
        x = [rng.normal(size=(batch, 6, 6, 2)).astype(np.float32),
             rng.normal(size=(batch, 4)).astype(np.float32)]
        got = session.run(None, {"image": x[0], "side": x[1]})
        for g, expected in zip(got, model.forward(x)):
            np.testing.assert_allclose(g, expected, **TOL)


def test_functional_model_with_a_keyword_tensor_is_refused(tmp_path):
    import fusednn as fd

    x = fd.Input((5, 3))
    h0 = fd.Input((2,))
    y = layers.GRU(2)(x, initial_state=[h0])
    with pytest.raises(ValueError, match="keyword tensors"):
        export.onnx(fd.Model([x, h0], y), tmp_path / "m.onnx")


@pytest.mark.parametrize("axes, normalize, shapes", [
    (1, False, ((4,), (4,))), (1, True, ((4,), (4,))),
    ((2, 2), False, ((3, 4), (5, 4))), ((1, 2), True, ((3, 4), (5, 3)))])
def test_dot_exports(tmp_path, axes, normalize, shapes):
    import fusednn as fd

    a, b = fd.Input(shapes[0], name="a"), fd.Input(shapes[1], name="b")
    model = fd.Model([a, b], layers.Dot(axes=axes, normalize=normalize)([a, b]))
    path = tmp_path / "dot.onnx"
    export.onnx(model, path)
    session = ort.InferenceSession(str(path))
    for batch in BATCHES:
        rng = np.random.default_rng(batch)
        x = [rng.normal(size=(batch,) + shape).astype(np.float32) for shape in shapes]
        (got,) = session.run(None, {"a": x[0], "b": x[1]})
        np.testing.assert_allclose(got, model.forward(x), **TOL)
