"""Bad input never crashes the interpreter and never reaches a kernel.

Every case in CASES is a user mistake that must raise ValueError, TypeError or
IndexError whose message names the layer or op, what it expected and what it
received. Calls in the wrong order (backward before a training forward, fit before
compile) raise fusednn.errors.StateError, a ValueError that is also the RuntimeError
Keras 2 and PyTorch raise there.

The cases run in one child process (this file run as a script), so that a
segfault or abort in native code fails the test of the case that caused it
instead of killing pytest; faulthandler prints the crashing stack. The child
replaces every kernel entry point of fusednn._C with a recorder, so the test also
checks that the error was raised before any kernel ran (a case's `setup` may run
kernels, e.g. a training forward before a bad backward; only `run` is watched).

A new layer's cases are one line each: Case(id, run, error, who, expected, received).
"""
from __future__ import annotations

import faulthandler
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import fusednn as fd
import fusednn.models as models
from fusednn import layers, losses, ops, optimizers
from fusednn.ops import gemm


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable          # run() or run(setup()) must raise `error`
    error: type
    who: str               # the layer / op / loss the message must name
    expected: str          # what it expected (a fragment of the message)
    received: str          # what it received (a fragment of the message)
    setup: Callable | None = None   # runs first, unwatched; its result is passed to run
    cuda: bool = False


f32 = np.float32


def zeros(*shape, dtype=f32):
    return np.zeros(shape, dtype=dtype)


def built(layer, *shape, training=False):
    """`layer` after one forward on zeros of `shape` (so it is built; training keeps a cache)."""
    layer(zeros(*shape), training=training)
    return layer


def compiled_dense(units=2, features=4, loss="mse"):
    model = models.Sequential([layers.Dense(units, input_shape=(features,), name="d")],
                              name="net")
    model.compile("sgd", loss)
    return model


def lstm_training_cache(units=3):
    U = units
    return ops.lstm_forward(zeros(2, 4, 5), zeros(2, U), zeros(2, U), zeros(5, 4 * U),
                            zeros(U, 4 * U), zeros(4 * U), training=True)[3]


def adam(params, grads, ms, vs, step=1):
    ops.adam_update(params, grads, ms, vs, learning_rate=0.1, beta_1=0.9, beta_2=0.99,
                    epsilon=1e-7, step=step)


def cupy_zeros(*shape):
    import cupy
    return cupy.zeros(shape, dtype=cupy.float32)


