"""Checkpoints survive crashes and refuse what they should not load.

- Saving is atomic: a child process killed (SIGKILL) in the middle of a save leaves
  the previous file loadable and unchanged, and the temporary file it leaves behind
  is never taken for the checkpoint.
- BackupAndRestore: a fit killed mid-training and resumed gives exactly the losses of
  an uninterrupted CPU run (weights, optimizer state, RNG state, epoch and batch).
- Loading refuses foreign content without importing anything by name (what
  tests/test_io.py does not cover already: import-by-name attempts, absurd nesting,
  huge declared shapes, the header size limit itself).

Child processes run this file as a script (`python test_checkpoints.py <role> ...`).
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import fusednn.io as fio
import fusednn.models as models
import fusednn.utils as utils
from fusednn import callbacks, layers, optimizers

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")


# ----- models and data shared with the child processes -------------------------------------

def large_model(value: float):
    """~4.2M float32 weights (17 MB on disk), every weight equal to `value`, so a file
    mixing two saves would show."""
    model = models.Sequential([layers.Dense(2048, input_shape=(1024,), name="a"),
                               layers.Dense(1024, name="b")], name="big")
    model.set_weights([np.full(w.shape, value, np.float32) for w in model.get_weights()])
    return model


def classifier():
    """A small classifier whose training draws from every generator fusednn has: the
    global one (shuffling, Dropout without seed) and a layer's own (Dropout seed=7)."""
    utils.set_random_seed(3)
    model = models.Sequential([
        layers.Dense(16, activation="relu", input_shape=(5,), name="hidden"),
        layers.Dropout(0.3, name="drop"),
        layers.Dense(8, activation="tanh", name="hidden2"),
        layers.Dropout(0.2, seed=7, name="seeded_drop"),
        layers.Dense(3, activation="softmax", name="out"),
    ], name="clf")
    model.compile(optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def classifier_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)


FIT = dict(batch_size=8, epochs=4, verbose=0)   # 7 batches per epoch, the last one of 2


