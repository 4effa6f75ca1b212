"""Losses on the two-point distribution W1: KL (the paper) and class-balanced focal (the original code)."""
import keras
import numpy as np
from keras import ops

from nets.network.layers import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class BalancedFocalLoss(keras.losses.Loss):
    """Per bin -w_i (t_i - p_i)^2 log p_i where t_i > 0, mixed (1 - u) / u with the cross-entropy
    to the uniform distribution (a confidence penalty); w are inverse bin frequencies."""

    def __init__(self, class_weights, uniform_mix=0.1, name="balanced_focal", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        self.uniform_mix = float(uniform_mix)

    def call(self, y_true, y_pred):
        y_pred = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)
        y_true = ops.cast(y_true, "float32")
        log_p = ops.log(y_pred)
        weights = ops.convert_to_tensor(np.asarray(self.class_weights, np.float32))
        present = ops.cast(y_true > 0, "float32")
        focal = -ops.sum(weights * present * ops.square(y_true - y_pred) * log_p, axis=-1)
        uniform = -ops.mean(log_p, axis=-1)
        return (1.0 - self.uniform_mix) * focal + self.uniform_mix * uniform

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights, "uniform_mix": self.uniform_mix}


def inverse_frequency_weights(two_point_targets: np.ndarray) -> np.ndarray:
    """w_i = 1 / f_i over the bins that occur, scaled so that an average sample weighs 1."""
    mass = np.asarray(two_point_targets, np.float64).sum(axis=0)
    share = mass / max(mass.sum(), 1e-12)
    present = share > 0
    weights = np.zeros_like(share)
    weights[present] = 1.0 / (share[present] * present.sum())
    return weights.astype(np.float32)


def w1_loss(kind: str, train_targets: np.ndarray | None = None):
    if kind == "kl":
        return keras.losses.KLDivergence(name="kl")
    if kind == "focal":
        if train_targets is None:
            raise ValueError("the focal loss needs the training targets for its class weights")
        return BalancedFocalLoss(inverse_frequency_weights(train_targets))
    raise ValueError(f"loss must be 'kl' or 'focal', not {kind!r}")
