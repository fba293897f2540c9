"""The merging layers against PyTorch (float64 forward and autograd), NumPy and Keras's
shape rules and errors. Finite-difference gradients of every case are in
test_layer_conformance.py (LIST_CASES); the graph itself is in test_models_functional.py.

Tolerances: float64 on both sides, and the same arithmetic up to summation order (Dot's
matmul sums 4 products), so results agree to a few ulps: rtol=1e-12.
"""
from __future__ import annotations

import numpy as np
import pytest

import fusednn as fd
from fusednn import layers

F64 = {"dtype": "float64"}
TIGHT = {"rtol": 1e-12, "atol": 1e-13}


def _rand(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for shape in shapes]


def _keras_rank(torch, tensors):
    """Keras's broadcasting: a lower-rank input gains size-1 axes right after the batch."""
    rank = max(t.dim() for t in tensors)
    return [t.reshape(t.shape[:1] + (1,) * (rank - t.dim()) + t.shape[1:]) for t in tensors]


def _torch_reference(torch, name, tensors):
    t = _keras_rank(torch, tensors)
    if name == "Add":
        return sum(t[1:], t[0])
    if name == "Subtract":
        return t[0] - t[1]
    if name == "Multiply":
        out = t[0]
        for item in t[1:]:
            out = out * item
        return out
    if name == "Average":
        return sum(t[1:], t[0]) / len(t)
    if name == "Maximum":
        return torch.stack(torch.broadcast_tensors(*t)).amax(0)
    assert name == "Minimum"
    return torch.stack(torch.broadcast_tensors(*t)).amin(0)


ELEMENTWISE = [
    ("Add", [(3, 4, 5), (3, 4, 5), (3, 4, 5)]),
    ("Add", [(3, 4, 5), (3, 5)]),            # rank 2 against rank 3
    ("Subtract", [(3, 4, 5), (3, 1, 5)]),
    ("Multiply", [(3, 4, 5), (3, 4, 1), (3, 5)]),
    ("Average", [(3, 2, 4, 5), (3, 4, 5)]),
    ("Maximum", [(3, 4, 5), (3, 4, 5), (3, 1, 5)]),
    ("Minimum", [(3, 4, 5), (3, 5)]),
]


@pytest.mark.parametrize("name,shapes", ELEMENTWISE)
def test_elementwise_layers_match_pytorch_forward_and_backward(name, shapes):
    torch = pytest.importorskip("torch")
    xs = _rand(*shapes)
    layer = getattr(layers, name)(**F64)
    y = layer.forward(xs, training=True)
    tensors = [torch.tensor(x, requires_grad=True) for x in xs]
    expected = _torch_reference(torch, name, tensors)
    assert y.shape == tuple(expected.shape) == layer.compute_output_shape(shapes)
    np.testing.assert_allclose(y, expected.detach().numpy(), **TIGHT)
    g = np.random.default_rng(1).standard_normal(y.shape)
    expected.backward(torch.tensor(g))
    for got, tensor in zip(layer.backward(g), tensors):
        np.testing.assert_allclose(got, tensor.grad.numpy(), **TIGHT)


def test_the_output_shape_follows_keras_broadcasting():
    assert layers.Add().compute_output_shape([(None, 4, 5), (None, 5)]) == (None, 4, 5)
    assert layers.Multiply().compute_output_shape([(8, 1, 5), (None, 3, 1)]) == (8, 3, 5)
    assert layers.Maximum().compute_output_shape([(None, None, 5), (None, 3, 5)]) == \
        (None, None, 5)
    with pytest.raises(ValueError, match=r"Add 'a'.*incompatible shapes.*\(4, 5\).*\(3, 5\)"):
        layers.Add(name="a").compute_output_shape([(None, 4, 5), (None, 3, 5)])
    with pytest.raises(ValueError, match="different batch sizes"):
        layers.Add().compute_output_shape([(2, 5), (3, 5)])
    with pytest.raises(ValueError, match="different batch sizes"):
        layers.Add().forward([np.ones((2, 5)), np.ones((3, 5))])
    with pytest.raises(ValueError, match=r"Subtract 's'.*exactly 2 inputs, got 3"):
        layers.Subtract(name="s").forward([np.ones((2, 5))] * 3)
    with pytest.raises(TypeError, match=r"Add 'a'.*list of input arrays .*got ndarray"):
        layers.Add(name="a").forward(np.ones((2, 5)))
    with pytest.raises(TypeError, match="empty list"):
        layers.Add().forward([])


