"""The activation functions as ONNX nodes: one exporter per fusednn.activations class.

Each takes the GraphBuilder, the ActivationFunction and the input's name, and returns
the output's name. Functions without an ONNX operator of their own (silu, mish, gelu
before opset 20, relu with threshold or max_value) are written with the same formula
fusednn computes.
"""
from __future__ import annotations

import math

import numpy as np

from .. import activations

_EXPORTERS = {}


def _exports(cls):
    def add(function):
        _EXPORTERS[cls] = function
        return function
    return add


def export_activation(g, function, x: str, where: str) -> str:
    exporter = _EXPORTERS.get(type(function))
    if exporter is None:
        raise ValueError(f"export.onnx: {where}: the activation {function.name!r} has no ONNX "
                         f"export; supported: "
                         f"{', '.join(sorted(cls.name for cls in _EXPORTERS))}")
    return exporter(g, function, x)


def _scalar(g, value, hint="scalar"):
    return g.const(np.array(value, np.float32), hint)


@_exports(activations.Linear)
def _linear(g, function, x):
    return x


@_exports(activations.ReLU)
def _relu(g, function, x):
    if function.threshold == 0.0 and function.negative_slope == 0.0:
        if function.max_value is None:
            return g.op("Relu", [x])
        return g.op("Clip", [x, _scalar(g, 0.0, "min"), _scalar(g, function.max_value, "max")])
    # Keras's general form: where(x > t, x, 0) clipped to [0, max_value], minus
    # negative_slope * max(t - x, 0).
    threshold = _scalar(g, function.threshold, "threshold")
    positive = g.op("Where", [g.op("Greater", [x, threshold]), x, _scalar(g, 0.0, "zero")])
    if function.max_value is not None:
        positive = g.op("Clip", [positive, _scalar(g, 0.0, "min"),
                                 _scalar(g, function.max_value, "max")])
    if function.negative_slope == 0.0:
        return positive
    below = g.op("Relu", [g.op("Sub", [threshold, x])])
    return g.op("Sub", [positive, g.op("Mul", [below, _scalar(g, function.negative_slope)])])


@_exports(activations.ReLU6)
def _relu6(g, function, x):
    return g.op("Clip", [x, _scalar(g, 0.0, "min"), _scalar(g, 6.0, "max")])


@_exports(activations.LeakyReLU)
def _leaky_relu(g, function, x):
    return g.op("LeakyRelu", [x], alpha=function.negative_slope)


@_exports(activations.ELU)
def _elu(g, function, x):
    return g.op("Elu", [x], alpha=function.alpha)


@_exports(activations.SELU)
def _selu(g, function, x):
    return g.op("Selu", [x], alpha=function.alpha, gamma=function.scale)


@_exports(activations.GELU)
def _gelu(g, function, x):
    approximate = "tanh" if function.approximate else "none"
    if g.opset >= 20:
        return g.op("Gelu", [x], approximate=approximate)
    half_x = g.op("Mul", [x, _scalar(g, 0.5)])
    if function.approximate:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, _scalar(g, 0.044715)])])
        core = g.op("Tanh", [g.op("Mul", [inner, _scalar(g, math.sqrt(2.0 / math.pi))])])
    else:  # 0.5 x (1 + erf(x / sqrt(2)))
        core = g.op("Erf", [g.op("Mul", [x, _scalar(g, math.sqrt(0.5))])])
    return g.op("Mul", [half_x, g.op("Add", [core, _scalar(g, 1.0, "one")])])


@_exports(activations.Sigmoid)
def _sigmoid(g, function, x):
    return g.op("Sigmoid", [x])


@_exports(activations.Tanh)
def _tanh(g, function, x):
    return g.op("Tanh", [x])


@_exports(activations.HardSigmoid)
def _hard_sigmoid(g, function, x):  # Keras 3: relu6(x + 3) / 6
    return g.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)


@_exports(activations.HardSilu)
def _hard_silu(g, function, x):  # x * relu6(x + 3) / 6
    return g.op("HardSwish", [x])


@_exports(activations.Silu)
def _silu(g, function, x):
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


@_exports(activations.Softplus)
def _softplus(g, function, x):
    return g.op("Softplus", [x])


@_exports(activations.Softsign)
def _softsign(g, function, x):
    return g.op("Softsign", [x])


@_exports(activations.Mish)
def _mish(g, function, x):
    return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])


@_exports(activations.Exponential)
def _exponential(g, function, x):
    return g.op("Exp", [x])


@_exports(activations.Softmax)
def _softmax(g, function, x):
    return g.op("Softmax", [x], axis=function.axis)


@_exports(activations.LogSoftmax)
def _log_softmax(g, function, x):
    return g.op("LogSoftmax", [x], axis=function.axis)
