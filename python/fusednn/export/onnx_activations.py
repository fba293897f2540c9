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


# Functions that are one ONNX operator: its type and attributes. hard_sigmoid is Keras 3's
# relu6(x + 3) / 6 and hard_silu x times that, ONNX's HardSwish.
_ONE_OPERATOR = {
    activations.Sigmoid: ("Sigmoid", lambda f: {}),
    activations.Tanh: ("Tanh", lambda f: {}),
    activations.Softplus: ("Softplus", lambda f: {}),
    activations.Softsign: ("Softsign", lambda f: {}),
    activations.Exponential: ("Exp", lambda f: {}),
    activations.HardSilu: ("HardSwish", lambda f: {}),
    activations.HardSigmoid: ("HardSigmoid", lambda f: {"alpha": 1.0 / 6.0, "beta": 0.5}),
    activations.LeakyReLU: ("LeakyRelu", lambda f: {"alpha": f.negative_slope}),
    activations.ELU: ("Elu", lambda f: {"alpha": f.alpha}),
    activations.SELU: ("Selu", lambda f: {"alpha": f.alpha, "gamma": f.scale}),
    activations.Softmax: ("Softmax", lambda f: {"axis": f.axis}),
    activations.LogSoftmax: ("LogSoftmax", lambda f: {"axis": f.axis}),
}
for _cls, (_op_type, _attributes) in _ONE_OPERATOR.items():
    _exports(_cls)(lambda g, function, x, op_type=_op_type, attributes=_attributes:
                   g.op(op_type, [x], **attributes(function)))


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


@_exports(activations.Silu)
def _silu(g, function, x):
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


@_exports(activations.Mish)
def _mish(g, function, x):
    return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])


