"""Encoder-decoder (sequence to sequence of a different length): read a 5-digit string
and write it reversed followed by an end token (6 output steps), e.g.
30917 -> 7 1 9 0 3 <end>.

The encoder LSTM reads the digits and returns its final states [h, c]
(return_state=True); they are the decoder LSTM's initial_state. The decoder is
trained with teacher forcing (its input at step t is the correct token t - 1,
after a start token) and decodes greedily at test time, one step at a time,
feeding back its own predictions. Training is a hand-written loop over the layer
protocol:

    forward:  encoder -> (h, c) -> decoder(initial_state=[h, c]) -> Dense -> loss
    backward: Dense -> decoder, which returns [d_inputs, dh, dc] -> encoder([None, dh, dc])

The model (Seq2Seq) is shared with examples/sequence_patterns/encoder_decoder_reverse.py.
Metric: whole unseen strings reversed exactly (chance: 1 in 100,000). Baseline:
copying the input without reversing it, right only for palindromes.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import _common

TITLE = "an encoder-decoder LSTM pair reverses digit strings (hand-written loop)"
REQUIRES = ("matplotlib",)
DIGITS, LENGTH = 10, 5
START, END = 10, 11          # decoder tokens besides the digits
OUTPUT_LENGTH = LENGTH + 1   # reversed digits, then END
TRAIN_STRINGS, TEST_STRINGS, BATCH = 5000, 500, 64
DEFAULT_EPOCHS = 20          # passes over the 5,000 training strings, 78 batches each


def make_strings(rng, count, exclude=None):
    """Distinct digit strings (count, LENGTH), none of them in `exclude`."""
    seen = set() if exclude is None else {tuple(s) for s in exclude}
    strings = []
    while len(strings) < count:
        s = tuple(rng.integers(0, DIGITS, LENGTH))
        if s not in seen:
            seen.add(s)
            strings.append(s)
    return np.array(strings)


def targets_of(strings):
    """The output tokens (N, OUTPUT_LENGTH): reversed digits then END."""
    return np.concatenate([strings[:, ::-1], np.full((len(strings), 1), END)], axis=1)


class Seq2Seq:
    """Encoder (Embedding, LSTM returning states) and decoder (Embedding, LSTM started
    from those states, Dense over the output tokens). Takes NumPy strings on any device:
    after `to("cuda")` it copies them to the GPU itself."""

    def __init__(self, units=64):
        from .. import layers

        self.source_embedding = layers.Embedding(DIGITS, 16, name="source_embedding")
        self.encoder = layers.LSTM(units, return_state=True, name="encoder")
        self.target_embedding = layers.Embedding(DIGITS + 2, 16, name="target_embedding")
        self.decoder = layers.LSTM(units, return_sequences=True, return_state=True,
                                   name="decoder")
        self.head = layers.Dense(DIGITS + 2, name="head")
        self.parts = [self.source_embedding, self.encoder, self.target_embedding,
                      self.decoder, self.head]
        # Built now, in the order a first training step would build them (so the weights
        # drawn from the seeded generator are the same), to know the parameter counts.
        for part, shape in [(self.source_embedding, (None, LENGTH)),
                            (self.encoder, (None, LENGTH, 16)),
                            (self.target_embedding, (None, OUTPUT_LENGTH)),
                            (self.decoder, (None, OUTPUT_LENGTH, 16)),
                            (self.head, (None, OUTPUT_LENGTH, units))]:
            part.build_for(shape)
        self.device = "cpu"

    def to(self, device):
        for part in self.parts:
            part.to(device)
        self.device = backend.check_device(device)
        return self

    def variables(self):
        return [v for part in self.parts for v in part.trainable_variables]

    def count_params(self):
        return sum(part.count_params() for part in self.parts)

    def encode(self, strings, training=False):
        strings = backend.to_device(strings, self.device)
        _, h, c = self.encoder.forward(self.source_embedding.forward(strings, training),
                                       training)
        return h, c

    def train_step(self, strings, loss, optimizer):
        """One update on a batch of strings (N, LENGTH); returns the batch loss."""
        targets = targets_of(strings)
        decoder_input = np.concatenate([np.full((len(strings), 1), START), targets[:, :-1]],
                                       axis=1)
        targets = backend.to_device(targets, self.device)
        decoder_input = backend.to_device(decoder_input, self.device)
        for part in self.parts:
            part.zero_grad()
        h, c = self.encode(strings, training=True)
        embedded = self.target_embedding.forward(decoder_input, training=True)
        outputs, _, _ = self.decoder.forward(embedded, training=True, initial_state=[h, c])
        logits = self.head.forward(outputs, training=True)
        value, dlogits = loss.value_and_grad(targets, logits)
        d_outputs = self.head.backward(dlogits)
        d_embedded, dh, dc = self.decoder.backward([d_outputs, None, None])
        self.target_embedding.backward(d_embedded)
        # The encoder's output is unused; only its states carry gradient.
        d_source = self.encoder.backward([None, dh, dc])
        self.source_embedding.backward(d_source)
        optimizer.step(self.variables())
        return float(value)

    def translate(self, strings):
        """Greedy decoding, each predicted token the next step's input: NumPy (N, OUTPUT_LENGTH)."""
        h, c = self.encode(strings)
        xp = backend.xp_for_device(self.device)
        token = xp.full((len(strings), 1), START)
        outputs = []
        for _ in range(OUTPUT_LENGTH):
            step, h, c = self.decoder.forward(self.target_embedding.forward(token),
                                              initial_state=[h, c])
            token = self.head.forward(step).argmax(axis=-1)  # (N, 1)
            outputs.append(token[:, 0])
        return backend.to_numpy(xp.stack(outputs, axis=1))


