"""Keras-style layers, and their (de)serialisation over an explicit registry.

`serialize(layer)` gives {"class_name": ..., "config": ...}; `deserialize` rebuilds
a layer only from a class registered here (no import by name). Layer families
defined elsewhere (convolution, recurrent, ...) add themselves with `register`.
"""
from __future__ import annotations

from .base import InputSpec, Layer, Variable
from .registry import deserialize, register, registered_classes, serialize
from .core import Activation, Dense, Dropout, Flatten, Input, InputLayer, Reshape
from .activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from .recurrent import GRU, LSTM, SimpleRNN
from .wrappers import Bidirectional, RepeatVector, TimeDistributed
from .embedding import Embedding, Masking
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                      GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                      MaxPooling1D, MaxPooling2D)
from .reshaping import Cropping2D, UpSampling1D, UpSampling2D, ZeroPadding2D
from .normalization import BatchNormalization
from .convolutional import Conv1D, Conv2D, Conv2DTranspose

for _cls in (Activation, Dense, Dropout, Flatten, InputLayer, Reshape,
             AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
             GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D,
             Cropping2D, UpSampling1D, UpSampling2D, ZeroPadding2D, BatchNormalization,
             ELU, LeakyReLU, PReLU, ReLU, Softmax,
             GRU, LSTM, SimpleRNN, Bidirectional, RepeatVector, TimeDistributed,
             Embedding, Masking,
             Conv1D, Conv2D, Conv2DTranspose):
    register(_cls)
del _cls

__all__ = [
    "AveragePooling1D", "AveragePooling2D", "BatchNormalization", "Cropping2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "MaxPooling1D", "MaxPooling2D", "UpSampling1D", "UpSampling2D",
    "ZeroPadding2D",
    "Activation", "Dense", "Dropout", "ELU", "Flatten", "Input", "InputLayer", "InputSpec",
    "Layer", "LeakyReLU", "PReLU", "ReLU", "Reshape", "Softmax", "Variable",
    "deserialize", "register", "registered_classes", "serialize",
    "Bidirectional", "Embedding", "GRU", "LSTM", "Masking", "RepeatVector", "SimpleRNN",
    "TimeDistributed",
    "Conv1D", "Conv2D", "Conv2DTranspose",
]
