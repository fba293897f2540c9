"""Model: the Keras training API every model shares (compile, fit, evaluate, predict,
train/test/predict_on_batch, summary, save), written against a small model interface
so that Sequential and a later functional Model run the same loop.

The interface a model implements (Sequential does; see docs/ARCHITECTURE.md):
    forward(x, training) / backward(dy)          the layer protocol over the whole model
    outputs_softmax, logits_of_last_forward(),   the softmax fusion with cross-entropy
    backward_from_logits(dlogits)                losses (skips the softmax Jacobian)
    compute_output_shape(input_shape)            to check targets before a forward runs
    layers                                       the layers, for the summary table
    _input_grad_unused()                         a context in which the model may skip the
                                                 gradient w.r.t. its own input
plus what every Layer has (zero_grad, regularization_loss, variables, build, device,
dtype, get_config).

Devices: fit/evaluate/predict/train_on_batch copy each NumPy batch of x and y to the
model's device (the model's job: the ops never copy), and predict returns NumPy for
NumPy input.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

from .. import backend, distribute, io, keras_weights, optimizers, utils
from .. import callbacks as callbacks_module
from .. import export as export_module
from .. import metrics as metrics_module
from ..errors import StateError
from ..fit_progress import FitProgress
from ..layers.base import Layer
from . import data_adapters as adapters
from . import output_terms, weighting
from .subclassed import SubclassedModel
from .summary import summary_lines
from .data import (_as_batch_arrays, _check_batch_size, _check_data, _check_verbose,
                   _format_results, first_array, map_arrays, num_samples)

# Keras's warning when a generator or iterator stops before the batches asked for.
_RAN_OUT = ("Your input ran out of data; interrupting training. Make sure that your dataset "
            "or generator can generate at least `steps_per_epoch * epochs` batches.")


class Model(SubclassedModel, Layer):
    """The training API on top of the layer protocol; subclasses define the structure
    (Sequential, Functional, or a user's subclass with `call`: models/subclassed.py)."""

    # A model's layers may change (add, pop), so its build_for checks every time.
    _remembers_shapes = False
    # Keras has one Model class: Model(inputs, outputs) makes a functional model, of the
    # class models/functional.py sets here (importing it would make an import cycle).
    _functional_class = None

    def __new__(cls, *args, **kwargs):
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            return super().__new__(Model._functional_class)
        return super().__new__(cls)

    def __init__(self, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self.optimizer = None
        self.loss = None
        self.weighted_metrics: list[metrics_module.Metric] = []
        # Keras's loss trackers: "loss", then each output's "<output>_loss" (several outputs).
        self._loss_trackers: list[metrics_module.Mean] = []
        self._terms: list[output_terms.OutputTerm] = []
        self.stop_training = False
        self.history = None
        # fit's position (FitProgress) while it runs, and where BackupAndRestore resumes it.
        self._fit_progress = None
        self._resume_from = None

    # ----- compile / train / evaluate ---------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None) -> None:
        """Sets the optimizer, loss(es) and metrics (names as in Keras, or objects).

        As in Keras 3, `metrics` ignore sample weights and `weighted_metrics` use them;
        a weighted metric named like an unweighted one is logged as "weighted_<name>".
        A model with several outputs (`output_names`) takes one loss for all outputs or
        one per output (list or dict by output name), likewise loss_weights, metrics and
        weighted_metrics; see models/output_terms.py for the names in the logs.
        """
        what = self._label() + ".compile"
        self.optimizer = optimizers.get(optimizer)
        self._terms = output_terms.resolve(what, getattr(self, "output_names", None), loss,
                                           loss_weights, metrics, weighted_metrics)
        # As given (one value, or a list / dict per output): what model.save writes.
        self.compile_arguments = {"loss": loss, "loss_weights": loss_weights,
                                  "metrics": metrics, "weighted_metrics": weighted_metrics}
        # model.loss as given: one Loss (also when it serves every output, which saving
        # supports), or a list / dict of them, one per output.
        several = self._several_outputs()
        if several and isinstance(loss, (list, tuple)):
            self.loss = [term.loss for term in self._terms]
        elif several and isinstance(loss, dict):
            self.loss = {term.name: term.loss for term in self._terms if term.loss is not None}
        else:
            self.loss = self._terms[0].loss
        self.weighted_metrics = [m for term in self._terms for m in term.weighted_metrics]
        self._loss_trackers = [metrics_module.Mean(name="loss")] + [
            metrics_module.Mean(name=term.loss_log_name)
            for term in self._terms if term.loss is not None and self._several_outputs()]

    def _several_outputs(self) -> bool:
        return len(getattr(self, "output_names", None) or []) > 1

    @property
    def metrics(self) -> list:
        """Keras 3's model.metrics: the loss trackers ("loss", then each output's), the
        compiled metrics (per output: unweighted, then weighted), then Metric objects
        assigned as attributes of the model (a subclass's own trackers). fit resets them
        all when an epoch starts, evaluate when it starts (Keras's reset_metrics)."""
        listed = self._loss_trackers + [m for term in self._terms
                                        for m in term.metrics + term.weighted_metrics]
        seen = {id(m) for m in listed}
        return listed + [value for value in vars(self).values()
                         if isinstance(value, metrics_module.Metric) and id(value) not in seen]

    @property
    def metrics_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def reset_metrics(self) -> None:
        for metric in self.metrics:
            metric.reset_state()

    def get_metrics_result(self) -> dict:
        """{metric name: result()} for every metric in model.metrics (a dict result is
        merged in, as Keras)."""
        logs = {}
        for metric in self.metrics:
            value = metric.result()
            if isinstance(value, dict):
                logs.update(value)
            else:
                logs[metric.name] = value
        return logs

    def _logs_of_step(self, logs) -> dict:
        """Keras's _get_metrics_result_or_logs: the metrics' results when the step's logs
        have the same keys (the default steps), else the step's own logs as a dict."""
        results = self.get_metrics_result()
        if isinstance(logs, dict) and set(logs) == set(results):
            return results
        if not isinstance(logs, dict):
            raise TypeError(f"{self._label()}: train_step / test_step must return a dict of "
                            f"logs, got {type(logs).__name__}")
        return {name: _log_value(value) for name, value in logs.items()}

    def _require_compiled(self, what: str) -> None:
        """compile() must have run; a loss is needed unless the step `what` uses
        (train_step for fit and train_on_batch, test_step for evaluate) is overridden."""
        if self.optimizer is None:
            raise StateError(f"{self._label()}.{what}: the model must be compiled first; call "
                             "model.compile(optimizer, loss, metrics)")
        step = {"fit": "train_step", "train_on_batch": "train_step",
                "evaluate": "test_step", "test_on_batch": "test_step"}.get(what)
        overridden = step is not None and getattr(type(self), step) is not getattr(Model, step)
        if self.loss is None and not overridden:
            raise StateError(f"{self._label()}.{what}: compile() was called without a loss; "
                             "call model.compile(optimizer, loss=...)")

    def _to_model_device(self, value):
        """An array, or a list or dict of arrays (None entries kept), on the model's device."""
        def move(array):
            # NumPy goes to a GPU model's device; other mixes are left for the layers to reject.
            if array is not None and self.device == "cuda" and not backend.is_cuda_array(array):
                return backend.to_device(array, "cuda")
            return array
        return None if value is None else map_arrays(value, move)

    def _uses_softmax_fusion(self) -> bool:
        # Losses offer the method only when they take probabilities (from_logits=False).
        return (not self._several_outputs() and self.outputs_softmax
                and hasattr(self.loss, "value_and_grad_from_logits"))

    @staticmethod
    def _per_output(values) -> list:
        """Targets or predictions (an array, or a list or dict in output order) as a list."""
        if isinstance(values, dict):
            return list(values.values())
        return list(values) if isinstance(values, (list, tuple)) else [values]

    def _output_losses(self, y, y_pred, sample_weight, with_grad: bool) -> list:
        """(term, loss value or None, gradient or None) for every output, weighted by the
        samples' weights as Keras does (models/weighting.py), before the loss weights."""
        results = []
        for term, y_true, pred in zip(self._terms, self._per_output(y),
                                      self._per_output(y_pred)):
            if term.loss is None:
                results.append((term, None, None))
                continue
            if with_grad:
                value, grad = term.loss.value_and_grad(y_true, pred)
            else:
                value, grad = term.loss(y_true, pred), None
            if sample_weight is not None:
                value = weighting.weighted_loss(term.loss, y_true, pred, sample_weight)
                grad = None if grad is None else weighting.weighted_grad(term.loss, grad,
                                                                         sample_weight)
            results.append((term, float(value), grad))
        return results

    def _total_loss(self, parts) -> tuple[float, dict]:
        """(sum of loss_weight * output loss, {"<output>_loss": loss} with several outputs)."""
        total = sum(term.weight * value for term, value, _ in parts if value is not None)
        if not self._several_outputs():
            return total, {}
        return total, {term.loss_log_name: value for term, value, _ in parts if value is not None}

    def _train_step(self, x, y, sample_weight=None) -> tuple[float, object, dict]:
        """One optimizer update on the batch; returns (loss incl. regularization,
        predictions, each output's loss when there are several).

        sample_weight (N,) NumPy or None weights each sample's loss as Keras does
        (models/weighting.py), in the value and in the gradient.
        """
        self.zero_grad()
        self._check_targets(x, y)
        y_pred = self.forward(x, training=True)
        checked = utils.numerics_checked()
        if checked:
            utils.check_finite(y, f"the targets (y) given to {self._label()} hold non-finite "
                                  "values")
        if self._uses_softmax_fusion():
            logits = self.logits_of_last_forward()
            loss_value, grad = self.loss.value_and_grad_from_logits(y, logits)
            if sample_weight is not None:
                loss_value = weighting.weighted_loss_from_logits(self.loss, y, logits,
                                                                 sample_weight)
                grad = weighting.weighted_grad(self.loss, grad, sample_weight)
            output_losses, backward = {}, self.backward_from_logits
        else:
            parts = self._output_losses(y, y_pred, sample_weight, with_grad=True)
            loss_value, output_losses = self._total_loss(parts)
            grads = [grad if grad is None or term.weight == 1.0 else grad * term.weight
                     for term, _, grad in parts]
            grad, backward = (grads if self._several_outputs() else grads[0]), self.backward
        if checked:
            name = getattr(self.loss, "name", "of the outputs")
            utils.check_finite(np.asarray(loss_value), f"loss '{name}' is non-finite for "
                               "finite predictions and targets")
        with self._input_grad_unused():
            backward(grad)
        # Keras reports the loss at the weights the gradient was taken at, penalties included.
        loss_value = float(loss_value) + self.regularization_loss()
        self.optimizer.step(self)
        return loss_value, y_pred, output_losses

    def _check_targets(self, x, y) -> None:
        """The losses' checks of y (class indices in range, ...) before the forward runs."""
        if not hasattr(x, "shape"):
            return  # several inputs: the losses check their targets after the forward
        shapes = self.compute_output_shape((None,) + tuple(x.shape[1:]))
        # One shape is a tuple; several (or a list of one) come as a list or dict of them.
        shapes = self._per_output(shapes) if isinstance(shapes, (list, dict)) else [shapes]
        xp = backend.get_array_module(x)
        for term, y_true, shape in zip(self._terms, self._per_output(y), shapes):
            if term.loss is None or any(size is None for size in shape[1:]):
                continue  # the output's size is known only after the forward; the loss checks then
            stand_in = xp.broadcast_to(xp.zeros((), self.dtype), (len(x),) + tuple(shape[1:]))
            term.loss.check_targets(y_true, stand_in)

    @contextlib.contextmanager
    def _input_grad_unused(self):
        """The training step reads only weight gradients; a model whose first layer can skip
        the gradient w.r.t. the model's input overrides this (Sequential does)."""
        yield

    # ----- Keras 3's step API: fit / evaluate / predict call these once per batch -----
    def train_step(self, data) -> dict:
        """One optimizer update on a batch; returns the logs (Keras 3's train_step).

        data is the batch as Keras passes it, on the model's device: (x, y),
        (x, y, sample_weight), or x alone (a tuple (x,) for a list of inputs). The
        default is fusednn's fused step (the softmax fused with cross-entropy when the
        model ends in one): forward, the losses' gradients weighted as Keras weights
        samples, backward, optimizer.step, then the loss trackers and compute_metrics.
        An override composes the layer protocol (forward, backward, zero_grad,
        optimizer.step(model)) and returns a dict of floats; see docs/ARCHITECTURE.md.
        """
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        loss_value, y_pred, output_losses = self._train_step(x, y, sample_weight)
        self._track_losses(loss_value, output_losses, y_pred)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data) -> dict:
        """The loss and metrics of a batch in inference mode; returns the logs."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self.forward(x, training=False)
        loss_value, output_losses = self._total_loss(
            self._output_losses(y, y_pred, sample_weight, with_grad=False))
        self._track_losses(loss_value + self.regularization_loss(), output_losses, y_pred)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def predict_step(self, data):
        """The outputs for a batch: data is x (a tuple (x,) for a list of inputs)."""
        x, _, _ = unpack_x_y_sample_weight(data)
        return self.forward(x, training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss of y_pred against y (sample-weighted as Keras, summed over
        outputs with their loss weights) plus the weight regularizers' penalties, as a
        float. It updates no tracker; x and training are Keras's, unused here."""
        self._require_compiled("compute_loss")
        total, _ = self._total_loss(self._output_losses(
            self._targets(self._label() + ".compute_loss", y), y_pred, sample_weight,
            with_grad=False))
        return float(total) + self.regularization_loss()

    def compute_metrics(self, x, y, y_pred, sample_weight=None) -> dict:
        """Updates the compiled metrics with the batch (weighted_metrics with
        sample_weight) and returns every metric's result (get_metrics_result)."""
        for term, y_true, pred in zip(self._terms, self._per_output(y),
                                      self._per_output(y_pred)):
            for metric in term.metrics:
                metric.update_state(y_true, pred)
            for metric in term.weighted_metrics:
                metric.update_state(y_true, pred, sample_weight=sample_weight)
        return self.get_metrics_result()

    def _track_losses(self, loss_value, output_losses: dict, y_pred) -> None:
        """The loss trackers weigh each batch's loss by its size, as Keras's."""
        count = len(self._per_output(y_pred)[0])
        self._loss_trackers[0].update_state(loss_value, sample_weight=count)
        for tracker in self._loss_trackers[1:]:
            tracker.update_state(output_losses[tracker.name], sample_weight=count)

    def _prepared(self, what: str, x, y, sample_weight) -> tuple:
        """A batch on the model's device, with y as one target per output, packed as Keras
        hands it to train_step / test_step (pack_x_y_sample_weight)."""
        return pack_x_y_sample_weight(self._to_model_device(x),
                                      self._to_model_device(self._targets(what, y)),
                                      sample_weight)

    def _running_means(self) -> tuple:
        """The loss tracker and {name: metric} for the rest of model.metrics: what a
        FitProgress (and so BackupAndRestore) holds of an epoch's running results."""
        metrics = self.metrics or [metrics_module.Mean(name="loss")]
        return metrics[0], {metric.name: metric for metric in metrics[1:]}

    def _resume_running_means(self, what: str, progress) -> None:
        """Loads the metrics' state a mid-epoch backup saved (each metric's `variables`, by
        log name; see BackupAndRestore) into the model's metrics."""
        loss_tracker, metrics = self._running_means()
        unknown = sorted(set(progress.metric_means) - set(metrics))
        if unknown:
            raise ValueError(f"{what}: the mid-epoch backup holds metrics {unknown} that this "
                             f"model does not have (its metrics: {sorted(metrics)}); resume "
                             "with the model compiled as when the backup was taken")
        loss_tracker._set_variables(progress.loss_mean)
        for name, saved in progress.metric_means.items():
            metrics[name]._set_variables(saved)
        progress.loss_mean, progress.metric_means = loss_tracker, metrics

    def _targets(self, what: str, y):
        """y for the model's outputs: an array for one output; a list in output order
        (from a list or a dict keyed by output name) for several."""
        if y is None:
            return None
        names = list(getattr(self, "output_names", None) or [])
        if not self._several_outputs():
            if isinstance(y, dict) and (len(y) != 1 or (names and set(y) != set(names))):
                raise ValueError(f"{what}: the model has one output {names}, so y must be one "
                                 f"array (or a dict with that one key), got keys {sorted(y)}")
            if isinstance(y, (list, tuple)) and len(y) != 1:
                raise ValueError(f"{what}: the model has one output, so y must be one array "
                                 f"(or a list of one), got a list of {len(y)} arrays")
            return self._per_output(y)[0]
        if isinstance(y, dict):
            unknown = sorted(set(y) - set(names))
            if unknown:
                raise ValueError(f"{what}: y names outputs {unknown} that the model does not "
                                 f"have; its outputs are {names}")
            y = [y.get(name) for name in names]
        elif not isinstance(y, list) or len(y) != len(names):
            raise ValueError(f"{what}: the model has outputs {names}, so y must be a list of "
                             f"{len(names)} arrays or a dict keyed by output name, got "
                             + (f"a list of {len(y)}" if isinstance(y, list)
                                else f"one {type(y).__name__}"))
        for term, target in zip(self._terms, y):
            if target is None and (term.loss or term.metrics or term.weighted_metrics):
                raise ValueError(f"{what}: y has no target for output '{term.name}', which "
                                 "has a loss or metrics")
        return y

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
            validation_batch_size=None):
        """Trains for `epochs` passes over the data; returns a History (Keras 3's arguments).

        x, y: NumPy (or CuPy) arrays (N, ...), cut into batches of batch_size; or x alone a
        generator / iterator / fusednn.utils.PyDataset yielding (x, y) or
        (x, y, sample_weight) batches (see models/data_adapters.py for Keras's rules on
        steps_per_epoch). validation_split takes the last fraction of the array samples,
        before shuffling (as Keras); validation_data (x_val, y_val[, sample_weight_val]) or
        a generator / PyDataset takes precedence, read for validation_steps batches (all
        when None). shuffle reorders array samples every epoch from fusednn's generator
        (fd.utils.set_random_seed makes it repeatable). sample_weight (N,) or class_weight
        {class: weight} weight each sample's loss (see models/weighting.py).
        verbose: 0 silent, 1 ("auto") progress bar, 2 one line per epoch. The logged
        loss is the batch-size-weighted mean of the batch losses plus regularization.
        """
        what = self._label() + ".fit"
        self._require_compiled("fit")
        verbose = _check_verbose(what, verbose)
        for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{what}: {name} must be an int >= 0, got {value!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"{what}: shuffle must be True or False, got {shuffle!r}")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"{what}: validation_split must be a float in [0, 1), "
                             f"got {validation_split!r}")
        steps_per_epoch = adapters.check_steps(what, "steps_per_epoch", steps_per_epoch)
        validation_steps = adapters.check_steps(what, "validation_steps", validation_steps)
        class_weight = adapters.check_class_weight(what, class_weight)
        if class_weight is not None and sample_weight is not None:
            raise ValueError(f"{what}: class_weight and sample_weight cannot be used at the "
                             "same time")
        data, validation = self._fit_data(what, x, y, sample_weight, class_weight, batch_size,
                                          shuffle, steps_per_epoch, validation_split)
        if validation_data is not None:
            validation = self._validation_data(what, validation_data, validation_batch_size
                                               or batch_size, validation_steps)
        elif validation is not None:
            validation = adapters.ArrayData(*validation, data.batch_size, shuffle=False)

        steps = data.steps
        history = callbacks_module.History()
        progress = [callbacks_module.ProgbarLogger()] if verbose else []
        callback_list = callbacks_module.CallbackList(
            distribute.fit_callbacks(progress + list(callbacks or []) + [history]), self,
            {"verbose": verbose, "epochs": int(epochs), "steps": steps})
        self.stop_training = False
        self.history = history
        self._resume_from = None  # BackupAndRestore may set it in on_train_begin
        callback_list.on_train_begin()
        resume, self._resume_from = self._resume_from, None
        first_epoch = int(initial_epoch)
        if resume is not None:
            if resume.step and not data.mid_epoch_resumable:
                raise ValueError(f"{what}: the backup was taken in the middle of an epoch, which "
                                 "resumes only on arrays or a PyDataset, not on a generator or "
                                 "iterator; use BackupAndRestore(save_freq='epoch') with them")
            resume.check_fits(what, data.samples, steps, data.shuffle)
            first_epoch = max(first_epoch, resume.epoch)
        logs: dict = {}
        for epoch in range(first_epoch, int(epochs)):
            callback_list.on_epoch_begin(epoch)
            self.reset_metrics()
            if resume is not None and resume.epoch == epoch and resume.step > 0:
                # A backup from inside this epoch: its order, position and running means.
                progress = resume
                self._resume_running_means(what, progress)
                logs = progress.logs()
            else:
                progress = FitProgress(epoch, 0, steps, data.samples, data.new_order(),
                                       *self._running_means())
            resume = None
            self._fit_progress = progress
            with contextlib.closing(data.batches(progress.order, progress.step)) as batches:
                for step, batch in enumerate(batches, start=progress.step):
                    callback_list.on_train_batch_begin(step)
                    logs = self._logs_of_step(self.train_step(self._prepared(what, *batch)))
                    progress.step = step + 1
                    callback_list.on_train_batch_end(step, dict(logs))
                    if self.stop_training:
                        break
            if data.ran_out:
                warnings.warn(_RAN_OUT, UserWarning, stacklevel=2)
                self.stop_training = True
                if progress.step == 0:
                    break  # an epoch without a batch has no logs to report
            data.on_epoch_end()
            epoch_logs = dict(logs)
            if validation is not None:
                val_logs = self._evaluate_data(what + " validation_data", validation, verbose=0)
                epoch_logs.update({"val_" + key: value for key, value in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            logs = epoch_logs
            if self.stop_training:
                break
        callback_list.on_train_end(logs)
        self._fit_progress = None
        return history

    def _fit_data(self, what, x, y, sample_weight, class_weight, batch_size, shuffle,
                  steps_per_epoch, validation_split):
        """fit's training data, and the (x, y, sample_weight) split off for validation."""
        if adapters.is_stream(x):
            adapters.no_array_arguments(what, "x", y=y, sample_weight=sample_weight,
                                        batch_size=batch_size)
            if validation_split:
                raise ValueError(f"{what}: validation_split needs array data; with a generator, "
                                 "iterator or PyDataset pass validation_data")
            return adapters.stream(what, x, steps_per_epoch, self._fit_needs_targets(),
                                   class_weight), None
        x, y = _check_data(what, x, y, targets_required=self._fit_needs_targets())
        batch_size = _check_batch_size(what, batch_size)
        samples = num_samples(x)
        weights = adapters.check_sample_weight(what, sample_weight, samples)
        validation = None
        if validation_split > 0:
            split_at = int(math.floor(samples * (1.0 - validation_split)))
            if split_at == 0 or split_at == samples:
                raise ValueError(f"{what}: {samples} samples are too few to split off "
                                 f"validation_split={validation_split} of them for validation")
            validation = (map_arrays(x, lambda a: a[split_at:]),
                          map_arrays(y, lambda a: a[split_at:]),
                          None if weights is None else weights[split_at:])
            x, y = map_arrays(x, lambda a: a[:split_at]), map_arrays(y, lambda a: a[:split_at])
            weights = None if weights is None else weights[:split_at]
        if class_weight is not None:  # after the split: as in Keras, validation is unweighted
            weights = adapters.class_weights_of(what, y, class_weight)
        # In a distributed job each rank trains on its shard (fd.distribute).
        data = adapters.ArrayData(x, y, weights, batch_size, bool(shuffle), sharded=True)
        if steps_per_epoch is not None:
            if steps_per_epoch > data.steps:
                raise ValueError(f"{what}: steps_per_epoch={steps_per_epoch} is more than the "
                                 f"{data.steps} batches of {batch_size} that {data.samples} "
                                 "samples make")
            data.steps = steps_per_epoch
        return data, validation

    def _fit_needs_targets(self) -> bool:
        """Keras's fit takes x alone (a GAN's train_step reads only images); the default
        train_step needs y for its loss, so fusednn asks for y unless it is overridden."""
        return type(self).train_step is Model.train_step

    def _validation_data(self, what, validation_data, batch_size, steps):
        if adapters.is_stream(validation_data):
            return adapters.stream(what + " validation_data", validation_data, steps, True)
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError(f"{what}: validation_data must be a tuple (x_val, y_val) or "
                             f"(x_val, y_val, sample_weight_val), or a generator or PyDataset, "
                             f"got {type(validation_data).__name__}"
                             + (f" of length {len(validation_data)}"
                                if isinstance(validation_data, (tuple, list)) else ""))
        return self._array_data(what + " validation_data", *validation_data,
                                batch_size=batch_size, steps=steps)

    def _array_data(self, what, x, y, sample_weight=None, batch_size=None, steps=None):
        """Checked arrays in order, for evaluation."""
        x, y = _check_data(what, x, y)
        data = adapters.ArrayData(x, y, adapters.check_sample_weight(what, sample_weight,
                                                                     num_samples(x)),
                                  _check_batch_size(what, batch_size), shuffle=False)
        if steps is not None:
            data.steps = min(steps, data.steps)
        return data

    def _evaluate_data(self, what: str, data, verbose: int) -> dict:
        data = distribute.evaluation_data(data)   # this rank's part in a job (fd.distribute)
        progbar = (callbacks_module.Progbar(data.steps, verbose=verbose)
                   if verbose and distribute.prints() else None)
        self.reset_metrics()
        logs = None
        with contextlib.closing(data.batches(None, 0)) as batches:
            for step, batch in enumerate(batches):
                logs = self._logs_of_step(self.test_step(self._prepared(what, *batch)))
                if progbar is not None:
                    progbar.update(step + 1, list(logs.items()))
        loss_tracker, metrics = self._running_means()
        distribute.sum_states([loss_tracker, *metrics.values()])   # over all ranks' samples
        if logs is None and not getattr(loss_tracker, "count", 0):   # a rank may have none
            raise ValueError(f"{what}: the data yielded no batch to evaluate on (an exhausted "
                             "generator? give validation_steps / steps with one that repeats, "
                             "or use a PyDataset)")
        # The metrics' results over every rank's samples (the step's own logs for an
        # overridden test_step that logs something else).
        logs = self._logs_of_step(self.get_metrics_result() if logs is None else logs)
        if data.ran_out:
            warnings.warn(_RAN_OUT, UserWarning, stacklevel=3)
        if progbar is not None:
            progbar.update(step + 1, list(logs.items()), finalize=True)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 steps=None, return_dict=False):
        """Loss (and metrics) on the data in inference mode, averaged over samples.

        x, y arrays (with sample_weight), or x a generator / iterator / PyDataset of
        (x, y[, sample_weight]) batches read for `steps` batches (all when None).
        Returns the loss as a float when no metrics were compiled, else
        [loss, metric1, ...] in compile order, or a dict with return_dict=True.
        """
        what = self._label() + ".evaluate"
        self._require_compiled("evaluate")
        verbose = _check_verbose(what, verbose)
        steps = adapters.check_steps(what, "steps", steps)
        if adapters.is_stream(x):
            adapters.no_array_arguments(what, "x", y=y, sample_weight=sample_weight,
                                        batch_size=batch_size)
            data = adapters.stream(what, x, steps, True)
        else:
            data = self._array_data(what, x, y, sample_weight, batch_size, steps)
        return _format_results(self._evaluate_data(what, data, verbose), return_dict)

    def predict(self, x, batch_size=None, verbose=0, steps=None):
        """Outputs for x in inference mode, computed in batches.

        x an array (N, ...), or a generator / iterator / PyDataset of batches (x alone or
        the first item of a tuple) read for `steps` batches (all when None). Returns NumPy
        for NumPy (or list) input, CuPy for CuPy input. verbose=1 shows a progress bar
        (Keras shows one by default; here it is off by default).
        """
        what = self._label() + ".predict"
        verbose = _check_verbose(what, verbose)
        steps = adapters.check_steps(what, "steps", steps)
        if adapters.is_stream(x):
            adapters.no_array_arguments(what, "x", batch_size=batch_size)
            data = adapters.stream(what, x, steps, with_targets=False)
        else:
            x = _as_batch_arrays(what, "x", x)[0]
            if num_samples(x) == 0:
                raise ValueError(f"{what}: x is empty (0 samples)")
            data = adapters.ArrayData(x, None, None, _check_batch_size(what, batch_size),
                                      shuffle=False)
            if steps is not None:
                data.steps = min(steps, data.steps)
        data = distribute.evaluation_data(data)   # this rank's part in a job (fd.distribute)
        progbar = (callbacks_module.Progbar(data.steps, verbose=verbose)
                   if verbose and distribute.prints() else None)
        outputs, numpy_input = [], True
        with contextlib.closing(data.batches(None, 0)) as batches:
            for step, (batch, _, _) in enumerate(batches):
                numpy_input = not backend.is_cuda_array(first_array(batch))
                outputs.append(self._predicted(batch, numpy_input))
                if progbar is not None:
                    progbar.update(step + 1)
        outputs = distribute.gather_in_rank_order(outputs)   # every rank's, in rank order
        if not outputs:
            raise ValueError(f"{what}: the data yielded no batch to predict on")
        if progbar is not None:
            progbar.update(len(outputs), finalize=True)
        xp = np if numpy_input else backend.get_array_module(first_array(outputs[0]))
        if isinstance(outputs[0], dict):  # outputs by name: one array each, all batches
            return {name: xp.concatenate([o[name] for o in outputs], axis=0)
                    for name in outputs[0]}
        if isinstance(outputs[0], list):
            return [xp.concatenate(per_output, axis=0) for per_output in zip(*outputs)]
        return xp.concatenate(outputs, axis=0)

    def _predicted(self, x, numpy_input: bool):
        """The outputs for one batch (a list for several), NumPy when numpy_input."""
        y_pred = self.predict_step(pack_x_y_sample_weight(self._to_model_device(x)))
        return map_arrays(y_pred, backend.to_numpy) if numpy_input else y_pred

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One update on the batch (x, y); returns its loss (and metrics) before the update."""
        what = self._label() + ".train_on_batch"
        self._require_compiled("train_on_batch")
        x, y = _check_data(what, x, y)
        weights = adapters.check_sample_weight(what, sample_weight, num_samples(x))
        class_weight = adapters.check_class_weight(what, class_weight)
        if class_weight is not None:
            if weights is not None:
                raise ValueError(f"{what}: class_weight and sample_weight cannot be used at "
                                 "the same time")
            weights = adapters.class_weights_of(what, y, class_weight)
        # Each call reports its own batch (Keras 2's reset_metrics=True; Keras 3 would
        # accumulate over calls until reset_metrics()).
        self.reset_metrics()
        logs = self._logs_of_step(self.train_step(self._prepared(what, x, y, weights)))
        return _format_results(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss (and metrics) on one batch in inference mode, without updating."""
        what = self._label() + ".test_on_batch"
        self._require_compiled("test_on_batch")
        x, y = _check_data(what, x, y)
        data = self._array_data(what, x, y, sample_weight, batch_size=num_samples(x))
        return _format_results(self._evaluate_data(what, data, verbose=0), return_dict)

    def predict_on_batch(self, x):
        """Outputs for one batch x (N, ...), NumPy for NumPy input."""
        x = _as_batch_arrays(self._label() + ".predict_on_batch", "x", x)[0]
        return self._predicted(x, numpy_input=not backend.is_cuda_array(first_array(x)))

    # ----- summary ------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None,
                expand_nested=False) -> None:
        """Prints Keras 2's table: layer (type), output shape, parameter count, and totals;
        expand_nested=True lists the layers of nested models under them, indented."""
        if not self.built:
            raise ValueError(f"{self._label()}.summary: the model has not been built yet, so its "
                             "shapes are unknown. Give the first layer input_shape= (or start "
                             "with an InputLayer), call model.build(input_shape), or call the "
                             "model on a batch of data first")
        for line in summary_lines(self, line_length, positions, expand_nested):
            (print_fn or print)(line)

    # ----- saving (fusednn.io; the format is always safetensors) -------------
    def save(self, filepath, include_optimizer=True) -> None:
        """Saves config, weights, and compile settings with optimizer state, as safetensors.

        Any file name works (.keras, .h5, .safetensors); the content is always safetensors.
        """
        io.save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath) -> None:
        """Saves only the weights (named layer/variable) as safetensors."""
        io.save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        """Loads weights saved by save_weights or save, or a Keras 3 .weights.h5 file (told
        apart by its content), checking every shape."""
        if keras_weights.is_hdf5(filepath):
            keras_weights.load_keras_weights(self, filepath, str(filepath))
        else:
            io.load_weights(self, filepath)

    def export(self, filepath, format="onnx", **options) -> None:
        """Keras 3's Model.export: writes the model for serving elsewhere (format "onnx";
        options such as opset= go to fusednn.export.onnx)."""
        export_module.export_model(self, filepath, format, **options)


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """Keras's packing of a batch: x alone without targets ((x,) when x is a list or tuple
    of inputs, which would read as (x, y)), (x, y) without weights, else
    (x, y, sample_weight)."""
    if y is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    return (x, y) if sample_weight is None else (x, y, sample_weight)


def unpack_x_y_sample_weight(data) -> tuple:
    """Keras's unpacking: (x, y, sample_weight) with None for what the batch lacks."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if not 1 <= len(data) <= 3:
        raise ValueError(f"a batch must be x, (x,), (x, y) or (x, y, sample_weight), got a "
                         f"tuple of {len(data)} items")
    return tuple(data) + (None,) * (3 - len(data))


def _log_value(value):
    """A step's log value as a Python float when it is one number (0-d arrays included)."""
    if isinstance(value, metrics_module.Metric):
        value = value.result()
    try:
        array = np.asarray(backend.to_numpy(value) if backend.is_cuda_array(value) else value)
    except (TypeError, ValueError):
        return value
    return float(array) if array.ndim == 0 and array.dtype.kind in "fiub" else value