CASES = [
    # ----- Dense and the core / activation layers: configuration -----
    Case("dense-zero-units", lambda: layers.Dense(0, name="d"), ValueError,
         "Dense 'd'", "positive integer", "got 0"),
    Case("dense-negative-units", lambda: layers.Dense(-3, name="d"), ValueError,
         "Dense 'd'", "positive integer", "got -3"),
    Case("dense-unknown-activation", lambda: layers.Dense(3, activation="relux", name="d"),
         ValueError, "Dense 'd'", "expected one of", "'relux'"),
    Case("dense-unknown-keyword", lambda: layers.Dense(3, unit=4), TypeError,
         "Dense", "accepted: units", "unit"),
    Case("dense-float16", lambda: layers.Dense(3, dtype="float16", name="d"), ValueError,
         "Dense 'd'", "'float32' or 'float64'", "'float16'"),
    Case("dropout-rate-above-1", lambda: layers.Dropout(1.5, name="drop"), ValueError,
         "Dropout 'drop'", "[0, 1)", "1.5"),
    Case("dropout-negative-rate", lambda: layers.Dropout(-0.1, name="drop"), ValueError,
         "Dropout 'drop'", "[0, 1)", "-0.1"),
    Case("reshape-zero-size", lambda: layers.Reshape((0,), name="r"), ValueError,
         "Reshape 'r'", "positive ints", "(0,)"),
    Case("leaky-negative-slope", lambda: layers.LeakyReLU(negative_slope=-1, name="lr"),
         ValueError, "LeakyReLU 'lr'", ">= 0", "-1"),
    Case("activation-unknown-name", lambda: layers.Activation("nope", name="a"), ValueError,
         "Activation 'a'", "expected one of", "'nope'"),
    # ----- Dense and the core layers: input -----
    Case("dense-rank-1-input", lambda: layers.Dense(3, name="d")(zeros(3)), ValueError,
         "Dense 'd'", "rank >= 2", "(3,)"),
    Case("dense-wrong-features", lambda d: d(zeros(2, 5)), ValueError,
         "Dense 'd'", "size 4 on axis -1", "(2, 5)",
         setup=lambda: built(layers.Dense(3, name="d"), 2, 4)),
    Case("object-array", lambda: layers.Dense(3, name="d")(np.array([[1, "a"]], dtype=object)),
         TypeError, "Dense 'd'", "real numeric array", "object"),
    Case("complex-array", lambda: layers.Dense(3, name="d")(zeros(2, 4, dtype=complex)),
         TypeError, "Dense 'd'", "real numeric array", "complex128"),
    Case("string-array", lambda: layers.Dense(3, name="d")(np.array([["a", "b"]])), TypeError,
         "Dense 'd'", "real numeric array", "<U1"),
    Case("softmax-axis-out-of-range", lambda: layers.Softmax(axis=3, name="s")(zeros(2, 4)),
         ValueError, "Softmax 's'", "axis 3 is out of range", "rank 2"),
    Case("input-layer-wrong-size",
         lambda: models.Sequential([layers.Input((4,), name="in"), layers.Dense(2)])(zeros(2, 5)),
         ValueError, "InputLayer 'in'", "size 4 on axis 1", "(2, 5)"),
    # ----- weights and the backward protocol -----
    Case("set-weights-wrong-count", lambda d: d.set_weights([zeros(4, 3)]), ValueError,
         "Dense 'd'", "expected 2 arrays", "got 1",
         setup=lambda: built(layers.Dense(3, name="d"), 2, 4)),
    Case("set-weights-wrong-shape", lambda d: d.set_weights([zeros(4, 2), zeros(3)]),
         ValueError, "Dense 'd'", "(4, 3)", "(4, 2)",
         setup=lambda: built(layers.Dense(3, name="d"), 2, 4)),
    Case("backward-before-training-forward", lambda d: d.backward(zeros(2, 3)), ValueError,
         "Dense 'd'", "preceding forward(x, training=True)", "backward()",
         setup=lambda: built(layers.Dense(3, name="d"), 2, 4)),
    Case("logits-before-training-forward", lambda d: d.logits_of_last_forward(), ValueError,
         "Dense 'd'", "preceding forward(x, training=True)", "logits_of_last_forward()",
         setup=lambda: built(layers.Dense(3, activation="softmax", name="d"), 2, 4)),
    Case("time-distributed-logits-before-training-forward",
         lambda t: t.backward_from_logits(zeros(2, 5, 3)), ValueError,
         "TimeDistributed 't'", "preceding forward(x, training=True)", "backward_from_logits()",
         setup=lambda: built(layers.TimeDistributed(layers.Dense(3, activation="softmax"),
                                                    name="t"), 2, 5, 4)),
    Case("lstm-backward-before-training-forward", lambda r: r.backward(zeros(2, 3)), ValueError,
         "LSTM 'r'", "preceding forward(x, training=True)", "backward()",
         setup=lambda: built(layers.LSTM(3, name="r"), 2, 5, 4)),
    Case("bidirectional-backward-before-training-forward",
         lambda b: b.backward(zeros(2, 6)), ValueError,
         "Bidirectional 'b'", "preceding forward(x, training=True)", "backward()",
         setup=lambda: built(layers.Bidirectional(layers.LSTM(3), name="b"), 2, 5, 4)),
    Case("backward-wrong-gradient-shape", lambda d: d.backward(zeros(2, 4)), ValueError,
         "Dense 'd'", "(2, 3)", "got (2, 4)",
         setup=lambda: built(layers.Dense(3, name="d"), 2, 4, training=True)),
    # ----- pooling and upsampling layers -----
    Case("maxpool-zero-pool", lambda: layers.MaxPooling2D(0, name="p"), ValueError,
         "MaxPooling2D 'p'", "positive int", "got 0"),
    Case("maxpool-negative-stride", lambda: layers.MaxPooling2D(2, strides=-1, name="p"),
         ValueError, "MaxPooling2D 'p'", "strides to be a positive int", "got -1"),
    Case("maxpool-unknown-padding", lambda: layers.MaxPooling2D(2, padding="full", name="p"),
         ValueError, "MaxPooling2D 'p'", "'valid' or 'same'", "'full'"),
    Case("maxpool-window-larger-than-input",
         lambda: layers.MaxPooling2D((4, 4), name="p")(zeros(2, 3, 3, 1)), ValueError,
         "MaxPooling2D 'p'", "window (4)", "input (3)"),
    Case("avgpool1d-wrong-rank", lambda: layers.AveragePooling1D(2, name="p")(zeros(2, 5)),
         ValueError, "AveragePooling1D 'p'", "rank 3", "(2, 5)"),
    Case("global-pool-empty-steps",
         lambda: layers.GlobalMaxPooling1D(name="g")(zeros(2, 0, 3)), ValueError,
         "GlobalMaxPooling1D 'g'", "empty input", "(2, 0, 3)"),
    Case("upsampling-zero-size", lambda: layers.UpSampling2D(0, name="u"), ValueError,
         "UpSampling2D 'u'", "positive int", "got 0"),
    Case("cropping-removes-everything",
         lambda: layers.Cropping2D(((2, 2), (0, 0)), name="c")(zeros(1, 3, 3, 1)), ValueError,
         "Cropping2D 'c'", "at least one must remain", "removes 4 of the 3"),
    Case("batchnorm-axis-out-of-range",
         lambda: layers.BatchNormalization(axis=5, name="bn")(zeros(2, 4)), ValueError,
         "BatchNormalization 'bn'", "axis 5 is out of range", "rank 2"),
    # ----- convolution layers -----
    Case("conv2d-zero-filters", lambda: layers.Conv2D(0, 3, name="c"), ValueError,
         "Conv2D 'c'", "positive integer", "got 0"),
    Case("conv2d-negative-kernel-size", lambda: layers.Conv2D(4, -1, name="c"), ValueError,
         "Conv2D 'c'", "positive int", "got -1"),
    Case("conv2d-zero-strides", lambda: layers.Conv2D(4, 3, strides=0, name="c"), ValueError,
         "Conv2D 'c'", "positive int", "got 0"),
    Case("conv2d-unknown-padding", lambda: layers.Conv2D(4, 3, padding="full", name="c"),
         ValueError, "Conv2D 'c'", "'valid', 'same'", "'full'"),
    Case("conv2d-causal-padding", lambda: layers.Conv2D(4, 3, padding="causal", name="c"),
         ValueError, "Conv2D 'c'", "'valid', 'same'", "'causal'"),
    Case("conv2d-kernel-larger-than-input",
         lambda: layers.Conv2D(4, 5, name="c")(zeros(1, 3, 3, 1)), ValueError,
         "Conv2D 'c'", "extent 5", "input (3)"),
    Case("conv2d-wrong-channels", lambda c: c(zeros(1, 5, 5, 4)), ValueError,
         "Conv2D 'c'", "size 3 on axis -1", "(1, 5, 5, 4)",
         setup=lambda: built(layers.Conv2D(4, 3, name="c"), 1, 5, 5, 3)),
    Case("conv2d-rank-3-input", lambda: layers.Conv2D(4, 3, name="c")(zeros(2, 5, 5)),
         ValueError, "Conv2D 'c'", "rank 4", "(2, 5, 5)"),
    Case("conv1d-zero-dilation", lambda: layers.Conv1D(4, 3, dilation_rate=0, name="c"),
         ValueError, "Conv1D 'c'", "positive int", "got 0"),
    Case("conv1d-kernel-longer-than-sequence",
         lambda: layers.Conv1D(4, 3, name="c")(zeros(1, 2, 3)), ValueError,
         "Conv1D 'c'", "extent 3", "input (2)"),
    Case("conv2d-transpose-output-padding",
         lambda: layers.Conv2DTranspose(4, 3, strides=2, output_padding=2, name="c"),
         ValueError, "Conv2DTranspose 'c'", "greater than output_padding", "(2, 2)"),
    Case("conv2d-layer-kernel-2^31",
         lambda: layers.Conv2D(4, 2**31, padding="same", name="c")(zeros(1, 5, 5, 3)),
         ValueError, "Conv2D 'c'", "below 2^31", "2147483648"),
    # ----- recurrent layers, embedding, wrappers -----
    Case("lstm-zero-units", lambda: layers.LSTM(0, name="l"), ValueError,
         "LSTM 'l'", "positive integer", "got 0"),
    Case("gru-negative-recurrent-dropout",
         lambda: layers.GRU(3, recurrent_dropout=-0.2, name="g"), ValueError,
         "GRU 'g'", "[0, 1)", "-0.2"),
    Case("simplernn-rank-2-input", lambda: layers.SimpleRNN(3, name="r")(zeros(2, 5)),
         ValueError, "SimpleRNN 'r'", "rank 3 (batch first)", "(2, 5)"),
    Case("simplernn-zero-steps", lambda: layers.SimpleRNN(3, name="r")(zeros(2, 0, 3)),
         ValueError, "SimpleRNN 'r'", "at least one time step", "(2, 0, 3)"),
    Case("lstm-wrong-features", lambda l: l(zeros(2, 5, 4)), ValueError,
         "LSTM 'l'", "size 3 on axis -1", "(2, 5, 4)",
         setup=lambda: built(layers.LSTM(3, name="l"), 2, 5, 3)),
    Case("lstm-initial-state-count",
         lambda: layers.LSTM(3, name="l")(zeros(2, 5, 3), initial_state=[zeros(2, 3)]),
         ValueError, "LSTM 'l'", "list of 2 array(s) [h0, c0]", "got 1"),
    Case("lstm-initial-state-shape",
         lambda: layers.LSTM(3, name="l")(zeros(2, 5, 3), initial_state=[zeros(2, 4),
                                                                          zeros(2, 3)]),
         ValueError, "LSTM 'l'", "(N, U) = (2, 3)", "got (2, 4)"),
    Case("gru-complex-initial-state",
         lambda: layers.GRU(3, name="g")(zeros(2, 5, 3), initial_state=[zeros(2, 3,
                                                                              dtype=complex)]),
         TypeError, "GRU 'g'", "real numeric array", "complex128"),
    Case("lstm-mask-shape", lambda: layers.LSTM(3, name="l")(zeros(2, 5, 3),
                                                             mask=np.ones((2, 4), bool)),
         ValueError, "LSTM 'l'", "(N, T) = (2, 5)", "got (2, 4)"),
    Case("lstm-return-state-gradient-count", lambda l: l.backward([zeros(2, 3)]), ValueError,
         "LSTM 'l'", "list of 3 gradients", "length 1",
         setup=lambda: built(layers.LSTM(3, return_state=True, name="l"), 2, 5, 3,
                             training=True)),
    Case("embedding-id-out-of-range", lambda: layers.Embedding(10, 4, name="e")(
        np.array([[1, 10]])), IndexError, "Embedding 'e'", "[0, 10)", "id 10"),
    Case("embedding-negative-id", lambda: layers.Embedding(10, 4, name="e")(
        np.array([[1, -1]])), IndexError, "Embedding 'e'", "[0, 10)", "id -1"),
    Case("bidirectional-of-dense", lambda: layers.Bidirectional(layers.Dense(3)), TypeError,
         "Bidirectional", "recurrent layer", "got Dense"),
    Case("timedistributed-rank-2", lambda: layers.TimeDistributed(layers.Dense(3), name="t")(
        zeros(2, 4)), ValueError, "TimeDistributed 't'", "rank >= 3", "(2, 4)"),
    Case("repeatvector-zero", lambda: layers.RepeatVector(0, name="rv"), ValueError,
         "RepeatVector 'rv'", "positive integer", "got 0"),
    # ----- losses -----
    Case("loss-unknown-name", lambda: losses.get("msee"), ValueError,
         "loss", "expected one of", "'msee'"),
    Case("sparse-ce-label-out-of-range", lambda: losses.SparseCategoricalCrossentropy()(
        np.array([0, 3]), np.full((2, 3), 1 / 3, f32)), IndexError,
         "SparseCategoricalCrossentropy", "valid: 0 to 2", "class index 3"),
    Case("sparse-ce-negative-label", lambda: losses.SparseCategoricalCrossentropy()(
        np.array([0, -1]), np.full((2, 3), 1 / 3, f32)), IndexError,
         "SparseCategoricalCrossentropy", "valid: 0 to 2", "class index -1"),
    Case("sparse-ce-fractional-label", lambda: losses.SparseCategoricalCrossentropy()(
        np.array([0.5, 1.0]), np.full((2, 3), 1 / 3, f32)), ValueError,
         "SparseCategoricalCrossentropy", "integer class indices", "0.5"),
    Case("mse-shape-mismatch", lambda: losses.MeanSquaredError()(zeros(2, 3), zeros(2, 4)),
         ValueError, "MeanSquaredError", "same shape", "y_pred (2, 4)"),
    Case("categorical-ce-shape-mismatch", lambda: losses.CategoricalCrossentropy()(
        zeros(2, 4), np.full((2, 3), 1 / 3, f32)), ValueError,
         "CategoricalCrossentropy", "y_pred's shape", "y_true (2, 4)"),
    Case("huber-zero-delta", lambda: losses.Huber(delta=0), ValueError,
         "Huber", "> 0", "got 0"),
    # ----- optimizers -----
    Case("optimizer-unknown-name", lambda: optimizers.get("adamm"), ValueError,
         "optimizer", "adam", "'adamm'"),
    Case("adam-negative-learning-rate", lambda: optimizers.Adam(learning_rate=-1), ValueError,
         "Adam", "> 0", "got -1"),
    Case("sgd-momentum-above-1", lambda: optimizers.SGD(momentum=1.5), ValueError,
         "SGD", "[0, 1)", "1.5"),
    Case("adam-unknown-keyword", lambda: optimizers.Adam(lr=0.1), TypeError,
         "Adam", "accepted: learning_rate", "lr"),
    Case("sgd-negative-clipnorm", lambda: optimizers.SGD(clipnorm=-1), ValueError,
         "SGD", "> 0", "got -1"),
    # ----- settings -----
    Case("set-num-threads-zero", lambda: fd.set_num_threads(0), ValueError,
         "set_num_threads", "positive int", "got 0"),
    Case("set-num-threads-float", lambda: fd.set_num_threads(2.0), TypeError,
         "set_num_threads", "positive int", "got float 2.0"),
    # ----- models -----
    Case("fit-before-compile", lambda m: m.fit(zeros(2, 4), zeros(2, 2), verbose=0),
         ValueError, "Sequential 'net'.fit", "compiled first", "model.compile",
         setup=lambda: models.Sequential([layers.Dense(2, input_shape=(4,))], name="net")),
    Case("train-on-batch-compiled-without-loss",
         lambda m: m.train_on_batch(zeros(2, 4), zeros(2, 2)), ValueError,
         "Sequential 'net'.train_on_batch", "compile(optimizer, loss=...)", "without a loss",
         setup=lambda: compiled_dense(loss=None)),
    Case("model-backward-before-training-forward", lambda m: m.backward(zeros(2, 2)),
         ValueError, "Sequential 'net'", "preceding forward(x, training=True)", "backward()",
         setup=compiled_dense),
    Case("fit-x-y-length-mismatch", lambda m: m.fit(zeros(5, 4), zeros(4, 2), verbose=0),
         ValueError, "Sequential 'net'.fit", "same number of samples", "got 5",
         setup=compiled_dense),
    Case("fit-zero-batch-size", lambda m: m.fit(zeros(4, 4), zeros(4, 2), batch_size=0,
                                                verbose=0),
         ValueError, "Sequential 'net'.fit", "positive int", "got 0", setup=compiled_dense),
    Case("fit-negative-epochs", lambda m: m.fit(zeros(4, 4), zeros(4, 2), epochs=-1, verbose=0),
         ValueError, "Sequential 'net'.fit", "int >= 0", "got -1", setup=compiled_dense),
    Case("fit-validation-split-above-1",
         lambda m: m.fit(zeros(4, 4), zeros(4, 2), validation_split=1.5, verbose=0),
         ValueError, "Sequential 'net'.fit", "[0, 1)", "1.5", setup=compiled_dense),
    Case("fit-label-out-of-range",
         lambda m: m.fit(zeros(4, 4), np.array([0, 1, 2, 7]), verbose=0), IndexError,
         "SparseCategoricalCrossentropy", "valid: 0 to 2", "class index 7",
         setup=lambda: compiled_dense(3, loss="sparse_categorical_crossentropy")),
    Case("predict-empty", lambda m: m.predict(zeros(0, 4)), ValueError,
         "Sequential 'net'.predict", "x is empty", "0 samples", setup=compiled_dense),
    Case("add-non-layer", lambda: models.Sequential(name="net").add("dense"), TypeError,
         "Sequential 'net'.add", "fusednn Layer", "str"),
    Case("compile-unknown-metric", lambda m: m.compile("sgd", "mse", metrics=["acuracy"]),
         ValueError, "metric", "accuracy", "'acuracy'", setup=compiled_dense),
    Case("to-categorical-label-out-of-range", lambda: fd.utils.to_categorical([0, 5], 3),
         ValueError, "to_categorical", "[0, 3)", "[0, 5]"),
    # ----- ops -----
    Case("op-sparse-ce-label-out-of-range",
         lambda: ops.sparse_softmax_cross_entropy(zeros(2, 3), np.array([0, 3])), IndexError,
         "sparse_softmax_cross_entropy", "[0, 3)", "got 3"),
    Case("op-sparse-ce-negative-label",
         lambda: ops.sparse_softmax_cross_entropy(zeros(2, 3), np.array([-2, 0])), IndexError,
         "sparse_softmax_cross_entropy", "[0, 3)", "got -2"),
    Case("op-sparse-ce-rank-3-logits",
         lambda: ops.sparse_softmax_cross_entropy(zeros(2, 3, 1), np.array([0, 1])), ValueError,
         "sparse_softmax_cross_entropy", "2-D (N, C)", "(2, 3, 1)"),
    Case("op-ce-target-shape",
         lambda: ops.softmax_cross_entropy(zeros(2, 3), zeros(2, 4)), ValueError,
         "softmax_cross_entropy", "(N, C) = (2, 3)", "got (2, 4)"),
    Case("op-ce-string-targets",
         lambda: ops.softmax_cross_entropy(zeros(1, 2), np.array([["a", "b"]])), TypeError,
         "softmax_cross_entropy", "real numeric", "<U1"),
    Case("op-adam-step-zero",
         lambda: adam([zeros(3)], [zeros(3)], [zeros(3)], [zeros(3)], step=0), ValueError,
         "adam_update", "integer >= 1", "got 0"),
    Case("op-adam-gradient-shape",
         lambda: adam([zeros(3)], [zeros(4)], [zeros(3)], [zeros(3)]), ValueError,
         "adam_update", "expected (3,)", "grads[0] has shape (4,)"),
    Case("op-adam-list-lengths",
         lambda: adam([zeros(3)], [zeros(3), zeros(3)], [zeros(3)], [zeros(3)]), ValueError,
         "adam_update", "one entry per parameter", "'grads': 2"),
    Case("op-sgd-non-contiguous-param",
         lambda: ops.sgd_update([zeros(6)[::2]], [zeros(3)], None, learning_rate=0.1),
         ValueError, "sgd_update", "C-contiguous", "strides (8,)"),
    Case("op-sgd-negative-learning-rate",
         lambda: ops.sgd_update([zeros(3)], [zeros(3)], None, learning_rate=-0.1), ValueError,
         "sgd_update", "[0.0, inf)", "-0.1"),
    Case("op-matmul-inner-dimension",
         lambda: gemm.matmul(zeros(2, 3), zeros(4, 2)), ValueError,
         "matmul", "K = 3 rows", "op(b) is (4, 2)"),
    Case("op-matmul-dtype-mix",
         lambda: gemm.matmul(zeros(2, 3), zeros(3, 2, dtype=np.float64)), TypeError,
         "matmul", "same dtype", "float32 and float64"),
    Case("op-maxpool-window-larger-than-input",
         lambda: ops.max_pool2d(zeros(1, 3, 3, 1), 4), ValueError,
         "max_pool2d", "window (4)", "input (3)"),
    Case("op-avgpool-rank-3", lambda: ops.avg_pool2d(zeros(1, 3, 3), 2), ValueError,
         "avg_pool2d", "rank 4 (N, H, W, C)", "(1, 3, 3)"),
    Case("op-maxpool-zero-stride", lambda: ops.max_pool2d(zeros(1, 4, 4, 1), 2, strides=0),
         ValueError, "max_pool2d", "positive int", "got 0"),
    Case("op-upsample-zero-size", lambda: ops.upsample_nearest2d(zeros(1, 3, 3, 1), 0),
         ValueError, "upsample_nearest2d", "positive int", "got 0"),
    Case("op-conv2d-channel-mismatch",
         lambda: ops.conv2d(zeros(2, 5, 5, 3), zeros(3, 3, 4, 2)), ValueError,
         "conv2d", "C = kernel.shape[2] = 4", "(2, 5, 5, 3) has 3"),
    Case("op-conv2d-bias-shape",
         lambda: ops.conv2d(zeros(2, 5, 5, 3), zeros(3, 3, 3, 4), zeros(5)), ValueError,
         "conv2d", "bias of shape (4,)", "got (5,)"),
    Case("op-conv2d-unfused-activation",
         lambda: ops.conv2d(zeros(2, 5, 5, 3), zeros(3, 3, 3, 4), activation="sigmoid"),
         ValueError, "conv2d", "'linear' or 'relu'", "'sigmoid'"),
    Case("op-conv2d-dtype-mix",
         lambda: ops.conv2d(zeros(2, 5, 5, 3), zeros(3, 3, 3, 4, dtype=np.float64)), TypeError,
         "conv2d", "share one dtype", "float64"),
    Case("op-conv2d-strides-with-dilation",
         lambda: ops.conv2d(zeros(2, 5, 5, 3), zeros(3, 3, 3, 2), strides=(1, 2),
                            dilation_rate=2), ValueError,
         "conv2d", "not supported", "strides=(1, 2)"),
    Case("op-conv2d-backward-gradient-shape",
         lambda: ops.conv2d_backward(zeros(2, 3, 3, 5), zeros(2, 5, 5, 3), zeros(3, 3, 3, 4)),
         ValueError, "conv2d_backward", "(2, 3, 3, 4)", "got (2, 3, 3, 5)"),
    Case("op-conv2d-transpose-channels",
         lambda: ops.conv2d_transpose(zeros(2, 5, 5, 3), zeros(3, 3, 2, 4)), ValueError,
         "conv2d_transpose", "Cin = kernel.shape[3] = 4", "has 3"),
    Case("op-conv2d-strides-2^63",
         lambda: ops.conv2d(zeros(1, 5, 5, 3), zeros(3, 3, 3, 2), strides=2**63,
                            padding="same"), ValueError,
         "conv2d", "strides", "9223372036854775808"),
    Case("op-lstm-kernel-shape",
         lambda: ops.lstm_forward(zeros(2, 4, 5), zeros(2, 3), zeros(2, 3), zeros(5, 9),
                                  zeros(3, 12), zeros(12)), ValueError,
         "lstm_forward", "(F, 4U) = (5, 12)", "got (5, 9)"),
    Case("op-lstm-state-dtype",
         lambda: ops.lstm_forward(zeros(2, 4, 5), zeros(2, 3, dtype=np.float64), zeros(2, 3),
                                  zeros(5, 12), zeros(3, 12), zeros(12)), TypeError,
         "lstm_forward", "dtype of x (float32)", "float64"),
    Case("op-gru-bias-shape",
         lambda: ops.gru_forward(zeros(2, 4, 5), zeros(2, 3), zeros(5, 9), zeros(3, 9),
                                 zeros(9)), ValueError,
         "gru_forward", "(2, 3U) = (2, 9)", "got (9,)"),
    Case("op-simple-rnn-activation",
         lambda: ops.simple_rnn_forward(zeros(2, 4, 5), zeros(2, 3), zeros(5, 3), zeros(3, 3),
                                        zeros(3), activation="sigmoid"), ValueError,
         "simple_rnn_forward", "('tanh', 'relu')", "'sigmoid'"),
    Case("op-lstm-backward-gradient-shape",
         lambda cache: ops.lstm_backward(zeros(2, 4, 4), None, None, cache), ValueError,
         "lstm_backward", "(N, T, U) = (2, 4, 3)", "got (2, 4, 4)", setup=lstm_training_cache),
    # ----- limits that keep index arithmetic in range (sizes past 2^31) -----
    Case("op-maxpool-window-2^31",
         lambda: ops.max_pool2d(zeros(1, 3, 3, 1), (2**31, 1), padding="same"), ValueError,
         "max_pool2d", "pool_size to be a positive int", "below 2^31, got (2147483648, 1)"),
    Case("op-maxpool-stride-2^31",
         lambda: ops.max_pool2d(zeros(1, 3, 3, 1), 2, strides=(1, 2**31)), ValueError,
         "max_pool2d", "strides to be a positive int", "below 2^31, got (1, 2147483648)"),
    Case("maxpool-layer-window-2^31",
         lambda: layers.MaxPooling2D(2**31, padding="same", name="p")(zeros(1, 3, 3, 1)),
         ValueError, "MaxPooling2D 'p'", "below 2^31", "got 2147483648"),
    Case("op-maxpool-window-2^63",
         lambda: ops.max_pool2d(zeros(1, 3, 3, 1), 2**63, padding="same"), ValueError,
         "max_pool2d", "below 2^31", "got 9223372036854775808"),
    Case("op-avgpool-backward-stride-2^31",
         lambda: ops.avg_pool2d_backward(zeros(1, 1, 1, 1), (1, 3, 3, 1), 3, 2**31), ValueError,
         "avg_pool2d_backward", "below 2^31", "got 2147483648"),
    Case("op-upsample-factor-2^40",
         lambda: ops.upsample_nearest2d(zeros(1, 1, 1, 1), (2**40, 1)), ValueError,
         "upsample_nearest2d", "below 2^31", "got (1099511627776, 1)"),
    Case("op-upsample-output-past-2^63-bytes",
         lambda: ops.upsample_nearest2d(zeros(1, 1, 1, 1), (2**31 - 1, 2**31 - 1)), ValueError,
         "upsample_nearest2d", "fewer than 2^63 bytes", "(1, 2147483647, 2147483647, 1)"),
    Case("op-conv2d-transpose-output-past-2^63-bytes",
         lambda: ops.conv2d_transpose(zeros(1, 4, 4, 1), zeros(1, 1, 1, 1),
                                      strides=2**31 - 1), ValueError,
         "conv2d_transpose", "fewer than 2^63 bytes", "(1, 8589934588, 8589934588, 1)"),
    Case("op-upsample-backward-factor-2^31",
         lambda: ops.upsample_nearest2d_backward(zeros(1, 2, 2, 1), (1, 2**31)), ValueError,
         "upsample_nearest2d_backward", "below 2^31", "got (1, 2147483648)"),
    Case("upsampling2d-layer-factor-2^31",
         lambda: layers.UpSampling2D(2**31, name="u")(zeros(1, 1, 1, 1)), ValueError,
         "UpSampling2D 'u'", "below 2^31", "got 2147483648"),
    Case("zero-padding-output-past-2^63-bytes",
         lambda: layers.ZeroPadding2D(2**40, name="z")(zeros(1, 2, 2, 1)), ValueError,
         "ZeroPadding2D 'z'", "fewer than 2^63 bytes", "(1, 2199023255554, 2199023255554, 1)"),
    Case("repeat-vector-output-past-2^63-bytes",
         lambda: layers.RepeatVector(2**62, name="r")(zeros(1, 2)), ValueError,
         "RepeatVector 'r'", "fewer than 2^63 bytes", "(1, 4611686018427387904, 2)"),
    Case("dense-weight-past-2^63-bytes",
         lambda: layers.Dense(2**62, name="d")(zeros(1, 2)), ValueError,
         "Dense 'd'", "fewer than 2^63 bytes", "weight 'kernel'"),
    Case("upsampling1d-layer-factor-2^63",
         lambda: layers.UpSampling1D(2**63, name="u")(zeros(1, 1, 1)), ValueError,
         "UpSampling1D 'u'", "below 2^31", "got 9223372036854775808"),
    # ----- devices (a GPU with CuPy only) -----
    Case("numpy-cupy-mixed-in-op",
         lambda: ops.sparse_softmax_cross_entropy(cupy_zeros(2, 3), np.array([0, 1])), TypeError,
         "sparse_softmax_cross_entropy", "numpy.ndarray (cpu)", "cupy.ndarray (cuda)",
         cuda=True),
    Case("numpy-input-to-cuda-layer", lambda d: d(cupy_zeros(2, 4)), TypeError,
         "Dense 'd'", "weights are on cpu", "input is on cuda",
         setup=lambda: built(layers.Dense(3, name="d"), 2, 4), cuda=True),
    Case("numpy-cupy-mixed-in-loss",
         lambda: losses.MeanSquaredError()(np.zeros((2, 3)), cupy_zeros(2, 3)), TypeError,
         "MeanSquaredError", "y_pred is on cuda", "y_true is on cpu", cuda=True),
]

