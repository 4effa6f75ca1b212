"""The C3AE network: one small trunk shared by three context crops, a two-point head, optionally gender.

A model describes itself: `describe(model)` reads the variant off the layers it contains, so a
saved file needs no flags to be used again.
"""
from __future__ import annotations

import os
import zipfile

import keras
import numpy as np

from nets.network import losses  # noqa: F401  (registers the losses, for compiled NAME.last.keras files)
from nets.network.contract import CROP_NAMES, INPUT_CONTRACT, INPUT_SHAPE, TRUNK_WIDTH, ModelFileError  # noqa: F401
from nets.network.labels import bin_centres, bin_interval
from nets.network.layers import (CosineSoftmax, L2Normalize, MirrorMean, MirrorStack, Mish6, PriorCorrection, SqueezeExcite,
                                 WhiteNorm)


def _activation(kind: str, name: str, dtype=None):
    if kind == "mish6":
        return Mish6(name=name, dtype=dtype)
    if kind == "relu":
        return keras.layers.ReLU(name=name, dtype=dtype)
    raise ValueError(f"activation must be 'relu' or 'mish6', not {kind!r}")


def build_trunk(se: bool, white: bool, activation: str = "relu", se_pooling: str = "avg",
                width: int = TRUNK_WIDTH) -> keras.Model:
    """The branch of Table 1: conv1..conv5 with BN-activation-avgpool (BRA) blocks; 16 * width features
    (512 at the paper's width of 32)."""
    inputs = keras.Input(INPUT_SHAPE, name="crop")
    x = WhiteNorm(name="white_norm")(inputs) if white else inputs
    for i in (1, 2, 3, 4):
        x = keras.layers.Conv2D(width, 3, use_bias=i != 1, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = _activation(activation, f"act{i}")(x)
        if i < 4:
            x = keras.layers.AveragePooling2D(2, name=f"pool{i}")(x)
        if se:
            x = SqueezeExcite(pooling=se_pooling, name=f"se{i}")(x)
    x = keras.layers.Conv2D(width, 1, name="conv5")(x)
    if se:
        x = SqueezeExcite(pooling=se_pooling, name="se5")(x)
    return keras.Model(inputs, keras.layers.Flatten(name="feature")(x), name="trunk")


def build_c3ae(se: bool = False, white: bool = False, bins: int = 12, gender: bool = False,
               activation: str = "relu", se_pooling: str = "avg", neck: bool = False,
               mirror: bool = False, width: int = TRUNK_WIDTH, prior_correction: dict | None = None) -> keras.Model:
    """Three inputs (outer, middle, inner crops) -> outputs {"age", "W1"[, "gender"]}.

    W1 is the two-point distribution over `bins` bins; age = W2(W1), with W2's kernel started at
    the bin centres so that it begins as the paper's expectation decode and stays learnable.
    neck=True is the original age+gender code's 786 K-parameter neck with cosine heads.
    mirror=True runs every face twice, as it is and flipped left-right, and averages W1 and gender
    (so age too, a linear function of W1): the same weights, twice the compute, a steadier guess.
    width is the channels of the trunk's convolutions: the paper's 32 keeps the model compact; wider
    trunks (parameters and time grow about as width squared) are for teachers and ablations.
       prior_correction ({"prior": share of each bin, "strength": s}): W1 corrected for the training age
    prior (PriorCorrection) before age is decoded from it; no weights.
    """
    trunk = build_trunk(se, white, activation, se_pooling, width)
    inputs = [keras.Input(INPUT_SHAPE, name=name) for name in CROP_NAMES]
    crops = [MirrorStack(name=f"mirror_{name}")(x) for name, x in zip(CROP_NAMES, inputs)] if mirror else inputs
    features = keras.layers.Concatenate(name="context")([trunk(x) for x in crops])
    if neck:
        x = L2Normalize(name="neck_l2_in")(features)
        x = keras.layers.BatchNormalization(name="neck_bn1")(x)
        x = keras.layers.Dropout(0.5, name="neck_dropout")(x)
        x = keras.layers.Dense(512, name="neck_dense")(x)
        x = keras.layers.BatchNormalization(name="neck_bn2")(x)
        features = L2Normalize(name="neck_l2_out")(x)
        w1 = CosineSoftmax(bins, scale=16.0, name="W1", dtype="float32")(features)
    else:
        w1 = keras.layers.Dense(bins, activation="softmax", name="W1", dtype="float32")(features)
    if mirror:
        w1 = MirrorMean(name="W1_mirror_mean", dtype="float32")(w1)
    if prior_correction:
        w1 = PriorCorrection(prior_correction["prior"], prior_correction["strength"], name="W1_prior_correction",
                             dtype="float32")(w1)
    age = keras.layers.Dense(
        1, name="age", dtype="float32",
        kernel_initializer=keras.initializers.Constant(bin_centres(bins).reshape(bins, 1)),
        bias_initializer="zeros")(w1)
    outputs = {"age": age, "W1": w1}
    if gender:
        head = CosineSoftmax(2, scale=1.0, name="gender", dtype="float32") if neck else \
            keras.layers.Dense(2, activation="softmax", name="gender", dtype="float32")
        outputs["gender"] = head(features)
        if mirror:
            outputs["gender"] = MirrorMean(name="gender_mirror_mean", dtype="float32")(outputs["gender"])
    name = "c3ae" + ("_gender" if gender else "") + ("_se" if se else "") + ("_white" if white else "") + \
        ("_mirror" if mirror else "")
    return keras.Model(inputs, outputs, name=name)


def describe(model: keras.Model) -> dict:
    """What a C3AE model is, read off its own layers (nothing to remember, nothing to repeat)."""
    try:
        trunk = model.get_layer("trunk")
        w1 = model.get_layer("W1")
        width = int(trunk.get_layer("conv1").filters)
    except (ValueError, AttributeError) as exc:
        raise ModelFileError(f"{model.name} is not a C3AE model (no trunk/conv1/W1 layer)") from exc
    trunk_layers = trunk.layers
    se_layers = [layer for layer in trunk_layers if isinstance(layer, SqueezeExcite)]
    bins = int(w1.units)
    outputs = sorted(model.output.keys()) if isinstance(model.output, dict) else list(model.output_names)
    return {
        "variant": "age+gender" if "gender" in outputs else "age",
        "se": bool(se_layers),
        "se_pooling": se_layers[0].pooling if se_layers else None,
        "white": any(isinstance(layer, WhiteNorm) for layer in trunk_layers),
        "activation": "mish6" if any(isinstance(layer, Mish6) for layer in trunk_layers) else "relu",
        "neck": any(layer.name == "neck_dense" for layer in model.layers),
        "mirror": any(isinstance(layer, MirrorStack) for layer in model.layers),
        "prior_correction": next(({"prior": layer.prior, "strength": layer.strength} for layer in model.layers
                                  if isinstance(layer, PriorCorrection)), None),
        "width": width,
        "bins": bins, "interval": bin_interval(bins), "category": bins - 2,
        "outputs": outputs, "params": int(model.count_params()), "input": INPUT_CONTRACT,
    }


def build_from_description(description: dict) -> keras.Model:
    return build_c3ae(se=description["se"], white=description["white"], bins=description["bins"],
                      gender=description["variant"] == "age+gender",
                      activation=description["activation"],
                      se_pooling=description["se_pooling"] or "avg", neck=description["neck"],
                      mirror=description.get("mirror", False),
                      width=description.get("width", TRUNK_WIDTH),
                      prior_correction=description.get("prior_correction"))


def rebuild(model: keras.Model, **changes) -> keras.Model:
    """A fresh C3AE model with the weights of `model` (as float32) and its description changed by
    `changes` (e.g. mirror=True): no loss, metrics or optimizer state; the dtype policy in force."""
    clone = build_from_description({**describe(model), **changes})
    for layer in clone.layers:
        if layer.weights:
            layer.set_weights([np.asarray(w, np.float32) for w in model.get_layer(layer.name).get_weights()])
    return clone


def with_mirror(model: keras.Model, mirror: bool = True) -> keras.Model:
    """The same C3AE model (same weights) with or without mirror averaging built in."""
    return model if describe(model)["mirror"] == mirror else rebuild(model, mirror=mirror)


def check_finite(model: keras.Model, where: str = "model") -> None:
    bad = [w.path for w in model.weights if not np.all(np.isfinite(keras.ops.convert_to_numpy(w)))]
    if bad:
        raise ModelFileError(f"{where} has non-finite weights in {', '.join(bad[:5])}"
                             f"{' and more' if len(bad) > 5 else ''}; refusing to use it")


def _short_reason(exc: Exception, limit: int = 200) -> str:
    """The first sentence of an exception's message: Keras's can run to 20,000 characters of config."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if len(text) <= limit:
        return text
    end = text.find(". ")
    return text[:end + 1] if 0 < end < limit else text[:limit] + "..."


def _check_keras_archive(path: str) -> None:
    """Refuse, with one sentence naming the file, what Keras would call "File not found": a folder,
    an empty or unreadable file, or one that is not an intact zip archive with a config.json."""
    if os.path.isdir(path):
        raise ModelFileError(f"model file {path} is a folder, not a .keras file")
    try:
        with open(path, "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:
                raise ModelFileError(f"model file {path} is empty (0 bytes)")
            try:
                with zipfile.ZipFile(file) as archive:
                    damaged = archive.testzip()  # reads every member and checks its CRC
                    names = set(archive.namelist())
            except OSError:
                raise  # a read error, not a damaged archive: reported below
            except Exception as exc:  # BadZipFile, zlib.error, EOFError, unsupported compression...
                raise ModelFileError(f"model file {path} is not a valid .keras archive (damaged or truncated?)") \
                    from exc
    except OSError as exc:
        raise ModelFileError(f"model file {path} cannot be read ({exc.strerror or exc})") from exc
    if damaged is not None:
        raise ModelFileError(f"model file {path} is not a valid .keras archive (damaged or truncated?): "
                             f"{damaged} in it fails its checksum")
    if "config.json" not in names:
        raise ModelFileError(f"model file {path} is a zip archive but not a .keras model (no config.json in it)")


def load_c3ae(path, compile: bool = False) -> keras.Model:
    """Load a `.keras` model this project wrote, checking that it is a finite C3AE model.

    Every refusal is a ModelFileError whose message names the file.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path} does not exist")
    if not path.endswith(".keras"):
        raise ModelFileError(f"{path} is not a .keras model file")
    _check_keras_archive(path)
    try:
        model = keras.models.load_model(path, compile=compile)
    except Exception as exc:
        raise ModelFileError(f"model file {path} could not be loaded as a Keras model ({_short_reason(exc)})") \
            from exc
    try:
        describe(model)
    except Exception as exc:  # describe() names the Keras model; people need the file
        reason = ("no trunk/W1 layer" if isinstance(exc, ModelFileError)
                  else f"{type(exc).__name__}: {_short_reason(exc)}")
        raise ModelFileError(f"model file {path} holds a Keras model that is not a C3AE model ({reason})") from exc
    check_finite(model, path)
    return model


def as_float32(model: keras.Model) -> keras.Model:
    """The same model with float32 computation (for export and inference after -fp16 training)."""
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model
    return rebuild(model)