def test_maximum_gives_a_tie_to_the_first_input():
    # Hand computation: equal inputs, the gradient goes to the first (argmax's choice).
    x = np.array([[1.0, 2.0, 3.0]])
    layer = layers.Maximum(**F64)
    layer.forward([x, x.copy(), x - 1], training=True)
    first, second, third = layer.backward(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(first, [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(second, np.zeros((1, 3)))
    np.testing.assert_array_equal(third, np.zeros((1, 3)))


@pytest.mark.parametrize("axis,shapes", [(-1, [(2, 3, 4), (2, 3, 1), (2, 3, 2)]),
                                         (1, [(2, 3, 4), (2, 5, 4)]),
                                         (-2, [(2, 3, 4, 2), (2, 3, 1, 2)])])
def test_concatenate_matches_pytorch(axis, shapes):
    torch = pytest.importorskip("torch")
    xs = _rand(*shapes)
    layer = layers.Concatenate(axis=axis, **F64)
    y = layer.forward(xs, training=True)
    tensors = [torch.tensor(x, requires_grad=True) for x in xs]
    expected = torch.cat(tensors, dim=axis)
    np.testing.assert_array_equal(y, expected.detach().numpy())  # copies: exact
    g = np.random.default_rng(1).standard_normal(y.shape)
    expected.backward(torch.tensor(g))
    for got, tensor in zip(layer.backward(g), tensors):
        np.testing.assert_array_equal(got, tensor.grad.numpy())
    assert layer.compute_output_shape([(None,) + s[1:] for s in shapes]) == (None,) + y.shape[1:]


def test_concatenate_shape_rules():
    assert layers.Concatenate().compute_output_shape([(None, 3, 4), (None, None, 2)]) == \
        (None, 3, 6)
    assert layers.Concatenate(axis=1).compute_output_shape([(4, None, 2), (4, 3, 2)]) == \
        (4, None, 2)
    with pytest.raises(ValueError, match=r"Concatenate 'c'.*matching shapes except for the "
                                         r"concatenation axis -1"):
        layers.Concatenate(name="c").compute_output_shape([(None, 3, 4), (None, 5, 2)])
    with pytest.raises(ValueError, match="one rank"):
        layers.Concatenate().compute_output_shape([(None, 3, 4), (None, 4)])
    with pytest.raises(ValueError, match="batch axis 0 cannot be joined"):
        layers.Concatenate(axis=0).compute_output_shape([(None, 4), (None, 4)])
    with pytest.raises(TypeError, match="axis to be an int"):
        layers.Concatenate(axis="last")


@pytest.mark.parametrize("axes,shapes", [(1, [(4, 5), (4, 5)]),
                                         ((2, 1), [(4, 3, 5), (4, 5, 2)]),
                                         ((1, 2), [(4, 5, 3), (4, 2, 5)]),
                                         (-1, [(4, 3, 5), (4, 2, 5)]),
                                         ((1, 1), [(4, 5, 2, 3), (4, 5)])])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_matches_pytorch(axes, shapes, normalize):
    torch = pytest.importorskip("torch")
    x1, x2 = _rand(*shapes)
    layer = layers.Dot(axes=axes, normalize=normalize, **F64)
    y = layer.forward([x1, x2], training=True)
    t1, t2 = (torch.tensor(x, requires_grad=True) for x in (x1, x2))
    a1, a2 = (axes, axes) if isinstance(axes, int) else axes
    u1, u2 = t1, t2
    if normalize:  # cosine proximity: unit vectors along the summed axes
        u1 = torch.nn.functional.normalize(t1, dim=a1, eps=1e-12)
        u2 = torch.nn.functional.normalize(t2, dim=a2, eps=1e-12)
    # The per-sample tensordot, written as Keras's batch_dot: remaining axes of the first
    # input, then of the second.
    m1 = torch.movedim(u1, a1 % u1.dim(), -1)
    m2 = torch.movedim(u2, a2 % u2.dim(), 1)
    n, k = m1.shape[0], m1.shape[-1]
    expected = torch.bmm(m1.reshape(n, -1, k), m2.reshape(n, k, -1))
    rest = tuple(m1.shape[1:-1]) + tuple(m2.shape[2:])
    expected = expected.reshape((n,) + rest if rest else (n, 1))
    np.testing.assert_allclose(y, expected.detach().numpy(), **TIGHT)
    assert layer.compute_output_shape(shapes) == y.shape
    g = np.random.default_rng(1).standard_normal(y.shape)
    expected.backward(torch.tensor(g))
    d1, d2 = layer.backward(g)
    np.testing.assert_allclose(d1, t1.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d2, t2.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_dot_normalized_is_the_cosine_similarity():
    x1, x2 = _rand((6, 4), (6, 4))
    y = layers.Dot(axes=1, normalize=True, **F64).forward([x1, x2])
    cosine = (x1 * x2).sum(1) / np.linalg.norm(x1, axis=1) / np.linalg.norm(x2, axis=1)
    np.testing.assert_allclose(y, cosine[:, None], **TIGHT)


def test_dot_argument_and_shape_errors():
    with pytest.raises(ValueError, match=r"Dot 'd'.*axis values 5 \(at axis 2\) != 4 \(at axis "
                                         r"1\)"):
        layers.Dot(axes=(2, 1), name="d").build([(None, 3, 5), (None, 4, 2)])
    with pytest.raises(ValueError, match="exactly 2 inputs, got 3"):
        layers.Dot(axes=1).build([(None, 3)] * 3)
    with pytest.raises(ValueError, match="batch axis 0"):
        layers.Dot(axes=0).build([(None, 3), (None, 3)])
    with pytest.raises(TypeError, match="an int or a tuple of two ints"):
        layers.Dot(axes=(1, 2, 3))
    with pytest.raises(TypeError, match="an int or a tuple of two ints"):
        layers.Dot(axes="1")


def test_merging_layers_in_a_graph_pass_masks_as_keras():
    # Two masked sequences (Embedding(mask_zero=True)) merged: Add keeps the OR of the
    # masks (Keras 3.15's merging_test: a step counts where any input has it),
    # Concatenate(axis=1) joins them along time; an LSTM reading the sum skips the steps
    # both inputs pad.
    ids_a, ids_b = fd.Input((5,), dtype="int32"), fd.Input((5,), dtype="int32")
    embed_a = layers.Embedding(7, 3, mask_zero=True, name="ea")
    embed_b = layers.Embedding(7, 3, mask_zero=True, name="eb")
    ea, eb = embed_a(ids_a), embed_b(ids_b)
    added = layers.Add(name="add")([ea, eb])
    joined = layers.Concatenate(axis=1, name="join")([ea, eb])
    model = fd.Model([ids_a, ids_b], [layers.LSTM(2, name="lstm")(added), joined])
    a = np.array([[1, 2, 3, 0, 0], [4, 5, 6, 1, 2]])
    b = np.array([[1, 2, 0, 0, 0], [4, 5, 6, 1, 0]])
    model.forward([a, b])
    np.testing.assert_array_equal(model.get_layer("add").output_mask, (a != 0) | (b != 0))
    np.testing.assert_array_equal(model.get_layer("join").output_mask,
                                  np.concatenate([a != 0, b != 0], axis=1))
