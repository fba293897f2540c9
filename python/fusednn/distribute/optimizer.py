"""DistributedOptimizer: an optimizer whose step first averages the gradients over the
ranks (Horovod's idea), so that fit, train_on_batch and hand-written loops all train
data-parallel through the one call they already make, optimizer.step(model)."""
from __future__ import annotations

from .synchronize import allreduce_gradients


class _AveragingStep:
    """optimizer.step(model) = allreduce_gradients(model), then the optimizer's own step."""

    def __init__(self, optimizer):
        self._step = type(optimizer).step.__get__(optimizer)

    def __call__(self, layer_or_model) -> None:
        allreduce_gradients(layer_or_model)
        self._step(layer_or_model)


def DistributedOptimizer(optimizer):
    """Makes `optimizer` average the gradients over the ranks before each step; returns it.

    The optimizer keeps its own class (only its step is wrapped, on this instance), so a
    checkpoint rank 0 writes names SGD or Adam and loads in a single process. Wrapping
    twice changes nothing. Only Variables reached through a model or layer are averaged:
    pass the model to step, as fit and the lecture's loops do.
    """
    if not is_distributed(optimizer):
        if not callable(getattr(type(optimizer), "step", None)):
            raise TypeError(f"fusednn.distribute.DistributedOptimizer expects a "
                            f"fusednn.optimizers.Optimizer, got {type(optimizer).__name__}")
        optimizer.step = _AveragingStep(optimizer)
    return optimizer


def is_distributed(optimizer) -> bool:
    return isinstance(getattr(optimizer, "__dict__", {}).get("step"), _AveragingStep)
