"""FitProgress: fit's position inside an epoch, shared by the training loop (which
advances it) and BackupAndRestore (which saves it and hands it back to resume)."""
from __future__ import annotations


def means_logs(loss_mean, metric_means) -> dict:
    """Keras's logs from the running results: the loss tracker's, then each metric's."""
    logs = {loss_mean.name: loss_mean.result()}
    logs.update({name: metric.result() for name, metric in metric_means.items()})
    return logs


class FitProgress:
    """Where fit is inside an epoch: what BackupAndRestore saves and fit resumes from.

    epoch (0-based) and step (batches done in it, of `steps`), the epoch's sample order
    (a permutation of the `samples` indices, or None without shuffling) and the model's
    metrics (loss tracker first, then {name: metric}), which hold the running results
    over the batches done. One that BackupAndRestore restored holds the metrics' saved
    variables instead, until fit loads them into the model's metrics.
    """

    def __init__(self, epoch, step, steps, samples, order, loss_mean, metric_means):
        self.epoch, self.step, self.steps, self.samples = epoch, step, steps, samples
        self.order, self.loss_mean, self.metric_means = order, loss_mean, metric_means

    def logs(self) -> dict:
        return means_logs(self.loss_mean, self.metric_means) if self.loss_mean.count else {}

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

