"""A model's "gradients ready" hooks: callables called with a layer as soon as a backward
pass has finished adding into that layer's gradient buffers.

fd.distribute uses them to start averaging a bucket of gradients over the ranks while
the backward of the earlier layers still runs (PyTorch DDP's overlap). Sequential calls
them after every step of its backward; Functional after the last backward call of each
layer in the pass (a layer called at several nodes accumulates its gradients over all of
them). A fused pair of layers (fusednn.fusion.ConvPool on a GPU) is reported as the one
step it is. Each hook is called once per layer per backward pass, and only for layers
whose backward ran.
"""
from __future__ import annotations


class GradientsReady:
    """The hooks of one model, called in the order they were added."""

    def __init__(self):
        self._hooks: list = []

    def add(self, hook) -> None:
        if not callable(hook):
            raise TypeError(f"gradients_ready.add expects a callable(layer), got "
                            f"{type(hook).__name__}")
        self._hooks.append(hook)

    def remove(self, hook) -> None:
        self._hooks.remove(hook)

    def __call__(self, layer) -> None:
        for hook in self._hooks:
            hook(layer)
