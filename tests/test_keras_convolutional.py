"""The convolution layers against Keras 3's keras/src/layers/convolutional tests (v3.15.1):
conv_test.py, conv_transpose_test.py, depthwise_conv_test.py, separable_conv_test.py.
Their run_layer_test shape tables (weights counted as Keras counts them), their
correctness cases against a NumPy convolution of our own (direct sums over each window,
float64: exact to rounding, rtol 1e-10), their argument errors and constraints. Conv3D
and LoRA cases are left out: fusednn has no 3-D convolution and no LoRA."""
import numpy as np
import pytest

from fusednn import constraints, layers

from keras_layer_check import run_layer_check

F64 = {"dtype": "float64"}


def _tuple(value, rank):
    return (value,) * rank if isinstance(value, int) else tuple(value)


def np_conv(x, kernel, bias, strides, padding, data_format, dilation_rate, groups=1):
    """Keras's convolution in NumPy: x (N, *S, C) (or channels first), kernel
    (*K, C / groups, F); 'same' pads as TF (the extra position after), 'causal' all before."""
    if data_format == "channels_first":
        x = np.moveaxis(x, 1, -1)
    rank = x.ndim - 2
    strides, dilation = _tuple(strides, rank), _tuple(dilation_rate, rank)
    extent = [(k - 1) * d + 1 for k, d in zip(kernel.shape[:rank], dilation)]
    pads = []
    for n, e, s in zip(x.shape[1:-1], extent, strides):
        if padding == "valid":
            pads.append((0, 0))
        elif padding == "causal":
            pads.append((e - 1, 0))
        else:
            total = max((-(-n // s) - 1) * s + e - n, 0)
            pads.append((total // 2, total - total // 2))
    x = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out = [(n - e) // s + 1 for n, e, s in zip(x.shape[1:-1], extent, strides)]
    group_in, filters = kernel.shape[-2], kernel.shape[-1]
    group_out = filters // groups
    y = np.zeros((x.shape[0], *out, filters))
    for index in np.ndindex(*out):
        window = x[(slice(None),) + tuple(slice(i * s, i * s + e, d) for i, s, e, d in
                                          zip(index, strides, extent, dilation))]
        for g in range(groups):
            part = window[..., g * group_in:(g + 1) * group_in]
            weights = kernel[..., g * group_out:(g + 1) * group_out]
            y[(slice(None),) + index + (slice(g * group_out, (g + 1) * group_out),)] = \
                np.tensordot(part, weights, axes=rank + 1)
    y = y + (0 if bias is None else bias)
    return np.moveaxis(y, -1, 1) if data_format == "channels_first" else y


# ----- conv_test.py -----------------------------------------------------------------------

CONV1D_BASIC = [
    dict(filters=5, kernel_size=2, strides=1, padding="valid", data_format="channels_last",
         dilation_rate=1, groups=1, input_shape=(3, 5, 4), output_shape=(3, 4, 5)),
    dict(filters=6, kernel_size=2, strides=1, padding="same", data_format="channels_last",
         dilation_rate=(2,), groups=2, input_shape=(3, 4, 4), output_shape=(3, 4, 6)),
    dict(filters=6, kernel_size=2, strides=1, padding="causal", data_format="channels_last",
         dilation_rate=(2,), groups=2, input_shape=(3, 4, 4), output_shape=(3, 4, 6)),
    dict(filters=6, kernel_size=2, strides=(2,), padding="valid", data_format="channels_last",
         dilation_rate=1, groups=2, input_shape=(3, 5, 4), output_shape=(3, 2, 6)),
]
CONV2D_BASIC = [
    dict(filters=5, kernel_size=2, strides=1, padding="valid", data_format="channels_last",
         dilation_rate=1, groups=1, input_shape=(3, 5, 5, 4), output_shape=(3, 4, 4, 5)),
    dict(filters=6, kernel_size=2, strides=1, padding="same", data_format="channels_last",
         dilation_rate=(2, 2), groups=2, input_shape=(3, 4, 4, 4), output_shape=(3, 4, 4, 6)),
    dict(filters=6, kernel_size=(2, 2), strides=(2, 1), padding="valid",
         data_format="channels_last", dilation_rate=(1, 1), groups=2,
         input_shape=(3, 5, 5, 4), output_shape=(3, 2, 4, 6)),
]


@pytest.mark.parametrize("make, pattern", [
    (lambda: layers.Conv1D(filters=0, kernel_size=1), "filters"),
    (lambda: layers.Conv2D(filters=2, kernel_size=(1, 0)), r"kernel_size.*\(1, 0\)"),
    (lambda: layers.Conv2D(filters=2, kernel_size=(2, 2), strides=(1, 0)), r"strides.*\(1, 0\)"),
    (lambda: layers.Conv2D(filters=2, kernel_size=(2, 2), strides=2, dilation_rate=(2, 1)),
     "strides.*dilation_rate"),
    (lambda: layers.Conv2D(filters=5, kernel_size=(2, 2), groups=0), "groups"),
    (lambda: layers.Conv2D(filters=5, kernel_size=(2, 2), groups=2), "divisible"),
])
def test_conv_bad_init_args(make, pattern):
    # Keras: ConvBasicTest.test_bad_init_args (ValueError each; fusednn's own words).
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("cls, filters, kernel_size, strides, groups, input_shape, output_shape", [
    (layers.Conv1D, 6, 3, 1, 1, (None, 5, 4), (None, 3, 6)),
    (layers.Conv1D, 6, 2, 2, 2, (None, 5, 4), (None, 2, 6)),
    (layers.Conv2D, 6, 3, 1, 1, (None, 5, 5, 4), (None, 3, 3, 6)),
    (layers.Conv2D, 6, 2, 2, 2, (None, 5, 5, 4), (None, 2, 2, 6)),
])
def test_compute_output_shape(cls, filters, kernel_size, strides, groups, input_shape,
                              output_shape):
    # Keras: ConvBasicTest.test_compute_output_shape (the 1-D and 2-D cases).
    layer = cls(filters=filters, kernel_size=kernel_size, strides=strides, groups=groups)
    assert layer.compute_output_shape(input_shape) == output_shape


@pytest.mark.parametrize("cls, input_shape, kernel_size, dilation_rate", [
    (layers.Conv1D, (10, 3), 2, 10), (layers.Conv2D, (10, 10, 3), (2, 2), (10, 10))])
def test_conv_symbolic_invalid_configuration(cls, input_shape, kernel_size, dilation_rate):
    # Keras: ConvBasicTest.test_conv_symbolic_invalid_configuration (the dilated kernel,
    # extent 11, is larger than the input, 10: ValueError when called).
    inputs = layers.Input(shape=input_shape)
    with pytest.raises(ValueError):
        cls(filters=1, kernel_size=kernel_size, dilation_rate=dilation_rate)(inputs)


CONV1D_CORRECT = [
    dict(filters=5, kernel_size=2, strides=1, padding="valid", data_format="channels_last",
         dilation_rate=1, groups=1),
    dict(filters=6, kernel_size=2, strides=1, padding="same", data_format="channels_last",
         dilation_rate=(2,), groups=2),
    dict(filters=6, kernel_size=2, strides=1, padding="causal", data_format="channels_last",
         dilation_rate=(2,), groups=2),
    dict(filters=6, kernel_size=(2,), strides=(2,), padding="valid", data_format="channels_last",
         dilation_rate=1, groups=2),
    dict(filters=6, kernel_size=(2,), strides=(2,), padding="valid",
         data_format="channels_first", dilation_rate=1, groups=2),
]
CONV2D_CORRECT = [
    dict(filters=5, kernel_size=2, strides=1, padding="valid", data_format="channels_last",
         dilation_rate=1, groups=1),
    dict(filters=4, kernel_size=3, strides=2, padding="same", data_format="channels_last",
         dilation_rate=1, groups=1),
    dict(filters=6, kernel_size=2, strides=1, padding="same", data_format="channels_last",
         dilation_rate=(2, 2), groups=2),
    dict(filters=6, kernel_size=2, strides=1, padding="same", data_format="channels_last",
         dilation_rate=(2, 3), groups=2),
    dict(filters=6, kernel_size=(4, 3), strides=(2, 1), padding="valid",
         data_format="channels_last", dilation_rate=(1, 1), groups=2),
    dict(filters=6, kernel_size=(4, 3), strides=(2, 1), padding="valid",
         data_format="channels_first", dilation_rate=(1, 1), groups=2),
]


def test_conv_constraints():
    # Keras: ConvCorrectnessTest.test_conv_constraints.
    layer = layers.Conv2D(filters=4, kernel_size=3, kernel_constraint="non_neg")
    layer.build((None, 5, 5, 3))
    assert isinstance(layer.kernel.constraint, constraints.NonNeg)
    layer = layers.Conv2D(filters=4, kernel_size=3, bias_constraint="non_neg")
    layer.build((None, 5, 5, 3))
    assert isinstance(layer.bias.constraint, constraints.NonNeg)


def test_conv_raises_exception_on_zero_dims():
    with pytest.raises(ValueError):
        layers.Conv2D(6, [5, 5], 1, "valid").forward(np.random.default_rng(1).random((3, 4, 4, 4)))


# ----- conv_transpose_test.py ---------------------------------------------------------------

TRANSPOSE1D_BASIC = [
    dict(filters=5, kernel_size=2, strides=2, padding="valid", output_padding=None,
         data_format="channels_last", dilation_rate=1, input_shape=(2, 8, 4),
         output_shape=(2, 16, 5)),
    dict(filters=6, kernel_size=2, strides=3, padding="same", output_padding=2,
         data_format="channels_last", dilation_rate=(1,), input_shape=(2, 8, 4),
         output_shape=(2, 23, 6)),
    dict(filters=6, kernel_size=(2,), strides=(2,), padding="valid", output_padding=None,
         data_format="channels_last", dilation_rate=1, input_shape=(2, 8, 4),
         output_shape=(2, 16, 6)),
]
TRANSPOSE2D_BASIC = [
    dict(filters=5, kernel_size=2, strides=2, padding="valid", output_padding=None,
         data_format="channels_last", dilation_rate=1, input_shape=(2, 8, 8, 4),
         output_shape=(2, 16, 16, 5)),
    dict(filters=6, kernel_size=2, strides=3, padding="same", output_padding=2,
         data_format="channels_last", dilation_rate=(1, 1), input_shape=(2, 8, 8, 4),
         output_shape=(2, 23, 23, 6)),
    dict(filters=6, kernel_size=(2, 3), strides=(2, 1), padding="valid", output_padding=None,
         data_format="channels_first", dilation_rate=(1, 1), input_shape=(2, 4, 8, 8),
         output_shape=(2, 6, 16, 10)),
    dict(filters=2, kernel_size=(7, 7), strides=(16, 16), padding="valid", output_padding=None,
         data_format="channels_last", dilation_rate=(1, 1), input_shape=(1, 14, 14, 2),
         output_shape=(1, 224, 224, 2)),
]


@pytest.mark.parametrize("cls, input_shape", [(layers.Conv1DTranspose, (None, 4, 3)),
                                              (layers.Conv2DTranspose, (None, 4, 4, 3))])
def test_output_padding_serialization(cls, input_shape):
    # Keras: ConvTransposeBasicTest.test_output_padding_serialization.
    layer = cls(2, 3, strides=2, output_padding=1)
    config = layer.get_config()
    assert "output_padding" in config
    revived = cls.from_config(config)
    assert revived.output_padding == layer.output_padding
    assert revived.compute_output_shape(input_shape) == layer.compute_output_shape(input_shape)


@pytest.mark.parametrize("make", [
    lambda: layers.Conv1DTranspose(filters=0, kernel_size=1),
    lambda: layers.Conv2DTranspose(filters=2, kernel_size=(1, 0)),
    lambda: layers.Conv2DTranspose(filters=2, kernel_size=(2, 2), strides=(1, 0)),
    lambda: layers.Conv2DTranspose(filters=2, kernel_size=(2, 2), strides=(1, 1),
                                   output_padding=(1, 1)),
])
def test_conv_transpose_bad_init_args(make):
    # Keras: ConvTransposeBasicTest.test_bad_init_args (output_padding >= strides too).
    with pytest.raises(ValueError):
        make()


# ----- depthwise_conv_test.py ----------------------------------------------------------------

DEPTHWISE1D_BASIC = [
    dict(depth_multiplier=5, kernel_size=2, strides=1, padding="valid",
         data_format="channels_last", dilation_rate=1, input_shape=(3, 5, 4),
         output_shape=(3, 4, 20)),
    dict(depth_multiplier=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_last", dilation_rate=(2,), input_shape=(3, 4, 4),
         output_shape=(3, 4, 24)),
    dict(depth_multiplier=6, kernel_size=2, strides=(2,), padding="valid",
         data_format="channels_last", dilation_rate=1, input_shape=(3, 5, 4),
         output_shape=(3, 2, 24)),
    dict(depth_multiplier=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_first", dilation_rate=(2,), input_shape=(3, 4, 10),
         output_shape=(3, 24, 10)),
]
DEPTHWISE2D_BASIC = [
    dict(depth_multiplier=5, kernel_size=2, strides=1, padding="valid",
         data_format="channels_last", dilation_rate=1, input_shape=(3, 5, 5, 4),
         output_shape=(3, 4, 4, 20)),
    dict(depth_multiplier=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_last", dilation_rate=(2, 2), input_shape=(3, 4, 4, 4),
         output_shape=(3, 4, 4, 24)),
    dict(depth_multiplier=6, kernel_size=(2, 2), strides=(2, 2), padding="valid",
         data_format="channels_last", dilation_rate=(1, 1), input_shape=(3, 5, 5, 4),
         output_shape=(3, 2, 2, 24)),
]


@pytest.mark.parametrize("make, pattern", [
    (lambda: layers.DepthwiseConv1D(depth_multiplier=0, kernel_size=1), "depth_multiplier"),
    (lambda: layers.DepthwiseConv2D(depth_multiplier=2, kernel_size=(1, 0)), "kernel_size"),
    (lambda: layers.DepthwiseConv2D(depth_multiplier=2, kernel_size=(2, 2), strides=(1, 0)),
     "strides"),
    (lambda: layers.SeparableConv1D(depth_multiplier=0, filters=1, kernel_size=1),
     "depth_multiplier"),
    (lambda: layers.SeparableConv1D(depth_multiplier=1, filters=0, kernel_size=1), "filters"),
    (lambda: layers.SeparableConv2D(depth_multiplier=2, filters=2, kernel_size=(1, 0)),
     "kernel_size"),
    (lambda: layers.SeparableConv2D(depth_multiplier=2, filters=2, kernel_size=(2, 2),
                                    strides=(1, 0)), "strides"),
])
def test_depthwise_and_separable_bad_init_args(make, pattern):
    # Keras: DepthwiseConvBasicTest / SeparableConvBasicTest.test_bad_init_args.
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.DepthwiseConv1D(11, strides=5, padding="valid",
                                    data_format="channels_last"), (4, 10, 3)),
    (lambda: layers.DepthwiseConv2D(5, strides=2, padding="valid",
                                    data_format="channels_last"), (2, 4, 4, 3)),
    (lambda: layers.SeparableConv1D(2, 11, strides=5, padding="valid",
                                    data_format="channels_last"), (4, 10, 12)),
])
def test_invalid_output_shape_raises(make, shape):
    # Keras: test_invalid_output_shape_raises (a kernel larger than the input, eagerly).
    with pytest.raises(ValueError, match="kernel"):
        make().forward(np.random.default_rng(2).random(shape).astype(np.float32))


DEPTHWISE1D_CORRECT = [
    dict(depth_multiplier=5, kernel_size=2, strides=1, padding="valid",
         data_format="channels_last", dilation_rate=1),
    dict(depth_multiplier=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_last", dilation_rate=(2,)),
    dict(depth_multiplier=6, kernel_size=(2,), strides=(2,), padding="valid",
         data_format="channels_last", dilation_rate=1),
    dict(depth_multiplier=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_first", dilation_rate=(2,)),
]
DEPTHWISE2D_CORRECT = [
    dict(depth_multiplier=5, kernel_size=2, strides=1, padding="valid",
         data_format="channels_last", dilation_rate=1),
    dict(depth_multiplier=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_last", dilation_rate=(2, 2)),
    dict(depth_multiplier=6, kernel_size=(2, 2), strides=(2, 2), padding="valid",
         data_format="channels_last", dilation_rate=(1, 1)),
]


# ----- separable_conv_test.py ----------------------------------------------------------------

SEPARABLE1D_BASIC = [
    dict(depth_multiplier=5, filters=5, kernel_size=2, strides=1, padding="valid",
         data_format="channels_last", dilation_rate=1, input_shape=(3, 5, 4),
         output_shape=(3, 4, 5)),
    dict(depth_multiplier=6, filters=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_last", dilation_rate=(2,), input_shape=(3, 4, 4),
         output_shape=(3, 4, 6)),
    dict(depth_multiplier=6, filters=6, kernel_size=2, strides=(2,), padding="valid",
         data_format="channels_last", dilation_rate=1, input_shape=(3, 5, 4),
         output_shape=(3, 2, 6)),
]
SEPARABLE2D_BASIC = [
    dict(depth_multiplier=5, filters=5, kernel_size=2, strides=1, padding="valid",
         data_format="channels_last", dilation_rate=1, input_shape=(3, 5, 5, 4),
         output_shape=(3, 4, 4, 5)),
    dict(depth_multiplier=6, filters=6, kernel_size=2, strides=1, padding="same",
         data_format="channels_last", dilation_rate=(2, 2), input_shape=(3, 4, 4, 4),
         output_shape=(3, 4, 4, 6)),
    dict(depth_multiplier=6, filters=6, kernel_size=(2, 2), strides=(2, 2), padding="valid",
         data_format="channels_last", dilation_rate=(1, 1), input_shape=(3, 5, 5, 4),
         output_shape=(3, 2, 2, 6)),
]


# ----- the run_layer_test and correctness cases of every file above ----------------------------

BASIC = ([(layers.Conv1D, c, 2) for c in CONV1D_BASIC] + [(layers.Conv2D, c, 2) for c in CONV2D_BASIC]
         + [(layers.Conv1DTranspose, c, 2) for c in TRANSPOSE1D_BASIC]
         + [(layers.Conv2DTranspose, c, 2) for c in TRANSPOSE2D_BASIC]
         + [(layers.DepthwiseConv1D, c, 2) for c in DEPTHWISE1D_BASIC]
         + [(layers.DepthwiseConv2D, c, 2) for c in DEPTHWISE2D_BASIC]
         + [(layers.SeparableConv1D, c, 3) for c in SEPARABLE1D_BASIC]
         + [(layers.SeparableConv2D, c, 3) for c in SEPARABLE2D_BASIC])


@pytest.mark.parametrize("cls, case, trainable", BASIC,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(BASIC)])
def test_basic(cls, case, trainable):
    # Keras: test_conv1d_basic, test_conv2d_basic, test_conv1d/2d_transpose_basic,
    # test_depthwise_conv1d/2d_basic, test_separable_conv1d/2d_basic (run_layer_test).
    case = dict(case)
    input_shape, output_shape = case.pop("input_shape"), case.pop("output_shape")
    run_layer_check(cls, case, input_shape, output_shape,
                    expected_num_trainable_weights=trainable, supports_masking=False)


CORRECT = ([(layers.Conv1D, c, (2, 8, 4)) for c in CONV1D_CORRECT]
           + [(layers.Conv2D, c, (2, 8, 8, 4)) for c in CONV2D_CORRECT]
           + [(layers.DepthwiseConv1D, c, (2, 8, 4)) for c in DEPTHWISE1D_CORRECT]
           + [(layers.DepthwiseConv2D, c, (2, 8, 8, 4)) for c in DEPTHWISE2D_CORRECT])


@pytest.mark.parametrize("cls, case, shape", CORRECT,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CORRECT)])
def test_correctness(cls, case, shape):
    # Keras: ConvCorrectnessTest.test_conv1d/2d and DepthwiseConvCorrectnessTest.
    # test_depthwise_conv1d/2d (inputs (2, 8, 4) and (2, 8, 8, 4), random weights).
    rng = np.random.default_rng(0)
    layer = cls(**case, **F64)
    x = rng.normal(size=shape if case["data_format"] == "channels_last"
                   else (shape[0], shape[-1], *shape[1:-1]))
    layer.build(x.shape)
    kernel, bias = (rng.normal(size=w.shape) for w in layer.get_weights())
    layer.set_weights([kernel, bias])
    if "depth_multiplier" in case:
        # Depthwise = a grouped convolution with C groups: output channel c * M + m.
        kernel, groups = kernel.reshape(kernel.shape[:-2] + (1, -1)), shape[-1]
    else:
        groups = case["groups"]
    expected = np_conv(x, kernel, bias, case["strides"], case["padding"], case["data_format"],
                       case["dilation_rate"], groups)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls, rank", [(layers.SeparableConv1D, 1), (layers.SeparableConv2D, 2)])
@pytest.mark.parametrize("padding, dilation", [("valid", 1), ("same", 2)])
def test_separable_conv(cls, rank, padding, dilation):
    # Keras: SeparableConvCorrectnessTest: the depthwise step, then the 1x1 pointwise one.
    rng = np.random.default_rng(4)
    shape = (2, 8, 4) if rank == 1 else (2, 8, 8, 4)
    layer = cls(5, 2, depth_multiplier=3, padding=padding, dilation_rate=dilation, **F64)
    x = rng.normal(size=shape)
    layer.build(x.shape)
    depthwise, pointwise, bias = (rng.normal(size=w.shape) for w in layer.get_weights())
    layer.set_weights([depthwise, pointwise, bias])
    middle = np_conv(x, depthwise.reshape(depthwise.shape[:-2] + (1, -1)), None, 1, padding,
                     "channels_last", dilation, groups=4)
    expected = np_conv(middle, pointwise, bias, 1, "valid", "channels_last", 1)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-10, atol=1e-10)