class KillAt(callbacks.Callback):
    """SIGKILLs its own process after batch `batch` of epoch `epoch`: a crash, no cleanup."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self.current = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGKILL)


# ----- the child processes -------------------------------------------------------------------

def _child_save_loop(path):
    """Saves the large model over and over with weights 1, 2, 3, ... (until killed)."""
    value = 1.0
    while True:
        large_model(value).save(path)
        print(value, flush=True)
        value += 1.0


def _child_pause_in_write(path):
    """Saves the large model with weights 2.0, pausing for good in the middle of writing
    the tensor data (after the header and the first 1 MB), and says so on stdout."""
    real_fdopen = os.fdopen

    class SlowFile:
        def __init__(self, f):
            self.f, self.written = f, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.written += len(data)
            result = self.f.write(data)
            if self.written > 1 << 20:
                self.f.flush()
                print("paused", flush=True)
                time.sleep(600)
            return result

        def __getattr__(self, name):
            return getattr(self.f, name)

    model = large_model(2.0)
    fio.os.fdopen = lambda fd, mode: SlowFile(real_fdopen(fd, mode))
    model.save(path)


def _child_fit_and_crash(backup_dir, save_freq, epoch, batch):
    save_freq = save_freq if save_freq == "epoch" else int(save_freq)
    x, y = classifier_data()
    classifier().fit(x, y, **FIT, callbacks=[
        callbacks.BackupAndRestore(backup_dir, save_freq=save_freq),
        KillAt(int(epoch), int(batch))])


def _start_child(*args):
    return subprocess.Popen([sys.executable, __file__, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _temporary_files(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# ----- atomic saving ---------------------------------------------------------------------------

def test_kill_inside_the_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.keras"
    large_model(1.0).save(path)
    before = path.read_bytes()
    child = _start_child("pause-in-write", path)
    try:
        assert child.stdout.readline().strip() == "paused", child.stderr.read()
        temporaries = _temporary_files(tmp_path)
        assert len(temporaries) == 1            # the half-written new version, elsewhere
        assert os.path.getsize(tmp_path / temporaries[0]) > 1 << 20
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    loaded = models.load_model(path)
    assert all(np.all(w == 1.0) for w in loaded.get_weights())
    # The leftover is a hidden .tmp file no loader looks at; the next save replaces the
    # checkpoint as usual and is not confused by it.
    assert temporaries[0].startswith(".model.keras.")
    large_model(3.0).save(path)
    assert all(np.all(w == 3.0) for w in models.load_model(path).get_weights())


def test_kills_at_random_moments_of_a_save_loop_never_leave_a_broken_file(tmp_path):
    path = tmp_path / "model.safetensors"
    rng = np.random.default_rng(0)
    for _ in range(3):
        child = _start_child("save-loop", path)
        assert child.stdout.readline()          # the first save completed
        time.sleep(rng.uniform(0.0, 0.3))       # saves take ~0.05-0.2 s each
        child.kill()
        child.wait()
        # Whatever moment the kill hit, the file is one complete save: all weights equal.
        weights = models.load_model(path).get_weights()
        values = {float(v) for w in weights for v in np.unique(w)}
        assert len(values) == 1 and values.pop() >= 1.0
    # Leftovers of interrupted saves are hidden temporaries, never the checkpoint's name.
    assert all(name.startswith(".model.safetensors.") for name in _temporary_files(tmp_path))
    assert set(os.listdir(tmp_path)) - set(_temporary_files(tmp_path)) == {"model.safetensors"}


# ----- BackupAndRestore -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def uninterrupted():
    x, y = classifier_data()
    return classifier().fit(x, y, **FIT).history


@pytest.mark.parametrize("save_freq, epoch, batch", [
    ("epoch", 2, 3),    # killed in epoch 2: resumes at the start of epoch 2
    (3, 2, 4),          # backup after batch 2 of epoch 2 (batches 0-2): resumes at batch 3
    (2, 1, 6),          # killed at the end of epoch 1: its backup is from inside epoch 1
])
def test_fit_killed_and_resumed_matches_an_uninterrupted_run(tmp_path, uninterrupted, save_freq,
                                                            epoch, batch):
    backup_dir = tmp_path / "backup"
    child = _start_child("fit-and-crash", backup_dir, save_freq, epoch, batch)
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    assert os.path.exists(backup_dir / "backup.safetensors")

    x, y = classifier_data()
    model = classifier()   # fresh weights and generators: everything comes from the backup
    history = model.fit(x, y, **FIT, callbacks=[
        callbacks.BackupAndRestore(backup_dir, save_freq=save_freq)]).history
    resumed_epochs = len(history["loss"])
    assert 1 <= resumed_epochs < FIT["epochs"]
    for key in ("loss", "accuracy"):
        # Exactly: the same float operations in the same order on the CPU.
        assert history[key] == uninterrupted[key][-resumed_epochs:], key
    assert not backup_dir.exists()   # delete_checkpoint=True removed it (and the empty folder)


def test_a_crash_during_the_first_backup_starts_from_scratch(tmp_path, uninterrupted):
    """A temporary file left by a save that never finished is not taken for a backup."""
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    (backup_dir / ".backup.safetensors.0123456789ab.tmp").write_bytes(b"torn" * 100)
    x, y = classifier_data()
    history = classifier().fit(x, y, **FIT, callbacks=[
        callbacks.BackupAndRestore(backup_dir)]).history
    assert history["loss"] == uninterrupted["loss"]
    # Only its own file is deleted at the end; the folder with the stray file stays.
    assert os.listdir(backup_dir) == [".backup.safetensors.0123456789ab.tmp"]


def test_backup_is_kept_when_asked_or_when_fit_raises(tmp_path):
    x, y = classifier_data()
    keep = callbacks.BackupAndRestore(tmp_path / "keep", delete_checkpoint=False)
    classifier().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[keep])
    assert (tmp_path / "keep" / "backup.safetensors").exists()

    class Fail(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        classifier().fit(x, y, **FIT, callbacks=[
            callbacks.BackupAndRestore(tmp_path / "crash"), Fail()])
    assert (tmp_path / "crash" / "backup.safetensors").exists()


def test_resuming_mid_epoch_with_other_batching_is_refused(tmp_path):
    backup_dir = tmp_path / "backup"
    child = _start_child("fit-and-crash", backup_dir, 3, 1, 4)
    child.communicate(timeout=120)
    x, y = classifier_data()
    with pytest.raises(ValueError, match=r"7 batches.*this fit has 50 samples in 5 batches"):
        classifier().fit(x, y, batch_size=10, epochs=4, verbose=0,
                         callbacks=[callbacks.BackupAndRestore(backup_dir, save_freq=3)])


def test_backup_of_another_model_is_refused_naming_the_shapes(tmp_path):
    backup_dir = tmp_path / "backup"
    x, y = classifier_data()
    classifier().fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[
        callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)])
    other = models.Sequential([layers.Dense(4, input_shape=(5,), name="hidden"),
                               layers.Dense(3, activation="softmax", name="out")])
    other.compile("adam", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"holds 6 weight tensors"):
        other.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.BackupAndRestore(backup_dir)])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(backup_dir=""), ValueError, "non-empty path"),
    (dict(backup_dir=3), TypeError, "expected backup_dir to be a path, got int"),
    (dict(backup_dir="b", save_freq=0), ValueError, "'epoch' or a positive int.*got 0"),
    (dict(backup_dir="b", save_freq="batch"), ValueError, "got 'batch'"),
])
def test_backup_and_restore_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        callbacks.BackupAndRestore(**kwargs)


# ----- refusing foreign content ------------------------------------------------------------------

@pytest.fixture
def saved(tmp_path):
    model = models.Sequential([layers.Dense(3, input_shape=(4,), name="d")])
    path = tmp_path / "model.safetensors"
    model.save(path)
    return path


def _forge_config(path, target, edit):
    tensors, metadata = fio.read_safetensors(path)
    config = json.loads(metadata["fusednn_config"])
    edit(config)
    metadata["fusednn_config"] = json.dumps(config)
    fio.write_safetensors(target, tensors, metadata)


@pytest.mark.parametrize("class_name", [
    "probe_module.Probe", "probe_module", "builtins.eval", "os.system", "__import__",
    "fusednn.layers.core.Dense",
])
def test_layer_classes_are_never_imported_by_name(saved, tmp_path, monkeypatch, class_name):
    # A module that leaves a mark when imported, importable from the current sys.path.
    marker = tmp_path / "imported"
    (tmp_path / "probe_module.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Probe: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    forged = tmp_path / "forged.safetensors"
    _forge_config(saved, forged, lambda c: c["config"]["layers"][0].update(class_name=class_name))
    with pytest.raises(ValueError, match=rf"forged\.safetensors.*unknown layer class "
                                         rf"'{class_name}'"):
        models.load_model(forged)
    assert not marker.exists() and "probe_module" not in sys.modules


def test_absurdly_nested_configs_are_refused_not_recursed_into(saved, tmp_path):
    tensors, metadata = fio.read_safetensors(saved)
    layer = json.dumps(json.loads(metadata["fusednn_config"])["config"]["layers"][0])
    depth = 2000
    metadata["fusednn_config"] = ('{"class_name": "Sequential", "config": {"layers": [' * depth
                                  + layer + "]}}" * depth)
    forged = tmp_path / "nested.safetensors"
    fio.write_safetensors(forged, tensors, metadata)
    with pytest.raises(ValueError, match=r"nested\.safetensors.*RecursionError"):
        models.load_model(forged)

    deep = tmp_path / "deep_header.safetensors"
    header = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    deep.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ValueError, match=r"deep_header\.safetensors.*not valid UTF-8 JSON"):
        fio.read_safetensors(deep)


def test_huge_declared_shapes_are_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**40, 2**20],
                               "data_offsets": [0, 2**62]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(ValueError, match=r"huge\.safetensors.*truncated.*4611686018427387904"):
        fio.read_safetensors(path)


def test_the_header_size_limit_applies_before_the_header_is_read(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    models.Sequential([layers.Dense(3, input_shape=(4,))]).save(path)
    length = struct.unpack("<Q", path.read_bytes()[:8])[0]
    monkeypatch.setattr(fio, "_MAX_HEADER_BYTES", length - 8)
    with pytest.raises(ValueError, match=rf"header length {length} exceeds the limit of "
                                         rf"{length - 8} bytes"):
        models.load_model(path)


if __name__ == "__main__":
    role, *arguments = sys.argv[1:]
    {"save-loop": _child_save_loop, "pause-in-write": _child_pause_in_write,
     "fit-and-crash": _child_fit_and_crash}[role](*arguments)
