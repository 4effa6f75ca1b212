"""Custom layers of C3AE, registered so that saved models reload from their path alone."""
import keras
from keras import ops

PACKAGE = "c3ae"


@keras.saving.register_keras_serializable(package=PACKAGE)
class WhiteNorm(keras.layers.Layer):
    """Fixed affine (x - 127.5) / 128 on raw 0..255 pixels (not per-image whitening)."""

    def call(self, inputs):
        return (inputs - 127.5) / 128.0


@keras.saving.register_keras_serializable(package=PACKAGE)
class Mish6(keras.layers.Layer):
    """x * tanh(softplus(x)), clipped to [-6, 6]."""

    def call(self, inputs):
        return ops.clip(inputs * ops.tanh(ops.softplus(inputs)), -6.0, 6.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GeMPooling2D(keras.layers.Layer):
    """Generalised-mean pooling over height and width, with a trainable exponent p (start 3)."""

    def __init__(self, p=3.0, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.initial_p = float(p)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.p = self.add_weight(name="p", shape=(), initializer=keras.initializers.Constant(self.initial_p))

    def call(self, inputs):
        p = ops.cast(self.p, inputs.dtype)
        x = ops.power(ops.maximum(inputs, ops.cast(self.epsilon, inputs.dtype)), p)
        return ops.power(ops.mean(x, axis=(1, 2)), 1.0 / p)

    def get_config(self):
        return {**super().get_config(), "p": self.initial_p, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SqueezeExcite(keras.layers.Layer):
    """Squeeze-and-excitation: pool -> Dense(C / ratio, relu) -> Dense(C, sigmoid) -> scale channels."""

    def __init__(self, ratio=2, pooling="avg", **kwargs):
        super().__init__(**kwargs)
        if pooling not in ("avg", "gem"):
            raise ValueError(f"pooling must be 'avg' or 'gem', not {pooling!r}")
        self.ratio = int(ratio)
        self.pooling = pooling

    def build(self, input_shape):
        channels = int(input_shape[-1])
        policy = self.dtype_policy
        self.pool = GeMPooling2D(name="gem", dtype=policy) if self.pooling == "gem" else \
            keras.layers.GlobalAveragePooling2D(name="gap", dtype=policy)
        self.squeeze = keras.layers.Dense(channels // self.ratio, activation="relu", name="squeeze",
                                          dtype=policy)
        self.excite = keras.layers.Dense(channels, activation="sigmoid", name="excite", dtype=policy)
        self.pool.build(input_shape)
        self.squeeze.build((input_shape[0], channels))
        self.excite.build((input_shape[0], channels // self.ratio))

    def call(self, inputs):
        scale = self.excite(self.squeeze(self.pool(inputs)))
        return inputs * ops.expand_dims(ops.expand_dims(scale, 1), 1)

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio, "pooling": self.pooling}


@keras.saving.register_keras_serializable(package=PACKAGE)
class L2Normalize(keras.layers.Layer):
    def call(self, inputs):
        return inputs / ops.sqrt(ops.maximum(ops.sum(ops.square(inputs), axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CosineSoftmax(keras.layers.Layer):
    """Softmax over scale x cosine(feature, class weight): unit-norm weights, for the `neck` variant."""

    def __init__(self, units, scale=16.0, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.scale = float(scale)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(int(input_shape[-1]), self.units),
                                      initializer="glorot_uniform")

    def call(self, inputs):
        kernel = ops.cast(self.kernel, inputs.dtype)
        kernel = kernel / ops.sqrt(ops.maximum(ops.sum(ops.square(kernel), axis=0, keepdims=True), 1e-12))
        return ops.softmax(self.scale * ops.matmul(inputs, kernel), axis=-1)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MirrorStack(keras.layers.Layer):
    """(N, H, W, C) -> (2N, H, W, C): the images, then their mirror images (flipped left-right)."""

    def call(self, inputs):
        return ops.concatenate([inputs, ops.flip(inputs, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        return (None if input_shape[0] is None else 2 * input_shape[0],) + tuple(input_shape[1:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class MirrorMean(keras.layers.Layer):
    """(2N, ...) stacked by MirrorStack -> (N, ...): each output averaged with its mirror image's."""

    def call(self, inputs):
        original, mirrored = ops.split(inputs, 2, axis=0)
        return (original + mirrored) / 2

    def compute_output_shape(self, input_shape):
        return (None if input_shape[0] is None else input_shape[0] // 2,) + tuple(input_shape[1:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class PriorCorrection(keras.layers.Layer):
    """W1 with each bin divided by the training faces' share of it raised to `strength`, renormalised:
    logit adjustment after training (Menon et al., ICLR 2021), which undoes part of the pull of the
    common ages. strength 0 changes nothing; 1 divides by the whole prior."""

    def __init__(self, prior, strength, **kwargs):
        super().__init__(**kwargs)
        self.prior = [float(p) for p in prior]
        self.strength = float(strength)
        if min(self.prior) <= 0:
            raise ValueError("every bin of the prior must have a share above 0")

    def call(self, inputs):
        factors = [p ** -self.strength for p in self.prior]
        corrected = inputs * ops.convert_to_tensor(factors, dtype=inputs.dtype)
        return corrected / ops.sum(corrected, axis=-1, keepdims=True)

    def get_config(self):
        return {**super().get_config(), "prior": self.prior, "strength": self.strength}
