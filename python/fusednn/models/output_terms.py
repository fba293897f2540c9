"""compile()'s losses, loss weights and metrics resolved per model output, under Keras 3's
log names.

One output: the logs are "loss" and each metric's name ("accuracy"). Several outputs
(a model with `output_names`): `loss`, `loss_weights`, `metrics` and `weighted_metrics`
may be one value for all outputs (loss only), a list with one entry per output, or a
dict keyed by output name; the logs are "loss" (the sum of loss_weight * output loss,
plus regularization), then "<output>_loss" (each output's loss, before its loss weight)
in output order, then "<output>_<metric>" for each output's metrics.
"""
from __future__ import annotations

import math
import numbers

from .. import losses
from .. import metrics as metrics_module


class OutputTerm:
    """What compile() asked for one output: its loss (or None), loss weight, and metrics
    (already named for the logs), unweighted and weighted by sample weights."""

    def __init__(self, name, loss, weight, metrics, weighted_metrics):
        self.name, self.loss, self.weight = name, loss, weight
        self.metrics, self.weighted_metrics = metrics, weighted_metrics

    @property
    def loss_log_name(self) -> str:
        return f"{self.name}_loss"


def resolve(what: str, output_names, loss, loss_weights, metrics, weighted_metrics):
    """[OutputTerm] for the model's outputs (output_names None or of length 1: one term
    named None, whose metrics keep their own names)."""
    several = output_names is not None and len(output_names) > 1
    names = list(output_names) if several else [None]
    per_loss = _per_output(what, "loss", loss, names, broadcast=True)
    per_weight = _per_output(what, "loss_weights", loss_weights, names, broadcast=not several)
    per_metrics = _per_output(what, "metrics", metrics, names, broadcast=not several)
    per_weighted = _per_output(what, "weighted_metrics", weighted_metrics, names,
                               broadcast=not several)
    terms = []
    for name, out_loss, weight, out_metrics, out_weighted in zip(
            names, per_loss, per_weight, per_metrics, per_weighted):
        resolved_loss = None if out_loss is None else losses.get(out_loss)
        if getattr(resolved_loss, "reduction", "sum_over_batch_size") in ("none", None):
            raise ValueError(f"{what}: loss {resolved_loss.name!r} has reduction="
                             f"{resolved_loss.reduction!r}, which gives one value per sample; "
                             "training needs one value: use 'sum_over_batch_size' or 'sum'")
        unweighted = _named_metrics(out_metrics, resolved_loss, name, taken=set())
        weighted = _named_metrics(out_weighted, resolved_loss, name,
                                  taken={m.name for m in unweighted})
        terms.append(OutputTerm(name, resolved_loss, _loss_weight(what, weight),
                                unweighted, weighted))
    if several and all(term.loss is None for term in terms):
        raise ValueError(f"{what}: every output's loss is None; give at least one output a loss")
    log_names = ["loss"] + [term.loss_log_name for term in terms if several and term.loss]
    log_names += [m.name for term in terms for m in term.metrics + term.weighted_metrics]
    duplicated = sorted({n for n in log_names if log_names.count(n) > 1})
    if duplicated:
        raise ValueError(f"{what}: metric names must be unique and not 'loss', got "
                         f"{log_names[1:]} ({', '.join(duplicated)} twice)")
    return terms


def _per_output(what: str, argument: str, value, names: list, broadcast: bool) -> list:
    """value spread over the outputs: one per output from a list or dict, or the same
    value for all when `broadcast` (a single output always takes the value whole)."""
    if len(names) == 1:
        if isinstance(value, dict):
            return [_only_entry(what, argument, value)]
        if argument in ("loss", "loss_weights") and isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise ValueError(f"{what}: {argument} for a model with one output must be one "
                                 f"value or a list of one, got {len(value)} entries")
            return [value[0]]
        return [value]
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"{what}: {argument} names outputs {unknown} that the model does "
                             f"not have; its outputs are {names}")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        # As Keras 3: a list is always one entry per output (metrics=["mae", "mse"] gives
        # out_a_mae and out_b_mse), and must match the outputs' number.
        if len(value) != len(names):
            raise ValueError(f"{what}: {argument} as a list needs one entry per output "
                             f"({len(names)}: {names}), got {len(value)}")
        return list(value)
    if value is None or broadcast:
        return [value] * len(names)
    raise ValueError(f"{what}: for a model with outputs {names}, {argument} must be a list "
                     f"with one entry per output or a dict keyed by output name, got {value!r}")



def _only_entry(what: str, argument: str, value: dict):
    if len(value) != 1:
        raise ValueError(f"{what}: {argument} as a dict for a model with one output must have "
                         f"one entry, got keys {sorted(value)}")
    return next(iter(value.values()))


def _loss_weight(what: str, weight) -> float:
    if weight is None:
        return 1.0
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) \
            or not math.isfinite(weight):
        raise ValueError(f"{what}: loss_weights must be finite numbers, got {weight!r}")
    return float(weight)


def _log_name(output_name, metric_name: str) -> str:
    return metric_name if output_name is None else f"{output_name}_{metric_name}"


def _named_metrics(metrics, loss, output_name, taken: set) -> list:
    """The metrics as Metric objects under their log names: a name as given ("mse"), an
    object or function under its own name; a weighted metric whose name an unweighted one
    of the same output took becomes "weighted_<name>". As in Keras 3, a Metric object
    given is used (and renamed) itself."""
    if metrics is None:
        metrics = []
    elif isinstance(metrics, (str, dict, metrics_module.Metric)) or callable(metrics):
        metrics = [metrics]
    named = []
    for identifier in metrics:
        metric = metrics_module.get(identifier, loss=loss)
        base_name = identifier if isinstance(identifier, str) else metric.name
        log_name = _log_name(output_name, base_name)
        if log_name in taken:
            log_name = _log_name(output_name, "weighted_" + base_name)
        metric.name = log_name
        named.append(metric)
    return named
