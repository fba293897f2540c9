"""Keras 3 weights (a `.weights.h5` file, or the `model.weights.h5` inside a `.keras`
zip) into the layers of a fusednn model (Sequential or functional).

The HDF5 layout Keras 3 writes (keras/src/saving/saving_lib.py):

    layers/<layer>/vars/0, 1, ...              a layer's weights, in Keras's order
    layers/<layer>/cell/vars/...               SimpleRNN / LSTM / GRU (the cell holds them)
    layers/<layer>/forward_layer/cell/vars/... and .../backward_layer/cell/vars/...
                                               Bidirectional
    layers/<layer>/layer/vars/...              TimeDistributed (the wrapped layer)

where <layer> is not the layer's name but Keras's snake case of its class name, made
unique in layer order (dense, dense_1, conv2d, ...). fusednn's layers keep Keras's
weight order and shapes, so the arrays are assigned as they are, after every count and
shape has been checked: on any mismatch nothing is assigned. Nothing in the file is
executed; h5py (pip install "fusednn[keras]") is imported only here.
"""
from __future__ import annotations

import os

import numpy as np

from .layers.recurrent import _RNN
from .layers.wrappers import Bidirectional, TimeDistributed
from .naming import snake_case


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path) -> bool:
    """Whether `path` is an HDF5 file (a Keras .weights.h5), by its first bytes."""
    try:
        with open(os.fspath(path), "rb") as f:
            return f.read(8) == HDF5_MAGIC
    except (OSError, TypeError):
        return False


def import_h5py(what: str):
    try:
        import h5py
    except ImportError:
        raise ImportError(f"{what}: reading Keras files needs the h5py package: pip install "
                          "h5py (or fusednn[keras])") from None
    return h5py


def keras_paths(model_layers) -> list[str]:
    """Keras's weight path of each layer of a model, in the model's layer order (Keras's:
    by depth for a functional model): layers/<snake case>[_n]."""
    used: dict[str, int] = {}
    paths = []
    for layer in model_layers:
        name = snake_case(type(layer).__name__)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        paths.append(f"layers/{name}")
    return paths


def _variable_groups(layer, path: str) -> list[str]:
    """The groups holding `layer`'s weights, in its weight order."""
    if isinstance(layer, Bidirectional):
        return [f"{path}/forward_layer/cell/vars", f"{path}/backward_layer/cell/vars"]
    if isinstance(layer, _RNN):
        return [f"{path}/cell/vars"]
    if isinstance(layer, TimeDistributed):
        return _variable_groups(layer.layer, f"{path}/layer")
    return [f"{path}/vars"]


def _datasets(h5, group_path: str, source: str) -> list:
    group = h5.get(group_path)
    if group is None:
        return []
    h5py = import_h5py(source)
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{source}: {group_path!r} is not an HDF5 group")
    names = list(group.keys())
    if sorted(names, key=lambda n: (len(n), n)) != [str(i) for i in range(len(names))]:
        raise ValueError(f"{source}: expected the weights of {group_path!r} to be numbered 0, "
                         f"1, ..., got {sorted(names)}")
    datasets = [group[str(i)] for i in range(len(names))]
    for i, dataset in enumerate(datasets):
        if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind != "f":
            raise ValueError(f"{source}: {group_path}/{i} must be a floating-point dataset, "
                             f"got {getattr(dataset, 'dtype', type(dataset).__name__)}")
    return datasets


def load_keras_weights(model, h5_source, source: str) -> None:
    """Assigns the weights of the Keras weights file `h5_source` (a path or a binary file
    object; `source` names it in messages) to the built `model`."""
    h5py = import_h5py(source)
    if not getattr(model, "built", False):
        raise ValueError(f"{source}: {model._label()} is not built; build it (or call it on "
                         "data) before loading Keras weights into it")
    try:
        h5 = h5py.File(h5_source, "r")
    except OSError as e:
        raise ValueError(f"{source}: not a readable HDF5 weights file ({e})") from None
    with h5:
        model_layers = model.layers
        paths = keras_paths(model_layers)
        assignments = []
        for layer, path in zip(model_layers, paths):
            datasets = [d for group in _variable_groups(layer, path)
                        for d in _datasets(h5, group, source)]
            variables = layer.variables
            if len(datasets) != len(variables):
                raise ValueError(f"{source}: {layer._label()} has {len(variables)} weights but "
                                 f"the file holds {len(datasets)} under {path!r}")
            for dataset, var in zip(datasets, variables):
                if tuple(dataset.shape) != var.shape:
                    raise ValueError(f"{source}: weight {var.name!r} of {layer._label()} has "
                                     f"shape {var.shape}, but the file's {dataset.name!r} has "
                                     f"shape {tuple(dataset.shape)}")
            assignments.append((layer, datasets))
        extra = sorted(set(_layer_groups(h5, h5py)) - set(paths))
        if extra:
            raise ValueError(f"{source}: the file holds weights for {extra}, which "
                             f"{model._label()} does not have (its layers are at {paths})")
        arrays = [(layer, [np.asarray(d[()]) for d in datasets])
                  for layer, datasets in assignments]
    for layer, weights in arrays:
        layer.set_weights(weights)


def _layer_groups(h5, h5py) -> list[str]:
    """layers/<name> of every layer group in the file that holds a dataset."""
    group = h5.get("layers")
    if not isinstance(group, h5py.Group):
        return []
    holding = []
    for name, child in group.items():
        datasets = []
        if isinstance(child, h5py.Group):
            child.visititems(lambda _, item: datasets.append(item)
                             if isinstance(item, h5py.Dataset) else None)
        if datasets or isinstance(child, h5py.Dataset):
            holding.append(f"layers/{name}")
    return holding