# ----- the child process --------------------------------------------------------------

_KERNEL_SUFFIXES = ("_cpu", "_cuda")


def _record_kernel_calls() -> list:
    """Wraps every kernel entry point of fusednn._C; returns the list that the calls which
    completed go to."""
    from fusednn import _C
    calls = []
    for name in dir(_C):
        target = getattr(_C, name)
        if callable(target) and (name.endswith(_KERNEL_SUFFIXES) or name == "gemm"):
            def recorder(*args, _name=name, _target=target, **kwargs):
                # Only a call that returns ran a kernel; one that raises stopped in the
                # binding's own validation, which counts as before the kernel.
                result = _target(*args, **kwargs)
                calls.append(_name)
                return result
            setattr(_C, name, recorder)
    return calls


def _run_case(case: Case, calls: list) -> dict:
    state = case.setup() if case.setup is not None else None
    calls.clear()
    try:
        case.run(state) if case.setup is not None else case.run()
    except Exception as e:  # the test compares the type; anything is reported
        return {"error": [k.__name__ for k in type(e).__mro__], "message": str(e),
                "kernels": list(calls)}
    return {"error": None, "message": "", "kernels": list(calls)}


def _child_main(ids) -> None:
    faulthandler.enable()
    calls = _record_kernel_calls()
    by_id = {case.id: case for case in CASES}
    for case_id in ids:
        print(json.dumps({"start": case_id}), flush=True)
        result = _run_case(by_id[case_id], calls)
        print(json.dumps({"id": case_id, **result}), flush=True)


