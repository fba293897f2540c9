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

import numpy as np

from .. import backend, distribute, io, losses, optimizers, utils
from .. import callbacks as callbacks_module
from .. import metrics as metrics_module
from ..errors import StateError
from ..fit_progress import FitProgress
from ..layers.base import Layer
from .summary import summary_lines
from .data import (_as_batch_array, _check_batch_size, _check_data, _check_verbose,
                   _format_results, _take_batch)


class Model(Layer):
    """The training API on top of the layer protocol; subclasses define the structure."""

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
        self.metrics: list[metrics_module.Metric] = []
        self.stop_training = False
        self.history = None
        # fit's position (FitProgress) while it runs, and where BackupAndRestore resumes it.
        self._fit_progress = None
        self._resume_from = None

    # ----- compile / train / evaluate ---------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None) -> None:
        """Sets the optimizer, loss and metrics (names as in Keras, or objects)."""
        self.optimizer = optimizers.get(optimizer)
        self.loss = None if loss is None else losses.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, metrics_module.Metric)) or callable(metrics):
            metrics = [metrics]
        resolved = [metrics_module.get(m, loss=self.loss) for m in metrics]
        names = [m.name for m in resolved]
        duplicated = sorted({n for n in names if names.count(n) > 1 or n == "loss"})
        if duplicated:
            raise ValueError(f"{self._label()}.compile: metric names must be unique and not "
                             f"'loss', got {names}")
        self.metrics = resolved

    @property
    def metrics_names(self) -> list[str]:
        return ["loss"] + [m.name for m in self.metrics]

    def _require_compiled(self, what: str) -> None:
        if self.optimizer is None:
            raise StateError(f"{self._label()}.{what}: the model must be compiled first; call "
                             "model.compile(optimizer, loss, metrics)")
        if self.loss is None:
            raise StateError(f"{self._label()}.{what}: compile() was called without a loss; "
                             "call model.compile(optimizer, loss=...)")

    def _to_model_device(self, array):
        # NumPy batches go to a GPU model's device; other mixes are left for the layers to reject.
        if self.device == "cuda" and not backend.is_cuda_array(array):
            return backend.to_device(array, "cuda")
        return array

    def _uses_softmax_fusion(self) -> bool:
        # Losses offer the method only when they take probabilities (from_logits=False).
        return self.outputs_softmax and hasattr(self.loss, "value_and_grad_from_logits")

    def _train_step(self, x, y) -> tuple[float, object]:
        """One optimizer update on the batch; returns (loss incl. regularization, predictions)."""
        self.zero_grad()
        self._check_targets(x, y)
        y_pred = self.forward(x, training=True)
        checked = utils.numerics_checked()
        if checked:
            utils.check_finite(y, f"the targets (y) given to {self._label()} hold non-finite "
                                  "values")
        if self._uses_softmax_fusion():
            loss_value, dlogits = self.loss.value_and_grad_from_logits(
                y, self.logits_of_last_forward())
            if checked:
                utils.check_finite(np.asarray(loss_value), f"loss '{self.loss.name}' is "
                                   "non-finite for finite predictions and targets")
            with self._input_grad_unused():
                self.backward_from_logits(dlogits)
        else:
            loss_value, dy = self.loss.value_and_grad(y, y_pred)
            if checked:
                utils.check_finite(np.asarray(loss_value), f"loss '{self.loss.name}' is "
                                   "non-finite for finite predictions and targets")
            with self._input_grad_unused():
                self.backward(dy)
        # Keras reports the loss at the weights the gradient was taken at, penalties included.
        loss_value = float(loss_value) + self.regularization_loss()
        self.optimizer.step(self)
        return loss_value, y_pred

    def _check_targets(self, x, y) -> None:
        """The loss's checks of y (class indices in range, ...) before the forward runs."""
        shape = self.compute_output_shape((None,) + tuple(x.shape[1:]))
        if any(size is None for size in shape[1:]):
            return  # the output's size is known only after the forward; the loss checks then
        xp = backend.get_array_module(x)
        stand_in = xp.broadcast_to(xp.zeros((), self.dtype), (len(x),) + tuple(shape[1:]))
        self.loss.check_targets(y, stand_in)

    @contextlib.contextmanager
    def _input_grad_unused(self):
        """The training step reads only weight gradients; a model whose first layer can skip
        the gradient w.r.t. the model's input overrides this (Sequential does)."""
        yield

    def _batch_logs(self, loss_value: float, y, y_pred) -> dict:
        logs = {"loss": loss_value}
        for metric in self.metrics:
            logs[metric.name] = metric(y, y_pred)
        return logs

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Trains for `epochs` passes over (x, y) in batches; returns a History.

        x (N, ...) and y (N, ...) NumPy (or CuPy) arrays. validation_split takes the
        last fraction of the samples, before shuffling (as Keras); validation_data
        (x_val, y_val) takes precedence. shuffle reorders the training samples every
        epoch from fusednn's generator (fd.utils.set_random_seed makes it repeatable).
        verbose: 0 silent, 1 ("auto") progress bar, 2 one line per epoch. The logged
        loss is the batch-size-weighted mean of the batch losses plus regularization.
        """
        self._require_compiled("fit")
        x, y = _check_data(self._label() + ".fit", x, y)
        batch_size = _check_batch_size(self._label() + ".fit", batch_size)
        verbose = _check_verbose(self._label() + ".fit", verbose)
        for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{self._label()}.fit: {name} must be an int >= 0, got {value!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"{self._label()}.fit: shuffle must be True or False, got {shuffle!r}")
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
                or not 0.0 <= validation_split < 1.0:
            raise ValueError(f"{self._label()}.fit: validation_split must be a float in [0, 1), "
                             f"got {validation_split!r}")
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError(f"{self._label()}.fit: validation_data must be a tuple "
                                 f"(x_val, y_val), got {type(validation_data).__name__}"
                                 + (f" of length {len(validation_data)}"
                                    if isinstance(validation_data, (tuple, list)) else ""))
            validation = _check_data(self._label() + ".fit validation_data", *validation_data)
        elif validation_split > 0:
            split_at = int(math.floor(len(x) * (1.0 - validation_split)))
            if split_at == 0 or split_at == len(x):
                raise ValueError(f"{self._label()}.fit: {len(x)} samples are too few to split off "
                                 f"validation_split={validation_split} of them for validation")
            x, y, validation = x[:split_at], y[:split_at], (x[split_at:], y[split_at:])

        n = distribute.fit_samples(len(x))   # this rank's shard in a distributed job
        steps = math.ceil(n / batch_size)
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
            resume.check_fits(self._label() + ".fit", n, steps, shuffle)
            first_epoch = max(first_epoch, resume.epoch)
        logs: dict = {}
        for epoch in range(first_epoch, int(epochs)):
            callback_list.on_epoch_begin(epoch)
            if resume is not None and resume.epoch == epoch and resume.step > 0:
                # A backup from inside this epoch: its order, position and running means.
                progress = resume
                logs = progress.logs()
            else:
                order = distribute.epoch_order(len(x), shuffle)
                progress = FitProgress(epoch, 0, steps, n, order, metrics_module.Mean(),
                                       {m.name: metrics_module.Mean() for m in self.metrics})
            resume = None
            self._fit_progress = progress
            loss_mean, metric_means = progress.loss_mean, progress.metric_means
            for step in range(progress.step, steps):
                callback_list.on_train_batch_begin(step)
                x_batch, y_batch = _take_batch(x, y, progress.order, step * batch_size,
                                               batch_size)
                x_batch, y_batch = self._to_model_device(x_batch), self._to_model_device(y_batch)
                loss_value, y_pred = self._train_step(x_batch, y_batch)
                count = len(x_batch)
                loss_mean.update(loss_value, count)
                for metric in self.metrics:
                    metric_means[metric.name].update(metric(y_batch, y_pred), count)
                progress.step = step + 1
                logs = progress.logs()
                callback_list.on_train_batch_end(step, dict(logs))
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if validation is not None:
                val_logs = self._evaluate_arrays(*validation, batch_size=batch_size, verbose=0)
                epoch_logs.update({"val_" + key: value for key, value in val_logs.items()})
            callback_list.on_epoch_end(epoch, epoch_logs)
            logs = epoch_logs
            if self.stop_training:
                break
        callback_list.on_train_end(logs)
        self._fit_progress = None
        return history

    def _evaluate_arrays(self, x, y, batch_size: int, verbose: int) -> dict:
        n = len(x)
        steps = math.ceil(n / batch_size)
        progbar = callbacks_module.Progbar(steps, verbose=verbose) if verbose else None
        loss_mean = metrics_module.Mean()
        metric_means = {m.name: metrics_module.Mean() for m in self.metrics}
        regularization = self.regularization_loss() if self.built else None
        for step in range(steps):
            x_batch, y_batch = _take_batch(x, y, None, step * batch_size, batch_size)
            x_batch, y_batch = self._to_model_device(x_batch), self._to_model_device(y_batch)
            y_pred = self.forward(x_batch, training=False)
            if regularization is None:  # built by this first batch
                regularization = self.regularization_loss()
            count = len(x_batch)
            loss_mean.update(float(self.loss(y_batch, y_pred)) + regularization, count)
            for metric in self.metrics:
                metric_means[metric.name].update(metric(y_batch, y_pred), count)
            if progbar is not None:
                logs = {"loss": loss_mean.result()}
                logs.update({name: mean.result() for name, mean in metric_means.items()})
                progbar.update(step + 1, list(logs.items()), finalize=step == steps - 1)
        logs = {"loss": loss_mean.result()}
        logs.update({name: mean.result() for name, mean in metric_means.items()})
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False):
        """Loss (and metrics) on (x, y) in inference mode, averaged over samples.

        Returns the loss as a float when no metrics were compiled, else
        [loss, metric1, ...] in compile order, or a dict with return_dict=True.
        """
        self._require_compiled("evaluate")
        x, y = _check_data(self._label() + ".evaluate", x, y)
        batch_size = _check_batch_size(self._label() + ".evaluate", batch_size)
        verbose = _check_verbose(self._label() + ".evaluate", verbose)
        return _format_results(self._evaluate_arrays(x, y, batch_size, verbose), return_dict)

    def predict(self, x, batch_size=None, verbose=0):
        """Outputs for x (N, ...) in inference mode, computed in batches.

        Returns NumPy for NumPy (or list) input, CuPy for CuPy input. verbose=1 shows
        a progress bar (Keras shows one by default; here it is off by default).
        """
        what = self._label() + ".predict"
        x = _as_batch_array(what, "x", x)
        if len(x) == 0:
            raise ValueError(f"{what}: x is empty (0 samples)")
        batch_size = _check_batch_size(what, batch_size)
        verbose = _check_verbose(what, verbose)
        numpy_input = not backend.is_cuda_array(x)
        steps = math.ceil(len(x) / batch_size)
        progbar = callbacks_module.Progbar(steps, verbose=verbose) if verbose else None
        outputs = []
        for step in range(steps):
            batch = x[step * batch_size:(step + 1) * batch_size]
            y_pred = self.forward(self._to_model_device(batch), training=False)
            outputs.append(backend.to_numpy(y_pred) if numpy_input else y_pred)
            if progbar is not None:
                progbar.update(step + 1, finalize=step == steps - 1)
        xp = np if numpy_input else backend.get_array_module(outputs[0])
        return outputs[0] if len(outputs) == 1 else xp.concatenate(outputs, axis=0)

    def train_on_batch(self, x, y, return_dict=False):
        """One update on the batch (x, y); returns its loss (and metrics) before the update."""
        self._require_compiled("train_on_batch")
        x, y = _check_data(self._label() + ".train_on_batch", x, y)
        x, y = self._to_model_device(x), self._to_model_device(y)
        loss_value, y_pred = self._train_step(x, y)
        return _format_results(self._batch_logs(loss_value, y, y_pred), return_dict)

    def test_on_batch(self, x, y, return_dict=False):
        """Loss (and metrics) on one batch in inference mode, without updating."""
        self._require_compiled("test_on_batch")
        x, y = _check_data(self._label() + ".test_on_batch", x, y)
        return _format_results(self._evaluate_arrays(x, y, len(x), verbose=0), return_dict)

    def predict_on_batch(self, x):
        """Outputs for one batch x (N, ...), NumPy for NumPy input."""
        x = _as_batch_array(self._label() + ".predict_on_batch", "x", x)
        y_pred = self.forward(self._to_model_device(x), training=False)
        return y_pred if backend.is_cuda_array(x) else backend.to_numpy(y_pred)

    # ----- summary ------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None) -> None:
        """Prints Keras 2's table: layer (type), output shape, parameter count, and totals."""
        if not self.built:
            raise ValueError(f"{self._label()}.summary: the model has not been built yet, so its "
                             "shapes are unknown. Give the first layer input_shape= (or start "
                             "with an InputLayer), call model.build(input_shape), or call the "
                             "model on a batch of data first")
        for line in summary_lines(self, line_length, positions):
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
        """Loads weights saved by save_weights or save, checking every shape."""
        io.load_weights(self, filepath)

