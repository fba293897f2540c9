"""The program every rank runs in tests/test_distribute_mpi.py (and, without mpiexec, the
single-process reference): `python distribute_ranks.py SCENARIO OUT [args]`.

Scenarios:
    fit OPTIMIZER BATCH [BUCKET_BYTES]
                             fit a small CNN for 4 epochs; rank 0 writes weights + history
                             (and, with small buckets, the order of bucket starts and of
                             the first layer's backward in the first step)
    callbacks                70 samples (not a multiple of 2 x 16), progress bar,
                             ModelCheckpoint into OUT, EarlyStopping that stops after epoch 2
    backup EPOCHS            fit to EPOCHS with BackupAndRestore in OUT/backup (kept);
                             rank 0 writes OUT/weights-EPOCHS.npz
    steps SHUFFLE [kill]     fit 70 samples, batch 8, 3 epochs, BackupAndRestore(save_freq=3)
                             in OUT/backup; with kill rank 1 SIGKILLs itself at batch 2 of
                             epoch 1 (the last backup: after batch 0 of epoch 1); rank 0
                             writes OUT/weights.npz and the loss history
    gan BATCH                hand-written GAN steps through allreduce_gradients
    demo NAME STEPS          the gan or wgan demo for STEPS steps; every rank writes its
                             networks' weights to OUT-RANK.npz
    evaluate                 evaluate (weighted metric too) and predict 37 samples in
                             batches of 8; every rank writes OUT-RANK.npz and prints how
                             many samples its forward saw
    raise                    rank 1 raises in the middle of an epoch
    kill                     rank 1 kills itself (SIGKILL) in the middle of an epoch
    mismatch                 rank 1 builds a wider model than rank 0
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import sys

import numpy as np

import fusednn as fd

SAMPLES, SEED = 64, 5


def data(samples=SAMPLES):
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(samples, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].sum(axis=(1, 2, 3)) > 0).astype(np.int64) + (x[:, 4:].mean() > 0)
    return x, y


def cnn(width=4):
    return fd.Sequential([
        fd.layers.Conv2D(width, 3, activation="relu", padding="same", input_shape=(8, 8, 1)),
        fd.layers.MaxPooling2D(2),
        fd.layers.Flatten(),
        fd.layers.Dense(3, activation="softmax"),
    ])


def build_and_compile(optimizer, width=4):
    # Each rank starts from other weights: fit must hand every rank root's.
    fd.utils.set_random_seed(SEED + fd.distribute.rank())
    model = cnn(width)
    fd.utils.set_random_seed(SEED)   # root's generator (the shuffle) equals one process's
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


class FailAt(fd.callbacks.Callback):
    """On rank 1 only: raise, or SIGKILL itself, at batch `at` of epoch 1."""

    def __init__(self, how, at=1):
        super().__init__()
        self.how, self.epoch, self.at = how, 0, at

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if fd.distribute.rank() != 1 or (self.epoch, batch) != (1, self.at):
            return
        if self.how == "raise":
            raise RuntimeError("injected failure on rank 1")
        os.kill(os.getpid(), signal.SIGKILL)


def record_events(model):
    """The first step's order of bucket starts and of the first layer's backward."""
    from fusednn.distribute import environment

    events, comm, first = [], environment.communicator(), model.layers[0]
    start, backward = comm.start_allreduce_sum, first.backward

    def recorded_start(array):
        events.append(f"start {array.size}")
        return start(array)

    def recorded_backward(dy):
        events.append("first layer's backward")
        return backward(dy)

    comm.start_allreduce_sum, first.backward = recorded_start, recorded_backward
    return events


def fit(out, optimizer, batch_size, callbacks=(), bucket_bytes=None):
    model = build_and_compile({"sgd": fd.optimizers.SGD(0.1, momentum=0.5),
                               "adam": fd.optimizers.Adam(0.01)}[optimizer])
    x, y = data()
    events = []
    if bucket_bytes is not None:
        fd.distribute.buckets.BUCKET_BYTES = bucket_bytes
        events = record_events(model)
    history = model.fit(x, y, batch_size=batch_size, epochs=4 if not callbacks else 30,
                        verbose=0, callbacks=list(callbacks))
    if fd.distribute.rank() == 0:
        np.savez(out, *model.get_weights(), loss=np.array(history.history["loss"]),
                 accuracy=np.array(history.history["accuracy"]), events=np.array(events))


def with_callbacks(out):
    model = build_and_compile("adam")
    x, y = data(70)
    stop = fd.callbacks.EarlyStopping(monitor="loss", min_delta=10.0, patience=0)
    checkpoint = fd.callbacks.ModelCheckpoint(os.path.join(out, "ckpt-{epoch}.keras"))
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=1, callbacks=[stop, checkpoint])
    print(f"rank {fd.distribute.rank()} ran epochs {history.epoch}")


def with_backup(out, epochs):
    model = build_and_compile("adam")
    x, y = data()
    backup = fd.callbacks.BackupAndRestore(os.path.join(out, "backup"), delete_checkpoint=False)
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[backup])
    print(f"rank {fd.distribute.rank()} ran epochs {history.epoch}")
    if fd.distribute.rank() == 0:
        np.savez(os.path.join(out, f"weights-{epochs}.npz"), *model.get_weights())


def with_backup_inside_epochs(out, shuffle, kill):
    model = build_and_compile("adam")
    x, y = data(70)
    callbacks = [fd.callbacks.BackupAndRestore(os.path.join(out, "backup"), save_freq=3)]
    if kill:
        callbacks.append(FailAt("kill", at=2))
    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=shuffle,
                        callbacks=callbacks)
    print(f"rank {fd.distribute.rank()} ran epochs {history.epoch}")
    if fd.distribute.rank() == 0:
        np.savez(os.path.join(out, "weights.npz"), *model.get_weights(),
                 loss=np.array(history.history["loss"]))


def gan(out, batch_size):
    """The lecture's GAN protocol on fixed data: each rank takes its slice of every
    global batch, averages gradients with allreduce_gradients before each step."""
    from fusednn.demos.gan import networks

    fd.utils.set_random_seed(SEED + fd.distribute.rank())
    generator, discriminator = networks()
    fd.distribute.broadcast_variables(generator)
    fd.distribute.broadcast_variables(discriminator)
    d_opt, g_opt = fd.optimizers.Adam(1e-3), fd.optimizers.Adam(1e-3)
    loss = fd.losses.BinaryCrossentropy(from_logits=True)
    rng = np.random.default_rng(SEED)
    rank, size = fd.distribute.rank(), fd.distribute.size()
    mine = slice(rank * batch_size, (rank + 1) * batch_size)
    for _ in range(4):
        real = rng.normal(size=(batch_size * size, 2)).astype(np.float32)[mine]
        z = rng.normal(size=(batch_size * size, 8)).astype(np.float32)[mine]
        ones = np.ones((batch_size, 1), np.float32)
        zeros = np.zeros((batch_size, 1), np.float32)
        discriminator.trainable = True
        discriminator.zero_grad()
        for points, target in ((real, ones), (generator.forward(z, training=True), zeros)):
            _, grad = loss.value_and_grad(target, discriminator.forward(points, training=True))
            discriminator.backward(grad)
        fd.distribute.allreduce_gradients(discriminator)
        d_opt.step(discriminator)
        generator.zero_grad()
        discriminator.trainable = False
        _, grad = loss.value_and_grad(ones, discriminator.forward(
            generator.forward(z, training=True), training=True))
        generator.backward(discriminator.backward(grad))
        fd.distribute.allreduce_gradients(generator)
        g_opt.step(generator)
    if rank == 0:
        np.savez(out, *generator.get_weights(), *discriminator.get_weights())


def evaluate_and_predict(out):
    model = build_and_compile("adam")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    fd.distribute.broadcast_variables(model)   # evaluate itself does not broadcast
    x, y = data(37)
    weights = np.linspace(0.5, 2.0, 37).astype(np.float32)
    seen = []
    forward = model.forward
    model.forward = lambda inputs, training=False: (seen.append(len(inputs)),
                                                    forward(inputs, training))[1]
    results = model.evaluate(x, y, batch_size=8, sample_weight=weights, verbose=0)
    predicted = model.predict(x, batch_size=8)
    rank = fd.distribute.rank()
    print(f"rank {rank} saw {sum(seen)} samples")
    np.savez(f"{out}-{rank}.npz", results=np.array(results), predicted=predicted)


def demo(out, name, steps):
    import importlib

    module = importlib.import_module(f"fusednn.demos.{name}")
    built = []
    networks = module.networks
    module.networks = lambda: built.extend(networks()) or tuple(built)
    module.STEPS_PER_EPOCH = steps
    with contextlib.ExitStack() as silence:   # as `fusednn demo`: rank 0 prints
        if fd.distribute.rank() != 0:
            silence.enter_context(contextlib.redirect_stdout(io.StringIO()))
        module.run(epochs=1, out_dir=os.path.dirname(out))
    weights = [w for network in built for w in network.get_weights()]
    np.savez(f"{out}-{fd.distribute.rank()}.npz", *weights)


def mismatch():
    model = build_and_compile("sgd", width=4 if fd.distribute.rank() == 0 else 6)
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)


def main(argv):
    fd.distribute.initialize()
    scenario, out = argv[1], argv[2]
    if scenario == "fit":
        fit(out, argv[3], int(argv[4]), bucket_bytes=int(argv[5]) if len(argv) > 5 else None)
    elif scenario == "callbacks":
        with_callbacks(out)
    elif scenario == "backup":
        with_backup(out, int(argv[3]))
    elif scenario == "steps":
        with_backup_inside_epochs(out, argv[3] == "shuffle", argv[4:] == ["kill"])
    elif scenario == "gan":
        gan(out, int(argv[3]))
    elif scenario in ("raise", "kill"):
        fit(out, "sgd", 16, callbacks=[FailAt(scenario)])
    elif scenario == "demo":
        demo(out, argv[3], int(argv[4]))
    elif scenario == "evaluate":
        evaluate_and_predict(out)
    elif scenario == "mismatch":
        mismatch()
    else:
        raise ValueError(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main(sys.argv)
