"""Sequential: a stack of layers that is itself a Layer, with Keras's training API.

As a Layer it follows the protocol (forward/backward/zero_grad/get_weights/...),
so hand-written loops compose models, e.g. a GAN generator step is
`G.backward(D.backward(dloss))`. On top of that it offers compile/fit/evaluate/
predict/summary/save like Keras.

Devices: a model moved with `model.to("cuda")` keeps its weights on the GPU;
fit/evaluate/predict/train_on_batch copy each NumPy batch of x and y to the GPU
(the model's job: the ops never copy), and predict returns NumPy for NumPy input.
Calling `model.forward` directly expects arrays already on the model's device.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from . import _rng, backend, fusion, losses, optimizers, utils
from . import callbacks as callbacks_module
from . import layers as layers_module
from . import metrics as metrics_module
from .errors import StateError
from .layers.base import Layer


class Sequential(Layer):
    """A linear stack of layers; `layers` may be given at once or added with `add`.

    A first layer with `input_shape=`/`input_dim=`, or an `InputLayer`/`Input`
    first, builds the model immediately (so `summary()` works before any data);
    otherwise the model builds on its first batch or on `build(input_shape)`.
    """

    def __init__(self, layers=None, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        self._layers: list[Layer] = []
        self.optimizer = None
        self.loss = None
        self.metrics: list[metrics_module.Metric] = []
        self.stop_training = False
        self.history = None
        # fit's position (FitProgress) while it runs, and where BackupAndRestore resumes it.
        self._fit_progress = None
        self._resume_from = None
        # Full input shape (batch first) declared before any data: by the first layer's
        # input_shape= or by an InputLayer.
        self._input_shape_hint = None
        self._input_layer = None
        for layer in layers or []:
            self.add(layer)

    # ----- structure -----------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def sublayers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def fused_layers(self) -> list[tuple[str, str]]:
        """Names of the (Conv2D, MaxPooling2D) pairs that run as one kernel on the model's
        device (fusednn.fusion)."""
        return [(step.conv.name, step.pool.name)
                for step in fusion.plan(self._layers, self.device)
                if isinstance(step, fusion.ConvPool)]

    def add(self, layer: Layer) -> None:
        """Appends `layer`; builds the model when the input shape becomes known."""
        if not isinstance(layer, Layer):
            raise TypeError(f"{self._label()}.add: expected a fusednn Layer, got "
                            f"{type(layer).__name__} ({layer!r})")
        if layer is self:
            raise ValueError(f"{self._label()}.add: a model cannot contain itself")
        if isinstance(layer, layers_module.InputLayer):
            self._add_input_layer(layer)
            return
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"{self._label()}.add: all layers need unique names (weights are "
                             f"saved by name), and '{layer.name}' is already in the model")
        self._layers.append(layer)
        hint_before = self._input_shape_hint
        try:
            if self.built:
                self.output_shape = layer.build_for(self.output_shape)
            elif len(self._layers) == 1 and self._input_shape_hint is None:
                self._input_shape_hint = _declared_shape(layer)
            if not self.built and self._input_shape_hint is not None:
                self.build(self._input_shape_hint)
        except Exception:
            self._layers.pop()  # a layer that does not fit the model is not kept
            self._input_shape_hint = hint_before
            raise

    def _add_input_layer(self, layer: Layer) -> None:
        # As in Keras, an InputLayer declares the input shape (and checks inputs against it)
        # but is not one of `layers`.
        if self._layers or self._input_layer is not None:
            raise ValueError(f"{self._label()}.add: an InputLayer must come first and only once, "
                             f"but the model already has "
                             f"{[l.name for l in self._layers] or 'an InputLayer'}")
        self._input_layer = layer
        self._input_shape_hint = _declared_shape(layer)

    def pop(self) -> Layer:
        """Removes and returns the last layer."""
        if not self._layers:
            raise ValueError(f"{self._label()}.pop: the model has no layers to remove")
        layer = self._layers.pop()
        if self.built:
            if self._layers:
                self.output_shape = self._layers[-1].output_shape
            else:
                self.built, self.output_shape = False, None
                self._input_shape_hint = self.input_shape
        self._cache_valid = False
        return layer

    def build(self, input_shape) -> None:
        """Builds every layer in order for `input_shape` (full, batch first; batch may be None)."""
        if not self._layers:
            raise ValueError(f"{self._label()}: cannot build a model without layers; add layers "
                             "first")
        input_shape = tuple(None if d is None else int(d) for d in input_shape)
        shape = input_shape
        for layer in self._layers:
            shape = layer.build_for(shape)
        self.built = True
        self.input_shape = input_shape
        self.output_shape = shape

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = layer.build_for(shape)
        return shape

    # ----- running (the layer protocol) ------------------------------------
    def forward(self, x, training: bool = False):
        """The stack's output for the batch x (N, ...); training=True keeps caches for backward."""
        if not self._layers:
            raise ValueError(f"{self._label()}: the model has no layers; add layers before "
                             "calling it")
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if x.ndim == 0:
            raise ValueError(f"{self._label()}: expected a batch of inputs (rank >= 1, batch "
                             "first), got a scalar")
        if self._input_layer is not None:
            self._input_layer.input_spec.check(self._input_layer, tuple(x.shape))
        if not self.built:
            self.build_for((None,) + tuple(x.shape[1:]))
        mask = None  # time-step mask (N, T) from Masking / Embedding(mask_zero=True)
        steps = fusion.plan(self._layers, self.device)  # layers, fused pairs as one step
        for layer in steps:  # each layer checks the shape it receives
            layer_input = x
            if mask is not None and getattr(layer, "supports_masking", False):
                x = layer.forward(x, training, mask=mask)
            else:
                x = layer.forward(x, training)
            if utils.numerics_checked():
                layer._check_forward_numerics(layer_input, x)
            mask = _mask_after(layer, x, mask)
        if training:
            self._cache_valid = True
            self._last_output_shape = tuple(x.shape)
            self._steps = steps
        return x

    __call__ = forward

    def backward(self, dy):
        """Gradient w.r.t. the input of the latest forward(x, training=True).

        Chains every layer's backward in reverse; adds parameter gradients into the
        gradient buffers (call zero_grad first).
        """
        self._require_training_forward()
        return self._backward_through(reversed(self._steps), dy)

    @staticmethod
    def _backward_through(layers, dy):
        for layer in layers:
            layer_dy = dy
            dy = layer.backward(dy)
            if utils.numerics_checked():
                layer._check_backward_numerics(layer_dy, dy)
        return dy

    def _require_training_forward(self) -> None:
        if not self._cache_valid:
            raise StateError(f"{self._label()}: backward() needs a preceding "
                             "forward(x, training=True)")

    # Softmax fusion (see the contracts of layers and losses): a model whose last layer
    # outputs a softmax exposes the logits, so a cross-entropy loss can skip the Jacobian.
    @property
    def outputs_softmax(self) -> bool:
        return bool(self._layers) and getattr(self._layers[-1], "outputs_softmax", False)

    def logits_of_last_forward(self):
        self._require_training_forward()
        return self._layers[-1].logits_of_last_forward()

    def backward_from_logits(self, dlogits):
        """Backward from the gradient w.r.t. the last layer's logits (N, C)."""
        self._require_training_forward()
        last = self._layers[-1]
        dx = last.backward_from_logits(dlogits)
        if utils.numerics_checked():
            last._check_backward_numerics(dlogits, dx, incoming="the gradient w.r.t. the logits")
        return self._backward_through(reversed(self._steps[:-1]), dx)

    # ----- configuration ---------------------------------------------------
    def _all_layers(self) -> list[Layer]:
        """The layers with the InputLayer (if any) first, as Keras 2 serialises them."""
        return ([self._input_layer] if self._input_layer is not None else []) + self._layers

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "layers": [_serialize_layer(layer) for layer in self._all_layers()],
            "build_input_shape": list(self.input_shape) if self.built else None,
        }

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        """Rebuilds layers through fusednn.layers.deserialize (known classes only)."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise ValueError(f"Sequential.from_config: expected a dict with a 'layers' list, "
                             f"got {config!r:.200}")
        model = cls(layers=[_deserialize_layer(item) for item in config["layers"]],
                    name=config.get("name"), trainable=config.get("trainable", True))
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            model.build(shape)
        return model

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
        """The training step reads only weight gradients: its first layer may skip the
        gradient w.r.t. the model's input (Conv and Dense do; 8% of the lecture CNN's step
        on one CPU thread)."""
        first = self._layers[0]
        first._input_grad_needed = False
        try:
            yield
        finally:
            first._input_grad_needed = True

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

        n = len(x)
        steps = math.ceil(n / batch_size)
        history = callbacks_module.History()
        progress = [callbacks_module.ProgbarLogger()] if verbose else []
        callback_list = callbacks_module.CallbackList(
            progress + list(callbacks or []) + [history], self,
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
                order = _rng.generator().permutation(n) if shuffle else None
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
        line_length = int(line_length or 65)
        positions = list(positions or [0.45, 0.85, 1.0])
        if positions[-1] <= 1:
            positions = [int(line_length * p) for p in positions]
        print_fn = print_fn or print
        lines = [f'Model: "{self.name}"', "_" * line_length]
        lines += _table_row(["Layer (type)", "Output Shape", "Param #"], positions)
        lines.append("=" * line_length)
        for layer in self._layers:
            lines += _table_row([f"{layer.name} ({type(layer).__name__})",
                                 _shape_text(layer.output_shape), str(layer.count_params())],
                                positions)
        trainable = {id(v) for v in self.trainable_variables}
        sizes = [(int(np.prod(v.shape)), id(v) in trainable) for v in self.variables]
        total = sum(size for size, _ in sizes)
        trainable_total = sum(size for size, is_trainable in sizes if is_trainable)
        lines += ["=" * line_length,
                  f"Total params: {total:,}",
                  f"Trainable params: {trainable_total:,}",
                  f"Non-trainable params: {total - trainable_total:,}",
                  "_" * line_length]
        for line in lines:
            print_fn(line)

    # ----- saving (fusednn.io; the format is always safetensors) -------------
    def save(self, filepath, include_optimizer=True) -> None:
        """Saves config, weights, and compile settings with optimizer state, as safetensors.

        Any file name works (.keras, .h5, .safetensors); the content is always safetensors.
        """
        from . import io
        io.save_model(self, filepath, include_optimizer=include_optimizer)

    def save_weights(self, filepath) -> None:
        """Saves only the weights (named layer/variable) as safetensors."""
        from . import io
        io.save_weights(self, filepath)

    def load_weights(self, filepath) -> None:
        """Loads weights saved by save_weights or save, checking every shape."""
        from . import io
        io.load_weights(self, filepath)


class FitProgress:
    """Where fit is inside an epoch: what BackupAndRestore saves and fit resumes from.

    epoch (0-based) and step (batches done in it, of `steps`), the epoch's sample order
    (a permutation of the `samples` indices, or None without shuffling) and the running
    means of the loss and metrics over the batches done.
    """

    def __init__(self, epoch, step, steps, samples, order, loss_mean, metric_means):
        self.epoch, self.step, self.steps, self.samples = epoch, step, steps, samples
        self.order, self.loss_mean, self.metric_means = order, loss_mean, metric_means

    def logs(self) -> dict:
        if not self.loss_mean.count:
            return {}
        logs = {"loss": self.loss_mean.result()}
        logs.update({name: mean.result() for name, mean in self.metric_means.items()})
        return logs

    def check_fits(self, what: str, samples: int, steps: int, shuffle: bool) -> None:
        """A mid-epoch backup resumes only on the same data and batching."""
        if self.step == 0:
            return
        if (samples, steps, shuffle) != (self.samples, self.steps, self.order is not None):
            raise ValueError(f"{what}: the backup was taken in the middle of an epoch of "
                             f"{self.samples} samples in {self.steps} batches "
                             f"(shuffle={self.order is not None}), but this fit has {samples} "
                             f"samples in {steps} batches (shuffle={shuffle}); resume with the "
                             "same data, batch_size and shuffle")


def load_model(filepath, compile=True) -> Sequential:
    """Rebuilds a model saved with `model.save` (safetensors; only known layer types)."""
    from . import io
    return io.load_model(filepath, compile=compile)


# ----- helpers -------------------------------------------------------------------

def _declared_shape(layer: Layer):
    """Full input shape (batch first) a layer declares, or None."""
    if layer.declared_input_shape is not None:
        return (layer.declared_batch_size,) + tuple(layer.declared_input_shape)
    if layer.built and layer.input_shape is not None:
        return tuple(layer.input_shape)
    return None


def _mask_after(layer: Layer, output, mask):
    """The time-step mask for the layer after `layer`, as Keras propagates it.

    Mask-aware layers (Masking, Embedding, recurrent layers and wrappers) set
    `output_mask` in forward. Other layers pass the incoming mask on while their
    output keeps the (N, T) leading axes (Dense, Dropout, Activation on sequences).
    """
    if hasattr(layer, "output_mask"):
        return layer.output_mask
    if mask is not None and getattr(output, "ndim", 0) >= 3 \
            and tuple(output.shape[:2]) == tuple(mask.shape):
        return mask
    return None


def _serialize_layer(layer: Layer) -> dict:
    if isinstance(layer, Sequential):
        return {"class_name": "Sequential", "config": layer.get_config()}
    return layers_module.serialize(layer)


def _deserialize_layer(item):
    if isinstance(item, dict) and item.get("class_name") == "Sequential":
        return Sequential.from_config(item.get("config"))
    return layers_module.deserialize(item)


def _as_batch_array(what: str, name: str, value):
    """NumPy or CuPy array with a batch axis; lists become NumPy."""
    if value is None:
        raise ValueError(f"{what}: {name} is required")
    if not backend.is_cuda_array(value):
        try:
            value = np.asarray(value)
        except ValueError as e:  # ragged nested lists
            raise ValueError(f"{what}: {name} must be a rectangular array, got {e}") from None
    if value.ndim == 0:
        raise ValueError(f"{what}: {name} must be an array with a batch axis first, got a scalar")
    return value


def _check_data(what: str, x, y):
    x = _as_batch_array(what, "x", x)
    if y is None:
        raise ValueError(f"{what}: y (the targets) is required")
    y = _as_batch_array(what, "y", y)
    if len(x) == 0:
        raise ValueError(f"{what}: x is empty (0 samples)")
    if len(x) != len(y):
        raise ValueError(f"{what}: x and y must have the same number of samples, got {len(x)} "
                         f"(x shape {tuple(x.shape)}) and {len(y)} (y shape {tuple(y.shape)})")
    return x, y


def _check_batch_size(what: str, batch_size) -> int:
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size <= 0:
        raise ValueError(f"{what}: batch_size must be a positive int, got {batch_size!r}")
    return int(batch_size)


def _check_verbose(what: str, verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose in (0, 1, 2) and not isinstance(verbose, str):
        return int(verbose)
    raise ValueError(f"{what}: verbose must be 0, 1, 2 or 'auto', got {verbose!r}")


def _take_batch(x, y, order, start: int, size: int):
    """Samples start..start+size of (x, y), in `order` (a permutation) when given."""
    if order is None:
        return x[start:start + size], y[start:start + size]
    index = order[start:start + size]
    if backend.is_cuda_array(x):
        index = backend.to_device(index, "cuda")
    return x[index], y[index]


def _format_results(logs: dict, return_dict: bool):
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _shape_text(shape) -> str:
    return str(tuple(shape)) if shape is not None else "?"


def _table_row(fields, positions) -> list[str]:
    """One summary row, wrapped like Keras 2: column text that does not fit continues below."""
    left = [str(f) for f in fields]
    lines = []
    while any(left):
        line = ""
        for col, text in enumerate(left):
            start = positions[col - 1] if col > 0 else 0
            space = 2 if col != len(positions) - 1 else 0
            # The first column starts with one space (Keras forgets it and shifts the row).
            cutoff = positions[col] - start - space - (1 if col == 0 else 0)
            piece = text[:cutoff]
            # Prefer breaking right after the end of a tuple/list item, as Keras does.
            breaks = [piece.find(mark) + len(mark) for mark in ("),", "},", "],", "',")
                      if piece.find(mark) >= 0]
            if breaks and len(text) > cutoff:
                cutoff = min(breaks)
                piece = piece[:cutoff]
            line += (" " if col == 0 else "") + piece + " " * space
            left[col] = text[cutoff:]
            line += " " * (positions[col] - len(line))
        lines.append(line.rstrip())
    return lines
