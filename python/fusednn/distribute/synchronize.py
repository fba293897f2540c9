"""The collectives over a model: averaging its gradients, broadcasting its weights and
an optimizer's state, and checking that every rank holds the same model."""
from __future__ import annotations

from . import environment, overlap
from .buckets import run_in_buckets


def allreduce_gradients(model) -> None:
    """Replaces every trainable variable's gradient with its mean over the ranks.

    For the hand-written protocol (a GAN's loop): call it after backward, before
    optimizer.step(model). In place, in float buckets of a few MB; nothing in a single
    process. For fit's model, whose buckets started during backward (distribute/overlap.py),
    it waits for them.
    """
    comm = environment.communicator()
    if comm.size == 1:
        return
    averaging = overlap.attached(model)
    if averaging is not None:
        averaging.finish()
        return
    grads = [var.grad for var in _trainable_variables(model)]

    def average(flat):
        comm.allreduce_sum(flat)
        flat /= comm.size

    run_in_buckets(grads, average)


def broadcast_variables(model_or_optimizer, root: int = 0) -> None:
    """Gives every rank root's weights (a layer or model) or root's state (an optimizer:
    iterations, learning rate, slots), so that all ranks start identical. For a model it
    first checks that every rank holds the same variables (check_same_model)."""
    comm = environment.communicator()
    if comm.size == 1:
        return
    if hasattr(model_or_optimizer, "get_state") and hasattr(model_or_optimizer, "set_state"):
        state = comm.broadcast_object(model_or_optimizer.get_state() if comm.rank == root
                                      else None, root)
        model_or_optimizer.set_state(state)
        return
    check_same_model(model_or_optimizer)
    values = [var.value for var in _variables(model_or_optimizer)]
    run_in_buckets(values, lambda flat: comm.broadcast(flat, root))


def check_same_model(model) -> None:
    """Raises ValueError on every rank, naming the ranks and the first difference, when
    the ranks' models differ in the number, shapes or dtypes of their variables."""
    comm = environment.communicator()
    signature = [(tuple(var.shape), str(var.value.dtype)) for var in _variables(model)]
    signatures = comm.allgather_object(signature)
    for other_rank, other in enumerate(signatures):
        if other == signatures[0]:
            continue
        if len(other) != len(signatures[0]):
            difference = (f"rank 0 has {len(signatures[0])} variables, rank {other_rank} has "
                          f"{len(other)}")
        else:
            index = next(i for i, (a, b) in enumerate(zip(signatures[0], other)) if a != b)
            difference = (f"variable {index} has shape {signatures[0][index][0]} "
                          f"{signatures[0][index][1]} on rank 0 and {other[index][0]} "
                          f"{other[index][1]} on rank {other_rank}")
        raise ValueError(f"fusednn.distribute: the model differs across ranks ({difference}); "
                         "every rank must build the same model")


def _variables(model) -> list:
    _require_built(model)
    return list(model.variables)


def _trainable_variables(model_or_variables) -> list:
    """A model's trainable variables, or the trainable ones of an iterable of Variables
    (what optimizer.step accepts too)."""
    if not hasattr(model_or_variables, "trainable_variables"):
        return [var for var in model_or_variables if var.trainable]
    _require_built(model_or_variables)
    return list(model_or_variables.trainable_variables)


def _require_built(model) -> None:
    if not getattr(model, "built", True):
        raise ValueError(f"fusednn.distribute: {model._label()} has no weights yet; give its "
                         "first layer input_shape= or call model.build(input_shape) first, so "
                         "that every rank starts from root's weights")