def run(device="cpu", epochs=None, out_dir=".", seed=0):
    from .. import losses, optimizers, utils
    from ..callbacks import Progbar

    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    _common.header("seq2seq", TITLE)
    utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    train = make_strings(rng, TRAIN_STRINGS)
    test = make_strings(rng, TEST_STRINGS, exclude=train)
    steps_per_epoch = TRAIN_STRINGS // BATCH
    print(f"{TRAIN_STRINGS} training strings, {TEST_STRINGS} unseen test strings; "
          f"{steps_per_epoch} batches of {BATCH} per epoch")

    model = Seq2Seq().to(device)
    _print_parts(model)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = optimizers.Adam(learning_rate=3e-3, global_clipnorm=1.0)
    progress = Progbar(epochs, unit_name="epoch")
    history = {"loss": []}
    for epoch in range(epochs):
        order = rng.permutation(TRAIN_STRINGS)
        values = [model.train_step(train[order[i * BATCH:(i + 1) * BATCH]], loss, optimizer)
                  for i in range(steps_per_epoch)]
        history["loss"].append(float(np.mean(values)))
        progress.update(epoch + 1, [("loss", history["loss"][-1])], finalize=epoch + 1 == epochs)

    predicted = model.translate(test)
    expected = targets_of(test)
    copied = np.concatenate([test, np.full((len(test), 1), END)], axis=1)
    accuracy = float(np.mean(np.all(predicted == expected, axis=1)))
    copy_accuracy = float(np.mean(np.all(copied == expected, axis=1)))
    token_accuracy = np.mean(predicted == expected, axis=0)

    fig, (curve, positions, examples) = _common.figure(
        11, 3.2, ncols=3, gridspec_kw={"width_ratios": [1, 1, 0.8], "wspace": 0.35})
    _common.plot_history(curve, history, ["loss"], "training (cross-entropy per token)",
                         "loss", log=True)
    steps = np.arange(1, OUTPUT_LENGTH + 1)
    positions.bar(steps - 0.2, token_accuracy, width=0.4, color="tab:red", label="seq2seq")
    positions.bar(steps + 0.2, np.mean(copied == expected, axis=0), width=0.4,
                  color="tab:blue", label="copy unreversed")
    positions.set_xticks(steps, [str(s) for s in steps[:-1]] + ["end"])
    positions.set_ylim(0, 1.3)
    positions.set_xlabel("output step")
    positions.set_ylabel("tokens right")
    positions.set_title("unseen strings, token by token", fontsize=10)
    positions.legend(fontsize=8, loc="upper center", ncol=2)
    positions.grid(alpha=0.3, axis="y")
    _draw_examples(examples, test[:8], predicted[:8], expected[:8])
    image = _common.save(fig, out_dir, "seq2seq.png")
    return _common.Result("seq2seq", "unseen strings reversed exactly", accuracy,
                          "copy the input unreversed", copy_accuracy, higher_is_better=True,
                          images=[image],
                          details="tokens right by output step: "
                                  + " ".join(f"{a:.2f}" for a in token_accuracy))


def _print_parts(model):
    print('Model: "seq2seq" (layers driven by hand, not a Sequential)')
    for part in model.parts:
        print(f"  {part.name:<20} {type(part).__name__:<10} {part.count_params():>8,} params")
    print(f"Total params: {model.count_params():,}")


def _token_text(tokens):
    return "".join("$" if t == END else str(t) for t in tokens)


def _draw_examples(ax, strings, predicted, expected):
    ax.axis("off")
    ax.set_title("examples ($ = end token)", fontsize=10)
    for row, (source, guess, truth) in enumerate(zip(strings, predicted, expected)):
        ok = np.array_equal(guess, truth)
        ax.text(0.05, 0.9 - row * 0.12, f"{_token_text(source)}  ->  {_token_text(guess)}",
                family="monospace", fontsize=10, color="black" if ok else "red",
                transform=ax.transAxes)