# ----- the tests -------------------------------------------------------------------------

def _run_children(ids, env=None) -> dict:
    """Results by case id; a case that kills its child gets {"crash": ...} and the
    remaining cases run in a fresh child."""
    results = {}
    pending = list(ids)
    while pending:
        proc = subprocess.run([sys.executable, __file__, *pending], capture_output=True,
                              text=True, timeout=300, env=env)
        started = None
        for line in proc.stdout.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a case printed something of its own
            if "start" in record:
                started = record["start"]
            else:
                results[record["id"]] = record
        finished = started in results
        if proc.returncode != 0 or not finished:
            crashed = started if started is not None and not finished else pending[0]
            results[crashed] = {"crash": proc.returncode, "stderr": proc.stderr[-4000:]}
        pending = [i for i in pending if i not in results]
    return results


@pytest.fixture(scope="module")
def results():
    ids = [case.id for case in CASES if not case.cuda or fd.has_cuda()]
    return _run_children(ids)


def test_case_ids_are_unique_and_there_are_enough():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len([c for c in CASES if not c.cuda]) >= 40


WRONG_ORDER_CASES = ["backward-before-training-forward", "logits-before-training-forward",
                     "time-distributed-logits-before-training-forward",
                     "lstm-backward-before-training-forward",
                     "bidirectional-backward-before-training-forward", "fit-before-compile",
                     "train-on-batch-compiled-without-loss",
                     "model-backward-before-training-forward"]


