"""Keras 3's AUC: the area under the ROC or precision-recall curve, from confusion counts
at `num_thresholds` thresholds accumulated over batches (a Riemann sum, as Keras).

The thresholds are 0 - 1e-7, (i + 1) / (num_thresholds - 1) for i < num_thresholds - 2,
and 1 + 1e-7, so the first counts every prediction in [0, 1] positive and the last none.
summation_method "interpolation" takes trapezoids for ROC and, for PR, Davis & Goadrich's
interpolation (precision varies along the curve as a ratio of linear functions, which
integrates in closed form: Keras's interpolate_pr_auc); "minoring" / "majoring" take the
lower / upper of each pair of heights.
"""
from __future__ import annotations

import numbers

import numpy as np

from .base import Metric, host
from .confusion import _no_nan_divide, confusion_counts

_EPSILON = 1e-7  # Keras's backend.epsilon(): the outermost thresholds' margin
_CURVES = ("ROC", "PR")
_SUMMATIONS = ("interpolation", "minoring", "majoring")


class AUC(Metric):
    """Area under the ROC (x: false-positive rate, y: recall) or PR (x: recall,
    y: precision) curve. Labels and predictions are flattened (multi_label=False);
    from_logits=True applies a sigmoid to the predictions first."""

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        curve = curve.upper() if isinstance(curve, str) else curve
        if curve not in _CURVES:
            raise ValueError(f"AUC: curve must be one of {_CURVES}, got {curve!r}")
        summation_method = summation_method.lower() if isinstance(summation_method, str) \
            else summation_method
        if summation_method not in _SUMMATIONS:
            raise ValueError(f"AUC: summation_method must be one of {_SUMMATIONS}, got "
                             f"{summation_method!r}")
        if multi_label or label_weights is not None:
            raise NotImplementedError("AUC: multi_label=True and label_weights are not "
                                      "supported by fusednn yet; every label is one entry "
                                      "of a single curve (multi_label=False)")
        self.curve, self.summation_method = curve, summation_method
        self.multi_label, self.num_labels, self.label_weights = False, num_labels, None
        self.from_logits = bool(from_logits)
        self._init_thresholds = None if thresholds is None else list(thresholds)
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            if any(not 0.0 <= t <= 1.0 for t in inner):
                raise ValueError(f"AUC: thresholds must be in [0, 1], got {thresholds!r}")
            self.num_thresholds = len(inner) + 2
        else:
            if isinstance(num_thresholds, bool) \
                    or not isinstance(num_thresholds, numbers.Integral) or num_thresholds <= 1:
                raise ValueError(f"AUC: num_thresholds must be an int > 1, got {num_thresholds!r}")
            self.num_thresholds = int(num_thresholds)
            inner = [(i + 1) * 1.0 / (self.num_thresholds - 1)
                     for i in range(self.num_thresholds - 2)]
        self.thresholds = [0.0 - _EPSILON] + inner + [1.0 + _EPSILON]
        super().__init__(name=name, dtype=dtype)

    _state = ("true_positives", "false_positives", "true_negatives", "false_negatives")

    def reset_state(self) -> None:
        for count in self._state:
            setattr(self, count, np.zeros(self.num_thresholds))

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        what = f"AUC '{self.name}'"
        y_pred = host(y_pred, what + " y_pred")
        if self.from_logits:
            y_pred = 1.0 / (1.0 + np.exp(-y_pred))
        counts = confusion_counts(what, y_true, y_pred, sample_weight, self.thresholds)
        self.true_positives = self.true_positives + counts["tp"]
        self.false_positives = self.false_positives + counts["fp"]
        self.true_negatives = self.true_negatives + counts["tn"]
        self.false_negatives = self.false_negatives + counts["fn"]

    def result(self) -> float:
        tp, fp = self.true_positives, self.false_positives
        tn, fn = self.true_negatives, self.false_negatives
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolated_pr_auc()
        recall = _no_nan_divide(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _no_nan_divide(fp, fp + tn), recall
        else:
            x, y = recall, _no_nan_divide(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return float(np.sum((x[:-1] - x[1:]) * heights))

    def _interpolated_pr_auc(self) -> float:
        """Between thresholds i and i+1, tp grows linearly in p = tp + fp with slope
        dtp / dp; precision tp / p then integrates over recall in closed form."""
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _no_nan_divide(dtp, np.maximum(dp, 0.0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[:-1] > 0) & (p[1:] > 0)
        ratio = np.where(both, _no_nan_divide(p[:-1], np.maximum(p[1:], 0.0)), 1.0)
        increments = _no_nan_divide(slope * (dtp + intercept * np.log(ratio)),
                                    np.maximum(tp[1:] + fn[1:], 0.0))
        return float(np.sum(increments))

    def get_config(self) -> dict:
        return {**super().get_config(), "num_thresholds": self.num_thresholds,
                "curve": self.curve, "summation_method": self.summation_method,
                "multi_label": False, "num_labels": self.num_labels, "label_weights": None,
                "from_logits": self.from_logits,
                # Keras writes thresholds only when they were given
                **({} if self._init_thresholds is None
                   else {"thresholds": self._init_thresholds})}