@pytest.mark.parametrize("case_id", WRONG_ORDER_CASES)
def test_calls_in_the_wrong_order_raise_a_state_error_that_is_also_a_runtime_error(
        case_id, results):
    """Keras-style `except RuntimeError` still catches what the cases above catch as
    ValueError."""
    assert results[case_id]["error"][:3] == ["StateError", "RuntimeError", "ValueError"]


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id,
                                               marks=[pytest.mark.cuda] if case.cuda else [])
                                  for case in CASES])
def test_bad_input_raises_a_clear_error_before_any_kernel(case, results):
    result = results[case.id]
    assert "crash" not in result, (
        f"{case.id} killed the interpreter (exit status {result.get('crash')}):\n"
        f"{result.get('stderr')}")
    assert result["error"] is not None, f"{case.id}: no exception was raised"
    assert case.error.__name__ in result["error"], (
        f"{case.id}: expected {case.error.__name__}, got {result['error'][0]}: "
        f"{result['message']}")
    message = result["message"]
    for role, fragment in (("name", case.who), ("expected value", case.expected),
                           ("received value", case.received)):
        assert fragment in message, f"{case.id}: the message lacks the {role} {fragment!r}: " \
                                    f"{message!r}"
    assert result["kernels"] == [], f"{case.id}: kernels ran before the error: " \
                                    f"{result['kernels']}"


def _raise_after_a_kernel():
    ops.max_pool2d(zeros(1, 2, 2, 1), 2)
    raise ValueError("late")


# Cases that test the harness itself; the child adds them when asked to.
HARNESS_CASES = [Case("abort", os.abort, ValueError, "", "", ""),
                 Case("kernel-then-error", _raise_after_a_kernel, ValueError, "", "", "")]


def test_the_harness_reports_crashes_and_kernel_calls():
    """A case that aborts the child is reported as a crash of that case and the cases
    after it still run in a fresh child; a kernel that runs before the error is seen."""
    env = dict(os.environ, FUSEDNN_TEST_HARNESS_CASES="1")
    results = _run_children(["abort", "kernel-then-error", CASES[0].id], env=env)
    assert results["abort"]["crash"] != 0 and "Fatal Python error" in results["abort"]["stderr"]
    assert results["kernel-then-error"]["kernels"] == ["max_pool2d_forward_cpu"]
    assert results[CASES[0].id]["error"] is not None


if __name__ == "__main__":
    if os.environ.get("FUSEDNN_TEST_HARNESS_CASES"):
        CASES.extend(HARNESS_CASES)
    _child_main(sys.argv[1:])
