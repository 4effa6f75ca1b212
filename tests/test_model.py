"""The model without data: layers, parameter counts, self-description, loading, labels, losses, augmentation."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import nets.network.model  # noqa: F401  (registers the custom layers and losses)
from detect import crop_triple, triple_boxes
from nets.training.augment import AugmentConfig, augmented_crops
from nets.network.labels import bin_centres, bin_interval, two_point_decode, two_point_encode
from nets.network.layers import CosineSoftmax, GeMPooling2D, L2Normalize, Mish6, SqueezeExcite, WhiteNorm
from nets.network.losses import BalancedFocalLoss, inverse_frequency_weights, w1_loss
from nets.network.model import CROP_NAMES, ModelFileError, build_c3ae, describe, load_c3ae, rebuild
from nets.training.train import TrainConfig, compile_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras/NumPy 2 __array__ notices


def random_inputs(n=4, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(0, 255, (n, 64, 64, 3)).astype(np.float32) for name in CROP_NAMES}


def perturb(model, seed=0):
    """Random but valid weights (positive BN variances), so that predictions depend on all of them."""
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        v = keras.ops.convert_to_numpy(w)
        if "moving_variance" in w.path:
            v = rng.uniform(0.5, 1.5, v.shape)
        else:
            v = v + rng.normal(0, 0.05, v.shape)
        values.append(v.astype(np.float32))
    model.set_weights(values)
    return model


# --- parameter counts ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,params", [
    ({}, 48_633),
    ({"se": True}, 53_993),
    ({"white": True}, 48_633),
    ({"se": True, "white": True}, 53_993),
    ({"se": True, "gender": True}, 57_067),
])
def test_parameter_counts(kwargs, params):
    model = build_c3ae(**kwargs)
    assert model.count_params() == params
    assert describe(model)["params"] == params


def test_trunk_is_shared_and_table1_shaped():
    model = build_c3ae()
    trunk = model.get_layer("trunk")
    assert trunk.output.shape[1:] == (512,)  # 4 x 4 x 32
    assert trunk.count_params() == 30_176  # conv1 without bias (864) + BN + conv2..4 + BN + conv5
    assert trunk.get_layer("conv1").count_params() == 864
    assert [layer.name for layer in model.layers].count("trunk") == 1  # one trunk for three crops
    assert [tuple(i.shape[1:]) for i in model.inputs] == [(64, 64, 3)] * 3
    assert [i.name for i in model.inputs] == list(CROP_NAMES)


# --- custom layers ---------------------------------------------------------------------------------

LAYERS = [
    (lambda: WhiteNorm(name="w"), (8, 8, 3)),
    (lambda: Mish6(name="m"), (8, 8, 3)),
    (lambda: GeMPooling2D(p=2.5, epsilon=1e-5, name="g"), (8, 8, 4)),
    (lambda: SqueezeExcite(ratio=4, pooling="gem", name="s"), (8, 8, 8)),
    (lambda: SqueezeExcite(ratio=2, pooling="avg", name="s"), (8, 8, 8)),
    (lambda: L2Normalize(name="l"), (16,)),
    (lambda: CosineSoftmax(5, scale=7.0, name="c"), (16,)),
]
LAYER_IDS = ["WhiteNorm", "Mish6", "GeMPooling2D", "SqueezeExcite-gem", "SqueezeExcite-avg", "L2Normalize",
             "CosineSoftmax"]


@pytest.mark.parametrize("make,shape", LAYERS, ids=LAYER_IDS)
def test_layer_config_round_trip(make, shape):
    layer = make()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # registered: a generic deserialisation finds the class from its serialised name
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(again) is type(layer) and again.get_config() == config


@pytest.mark.parametrize("make,shape", LAYERS, ids=LAYER_IDS)
def test_layer_save_and_load(make, shape, tmp_path):
    inputs = keras.Input(shape)
    model = keras.Model(inputs, make()(inputs))
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.uniform(0, 255 if len(shape) == 3 else 1, (3,) + shape).astype(np.float32)
    path = tmp_path / "layer.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: the layers are registered
    assert type(loaded.layers[-1]) is type(model.layers[-1])
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_white_norm_values():
    x = np.array([[0.0, 127.5, 255.0]], np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(WhiteNorm()(x)), [[-127.5 / 128, 0.0, 127.5 / 128]])


def test_mish6_values_and_clipping():
    x = np.linspace(-100, 100, 2001).astype(np.float32)
    got = keras.ops.convert_to_numpy(Mish6()(x))
    mish = x * np.tanh(np.log1p(np.exp(np.minimum(x, 50.0))))
    np.testing.assert_allclose(got, np.clip(mish, -6, 6), atol=1e-5)
    assert got.max() == pytest.approx(6.0) and np.all(got[x >= 6.5] == 6.0)  # clipped at +6
    assert got.min() >= -6.0
    assert got[x == 1.0][0] == pytest.approx(math.tanh(math.log1p(math.e)), rel=1e-5)  # 0.8651
    # the lower clip: mish never goes below about -0.31, so -6 only bounds the range
    assert got.min() == pytest.approx(-0.3088, abs=1e-3)


def test_gem_with_p1_is_average_pooling_and_p3_is_the_cube_mean():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.1, 3.0, (2, 5, 6, 4)).astype(np.float32)
    gem1 = GeMPooling2D(p=1.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gem1(x)),
                               keras.ops.convert_to_numpy(keras.layers.GlobalAveragePooling2D()(x)), rtol=1e-5)
    gem3 = GeMPooling2D()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(gem3(x)), np.mean(x ** 3, axis=(1, 2)) ** (1 / 3),
                               rtol=1e-5)
    assert len(gem3.trainable_weights) == 1 and float(keras.ops.convert_to_numpy(gem3.p)) == 3.0


def test_squeeze_excite_matches_its_definition():
    layer = SqueezeExcite()
    x = np.random.default_rng(3).uniform(-1, 2, (2, 4, 4, 32)).astype(np.float32)
    got = keras.ops.convert_to_numpy(layer(x))
    assert layer.count_params() == 1_072  # 32 -> 16 -> 32, the reference's per-block count
    w1, b1 = layer.squeeze.get_weights()
    w2, b2 = layer.excite.get_weights()
    s = np.maximum(x.mean(axis=(1, 2)) @ w1 + b1, 0)
    e = 1 / (1 + np.exp(-(s @ w2 + b2)))
    np.testing.assert_allclose(got, x * e[:, None, None, :], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="pooling"):
        SqueezeExcite(pooling="max")


def test_l2_normalize_and_cosine_softmax():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 16)).astype(np.float32)
    x[2] = 0.0
    y = keras.ops.convert_to_numpy(L2Normalize()(x))
    np.testing.assert_allclose(np.linalg.norm(y[:2], axis=1), 1.0, rtol=1e-5)
    assert np.all(y[2] == 0) and np.all(np.isfinite(y))
    head = CosineSoftmax(5, scale=16.0)
    p = keras.ops.convert_to_numpy(head(y[:2]))
    kernel = keras.ops.convert_to_numpy(head.kernel)
    logits = 16.0 * y[:2] @ (kernel / np.linalg.norm(kernel, axis=0, keepdims=True))
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p, expected / expected.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    head.kernel.assign(kernel * np.array([1, 2, 3, 4, 5], np.float32))  # unit-norm: scale-free
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(y[:2])), p, rtol=1e-4, atol=1e-6)


# --- a saved model describes itself and reloads anywhere ------------------------------------------

def test_saved_model_reloads_in_a_fresh_process(tmp_path, repo_root):
    model = perturb(build_c3ae(se=True, white=True))
    x = random_inputs(5)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    np.savez(tmp_path / "x.npz", **x)
    script = (
        "import sys, numpy as np\n"
        "import nets.network.model, keras\n"
        "m = keras.models.load_model(sys.argv[1])\n"
        "print(m.count_params())\n"
        "x = dict(np.load(sys.argv[2]))\n"
        "np.savez(sys.argv[3], **m.predict(x, verbose=0))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "x.npz"),
                             str(tmp_path / "y.npz")], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "53993"
    got = np.load(tmp_path / "y.npz")
    assert sorted(got.files) == ["W1", "age"]
    for key in ("age", "W1"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-6, atol=1e-6)


VARIANTS = [
    (dict(), dict(variant="age", se=False, white=False, bins=12, category=10, interval=10, se_pooling=None,
                  activation="relu", neck=False, width=32, outputs=["W1", "age"], params=48_633)),
    (dict(se=True, white=True), dict(variant="age", se=True, white=True, bins=12, se_pooling="avg",
                                     outputs=["W1", "age"], params=53_993)),
    (dict(white=True, bins=7), dict(variant="age", se=False, white=True, bins=7, category=5, interval=20)),
    (dict(se=True, gender=True), dict(variant="age+gender", se=True, white=False, bins=12,
                                      outputs=["W1", "age", "gender"], params=57_067)),
    (dict(se=True, gender=True, se_pooling="gem", activation="mish6"),
     dict(variant="age+gender", se=True, se_pooling="gem", activation="mish6", neck=False)),
    (dict(gender=True, neck=True), dict(variant="age+gender", se=False, neck=True, bins=12)),
    (dict(se=True, white=True, gender=True, width=64), dict(variant="age+gender", se=True, width=64,
                                                             params=181_691)),
]


@pytest.mark.parametrize("kwargs,expected", VARIANTS,
                         ids=["plain", "se-white", "white-bins7", "gender-se", "gender-gem-mish6", "neck", "wide-teacher"])
def test_describe_variants_and_reload_from_path_alone(kwargs, expected, tmp_path):
    model = build_c3ae(**kwargs)
    description = describe(model)
    for key, value in expected.items():
        assert description[key] == value, key
    assert description["input"]["crops"] == list(CROP_NAMES)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_c3ae(path)
    assert describe(loaded) == description


def test_a_wider_trunk_widens_every_convolution_and_the_features():
    wide = build_c3ae(se=True, white=True, width=48)
    trunk = wide.get_layer("trunk")
    assert trunk.output.shape[1:] == (16 * 48,)  # 4 x 4 x width
    assert [trunk.get_layer(f"conv{i}").filters for i in range(1, 6)] == [48] * 5
    assert describe(wide)["width"] == 48 and describe(rebuild(wide, mirror=True))["width"] == 48
    assert describe(build_c3ae())["width"] == 32  # the paper's


def test_neck_variant_is_not_compact():
    plain, neck = build_c3ae(gender=True), build_c3ae(gender=True, neck=True)
    assert neck.get_layer("neck_dense").count_params() == 1536 * 512 + 512  # the 786 K of the reference
    # trunk + BN(1536) + Dense 512 + BN(512) + cosine W1 (512 x 12) + W2 + cosine gender (512 x 2)
    assert neck.count_params() == 30_176 + 4 * 1536 + 786_944 + 4 * 512 + 512 * 12 + 13 + 512 * 2
    assert plain.count_params() == 30_176 + 1536 * 12 + 12 + 13 + 1536 * 2 + 2


def test_load_refuses_non_finite_weights(tmp_path):
    model = build_c3ae(se=True)
    kernel = model.get_layer("trunk").get_layer("conv2").kernel
    value = keras.ops.convert_to_numpy(kernel).copy()
    value[0, 0, 0, 0] = np.nan
    kernel.assign(value)
    path = tmp_path / "nan.keras"
    model.save(path)
    with pytest.raises(ModelFileError, match="non-finite"):
        load_c3ae(path)


def test_load_refuses_missing_wrong_kind_and_foreign_models(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_c3ae(tmp_path / "missing.keras")
    text = tmp_path / "model.h5"
    text.write_text("not a model")
    with pytest.raises(ModelFileError, match="not a .keras"):
        load_c3ae(text)
    inputs = keras.Input((4,))
    other = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="other")
    path = tmp_path / "foreign.keras"
    other.save(path)
    with pytest.raises(ModelFileError, match="not a C3AE model") as caught:
        load_c3ae(path)
    assert str(path) in str(caught.value)  # the file, not the Keras model's name ("other")
    assert "other is not" not in str(caught.value)
    # layers named like C3AE's but of other kinds: describe() fails in its own way, the file is still named
    inputs = keras.Input((4,))
    impostor = keras.Model(inputs, keras.layers.Dense(2, name="W1")(keras.layers.Dense(3, name="trunk")(inputs)))
    path = tmp_path / "impostor.keras"
    impostor.save(path)
    with pytest.raises(ModelFileError, match=f"model file {path} holds a Keras model that is not a C3AE model"):
        load_c3ae(path)
    assert issubclass(ModelFileError, ValueError)


def _hostile_keras_file(kind: str, folder: Path) -> Path:
    """A .keras file damaged in one way, made from a real saved C3AE model."""
    good = folder / "good.keras"
    build_c3ae().save(good)
    data = good.read_bytes()
    path = folder / f"{kind}.keras"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "first_bytes":
        path.write_bytes(data[:100])
    elif kind == "text":
        path.write_text("not a zip archive")
    elif kind == "bit_flip":  # intact zip directory, one byte of the stored weights changed
        damaged = bytearray(data)
        damaged[data.index(b"\x89HDF") + 5000] ^= 0xFF
        path.write_bytes(bytes(damaged))
    elif kind == "no_config":
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            dst.writestr("model.weights.h5", src.read("model.weights.h5"))
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind,expected", [
    ("empty", "is empty (0 bytes)"),
    ("truncated", "is not a valid .keras archive (damaged or truncated?)"),
    ("first_bytes", "is not a valid .keras archive (damaged or truncated?)"),
    ("text", "is not a valid .keras archive (damaged or truncated?)"),
    ("bit_flip", "is not a valid .keras archive (damaged or truncated?): model.weights.h5"),
    ("no_config", "is a zip archive but not a .keras model (no config.json in it)"),
    ("folder", "is a folder, not a .keras file"),
])
def test_load_names_the_file_and_what_is_wrong_with_a_damaged_keras_file(kind, expected, tmp_path):
    path = _hostile_keras_file(kind, tmp_path)
    with pytest.raises(ModelFileError) as caught:
        load_c3ae(path)
    message = str(caught.value)
    assert message.startswith(f"model file {path} {expected}")
    assert "File not found" not in message  # Keras's words for a file that exists
    assert len(message.splitlines()) == 1


def test_load_shortens_keras_messages_to_one_sentence(tmp_path):
    """A config naming an unknown class: Keras's message carries the whole config (20,000 characters)."""
    good = tmp_path / "good.keras"
    build_c3ae().save(good)
    path = tmp_path / "unknown_class.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "config.json":
                config = json.loads(data)
                config.update(class_name="NoSuchModel", module="nowhere")
                data = json.dumps(config)
            dst.writestr(name, data)
    with pytest.raises(ModelFileError) as caught:
        load_c3ae(path)
    message = str(caught.value)
    assert message.startswith(f"model file {path} could not be loaded as a Keras model (")
    assert "NoSuchModel" in message and "Full object config" not in message
    assert len(message) < 400


# --- two-point labels ------------------------------------------------------------------------------

@pytest.mark.parametrize("age,expected", [
    (0, {0: 1.0}), (22, {2: 0.8, 3: 0.2}), (57, {5: 0.3, 6: 0.7}), (100, {10: 1.0}), (110, {11: 1.0}),
    (9.5, {0: 0.05, 1: 0.95}),
])
def test_two_point_encoding_reference_examples(age, expected):
    encoded = two_point_encode(age)
    assert encoded.shape == (1, 12) and encoded.dtype == np.float32
    want = np.zeros(12)
    for k, v in expected.items():
        want[k] = v
    np.testing.assert_allclose(encoded[0], want, atol=1e-6)


@pytest.mark.parametrize("category", [10, 5, 8, 12, 20])
def test_two_point_decode_inverts_encode(category):
    bins = category + 2
    interval = bin_interval(bins)
    assert interval == math.ceil(100 / category)
    np.testing.assert_array_equal(bin_centres(bins), np.arange(bins) * interval)
    top = interval * (bins - 1)
    assert top >= 100  # the bins always cover 0..100
    ages = np.concatenate([np.arange(0, min(110, top) + 1), np.arange(0, min(110, top), 0.37)])
    encoded = two_point_encode(ages, bins)
    assert encoded.shape == (len(ages), bins)
    np.testing.assert_allclose(encoded.sum(axis=1), 1.0, atol=1e-6)
    assert (np.count_nonzero(encoded, axis=1) <= 2).all()
    np.testing.assert_allclose(two_point_decode(encoded), ages, atol=1e-4)
    # beyond the last bin, an age is clipped to it
    np.testing.assert_allclose(two_point_decode(two_point_encode([top + 7.0], bins)), [top], atol=1e-4)


@pytest.mark.parametrize("bins", [12, 7])
def test_fresh_w2_is_the_expectation_decode(bins):
    keras.utils.set_random_seed(bins)
    model = build_c3ae(se=True, white=True, bins=bins)
    kernel, bias = model.get_layer("age").get_weights()
    assert kernel.shape == (bins, 1) and bias.shape == (1,)
    np.testing.assert_array_equal(kernel.ravel(), bin_centres(bins))
    np.testing.assert_array_equal(bias, [0.0])
    assert model.get_layer("age").trainable  # a start, not a constant
    out = model.predict(random_inputs(6, seed=bins), verbose=0)
    np.testing.assert_allclose(out["W1"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["age"].ravel(), two_point_decode(out["W1"]), rtol=1e-5, atol=1e-4)
    # and for any distribution, not only the near-uniform ones of an untrained W1
    dists = np.random.default_rng(bins).dirichlet(np.full(bins, 0.3), size=20).astype(np.float32)
    dists = np.vstack([dists, two_point_encode([0, 22, 57, 100], bins)])
    ages = keras.ops.convert_to_numpy(model.get_layer("age")(dists)).ravel()
    np.testing.assert_allclose(ages, two_point_decode(dists), rtol=1e-5, atol=1e-4)
    if bins == 12:
        np.testing.assert_allclose(ages[-4:], [0, 22, 57, 100], atol=1e-4)


# --- losses ----------------------------------------------------------------------------------------

def _compiled(loss: str, gender: bool = False, train_ages=(22, 57, 5, 100, 22, 30)):
    model = build_c3ae(gender=gender, bins=12)
    cfg = TrainConfig(loss=loss, gender=gender)
    compile_model(model, cfg, pd.DataFrame({"age": np.asarray(train_ages, np.float32)}), steps_per_epoch=1)
    return model


Y_AGE = np.array([[22.0], [57.0]], np.float32)
P_AGE = np.array([[25.0], [50.0]], np.float32)
P_W1 = np.array([[0.02, 0.05, 0.5, 0.3, 0.05, 0.02, 0.02, 0.01, 0.01, 0.01, 0.005, 0.005],
                 [0.01, 0.01, 0.01, 0.02, 0.05, 0.4, 0.4, 0.05, 0.02, 0.01, 0.01, 0.01]], np.float32)


def test_kl_loss_through_the_compiled_model():
    model = _compiled("kl")
    t = two_point_encode(Y_AGE.ravel())
    total = model.compute_loss(y={"age": Y_AGE, "W1": t}, y_pred={"age": P_AGE, "W1": P_W1})
    # by hand: 22 -> 0.8 at bin 2, 0.2 at bin 3; 57 -> 0.3 at bin 5, 0.7 at bin 6
    kl1 = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.3)
    kl2 = 0.3 * math.log(0.3 / 0.4) + 0.7 * math.log(0.7 / 0.4)
    l1 = (3 + 7) / 2
    assert float(total) == pytest.approx(l1 + 10 * (kl1 + kl2) / 2, rel=1e-4)
    assert float(w1_loss("kl")(t, P_W1)) == pytest.approx((kl1 + kl2) / 2, rel=1e-4)


def test_kl_loss_with_gender_uses_weights_1_10_30():
    model = _compiled("kl", gender=True)
    t = two_point_encode(Y_AGE.ravel())
    g_true = np.array([[0.01, 0.99], [0.99, 0.01]], np.float32)
    g_pred = np.array([[0.3, 0.7], [0.6, 0.4]], np.float32)
    total = model.compute_loss(y={"age": Y_AGE, "W1": t, "gender": g_true},
                               y_pred={"age": P_AGE, "W1": P_W1, "gender": g_pred})
    kl = (0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.3) + 0.3 * math.log(0.3 / 0.4)
          + 0.7 * math.log(0.7 / 0.4)) / 2
    ce = -(0.01 * math.log(0.3) + 0.99 * math.log(0.7) + 0.99 * math.log(0.6) + 0.01 * math.log(0.4)) / 2
    assert float(total) == pytest.approx(5.0 + 10 * kl + 30 * ce, rel=1e-4)


def test_balanced_focal_loss_hand_computed():
    loss = BalancedFocalLoss([1.0, 2.0, 3.0])
    t = np.array([[0.0, 0.8, 0.2]], np.float32)
    p = np.array([[0.2, 0.5, 0.3]], np.float32)
    # -sum_{t_i > 0} w_i (t_i - p_i)^2 log p_i = -(2 * 0.09 * ln 0.5 + 3 * 0.01 * ln 0.3)
    focal = -(2 * 0.3 ** 2 * math.log(0.5) + 3 * 0.1 ** 2 * math.log(0.3))
    uniform = -(math.log(0.2) + math.log(0.5) + math.log(0.3)) / 3
    assert focal == pytest.approx(0.160885, abs=1e-6) and uniform == pytest.approx(1.168853, abs=1e-6)
    assert float(loss(t, p)) == pytest.approx(0.9 * focal + 0.1 * uniform, rel=1e-5)  # 0.26168
    # mean over the batch
    t2 = np.array([[0.0, 0.8, 0.2], [1.0, 0.0, 0.0]], np.float32)
    p2 = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]], np.float32)
    second = 0.9 * -(1 * 0.4 ** 2 * math.log(0.6)) + 0.1 * -(math.log(0.6) + math.log(0.3) + math.log(0.1)) / 3
    assert float(loss(t2, p2)) == pytest.approx((0.9 * focal + 0.1 * uniform + second) / 2, rel=1e-5)
    again = BalancedFocalLoss.from_config(loss.get_config())
    assert again.class_weights == [1.0, 2.0, 3.0] and again.uniform_mix == 0.1


def test_focal_loss_through_the_compiled_model():
    train_ages = (22, 57, 5, 100, 22, 30)
    model = _compiled("focal", train_ages=train_ages)
    weights = inverse_frequency_weights(two_point_encode(train_ages))
    t = two_point_encode(Y_AGE.ravel())
    total = model.compute_loss(y={"age": Y_AGE, "W1": t}, y_pred={"age": P_AGE, "W1": P_W1})
    per_sample = []
    for ti, pi in zip(t, P_W1):
        focal = -sum(weights[i] * (ti[i] - pi[i]) ** 2 * math.log(pi[i]) for i in range(12) if ti[i] > 0)
        per_sample.append(0.9 * focal + 0.1 * -np.mean(np.log(pi.astype(np.float64))))
    assert float(total) == pytest.approx(5.0 + 10 * np.mean(per_sample), rel=1e-4)


def test_inverse_frequency_weights_normalisation():
    targets = two_point_encode([22, 22, 57, 5, 100, 100, 100, 0])
    weights = inverse_frequency_weights(targets)
    share = targets.sum(axis=0) / targets.sum()
    assert weights.shape == (12,)
    assert float((share * weights).sum()) == pytest.approx(1.0, rel=1e-6)  # frequency-weighted mean 1
    np.testing.assert_array_equal(weights[share == 0], 0.0)  # bins that never occur
    present = share > 0
    np.testing.assert_allclose(weights[present] * share[present], 1.0 / present.sum(), rtol=1e-6)  # w ~ 1/f
    # an average sample weighs 1
    assert float((targets @ weights).mean()) == pytest.approx(1.0, rel=1e-6)


def test_w1_loss_rejects_unknown_kinds_and_focal_without_targets():
    with pytest.raises(ValueError):
        w1_loss("mse")
    with pytest.raises(ValueError):
        w1_loss("focal")


# --- augmentation ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chip_and_triple():
    rng = np.random.default_rng(7)
    chip = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    # a smooth gradient on top, so that rotations and contrast change something visible
    chip = (chip // 4 + np.linspace(0, 180, 256, dtype=np.uint8)[None, :, None]).astype(np.uint8)
    triple = triple_boxes(np.array([80.0, 60.0, 176.0, 190.0]), np.array([128.0, 140.0]))
    return chip, triple


@pytest.mark.parametrize("seed", range(6))
def test_augmented_crops_shape_and_dtype(chip_and_triple, seed):
    chip, triple = chip_and_triple
    crops = augmented_crops(chip, triple, np.random.default_rng(seed), AugmentConfig())
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8


FLIP_ONLY = AugmentConfig(flip_prob=1.0, erase_prob=0.0, contrast=(1.0, 1.0), brightness=0.0, rotation=0.0)


@pytest.mark.parametrize("seed", range(8))  # every branch (contrast, rotation, nothing) is drawn
def test_flip_mirrors_all_three_crops(chip_and_triple, seed):
    chip, triple = chip_and_triple
    crops = augmented_crops(chip, triple, np.random.default_rng(seed), FLIP_ONLY)
    np.testing.assert_array_equal(crops, crop_triple(chip, triple)[:, :, ::-1])
    no_flip = AugmentConfig(flip_prob=0.0, erase_prob=0.0, contrast=(1.0, 1.0), brightness=0.0, rotation=0.0)
    np.testing.assert_array_equal(augmented_crops(chip, triple, np.random.default_rng(seed), no_flip),
                                  crop_triple(chip, triple))


@pytest.mark.parametrize("seed", range(8))
def test_random_erasing_changes_one_rectangle_of_6_to_10_percent(chip_and_triple, seed):
    chip, triple = chip_and_triple
    config = AugmentConfig(flip_prob=0.0, erase_prob=1.0, contrast=(1.0, 1.0), brightness=0.0, rotation=0.0)
    crops = augmented_crops(chip, triple, np.random.default_rng(seed), config)
    plain = crop_triple(chip, triple)
    for k in range(3):
        changed = (crops[k] != plain[k]).any(axis=-1)
        assert changed.any(), f"crop {k} was not erased"
        ys, xs = np.nonzero(changed)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        # everything that changed lies in one rectangle, which is (almost) all changed
        assert changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean() > 0.97
        # its area is 6-10 % of the crop (give or take the rounding of its sides to pixels)
        slack = 0.5 * (h + w) + 0.25
        assert 0.06 * 64 * 64 - slack <= h * w <= 0.10 * 64 * 64 + slack, (h, w)
        assert (h + 0.5) / (w - 0.5) >= 0.5 and (h - 0.5) / (w + 0.5) <= 2.0, (h, w)  # aspect 0.5-2


# --- what real photos do (--robust, -test's degraded copies) ---------------------------------------

def test_photo_degradations_do_what_they_say(chip_and_triple):
    from nets.training.augment import DEGRADATIONS, color_cast, down_up, grayscale, jpeg

    chip, _ = chip_and_triple
    grey = grayscale(chip)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    tinted = color_cast(chip, (1.0, 1.0, 1.2))
    np.testing.assert_array_equal(tinted[..., :2], chip[..., :2])
    assert (tinted[..., 2] >= chip[..., 2]).all() and tinted.dtype == np.uint8
    # low resolution: the detail (the random part) goes, the gradient stays
    blurred = down_up(chip, 4)
    assert blurred.shape == chip.shape
    detail = lambda image: np.abs(np.diff(image.astype(int), axis=1)).mean()  # noqa: E731
    assert detail(blurred) < 0.5 * detail(chip)
    assert abs(blurred.astype(int).mean() - chip.astype(int).mean()) < 2
    assert 0 < np.abs(jpeg(chip, 30).astype(int) - chip).mean() < np.abs(jpeg(chip, 5).astype(int) - chip).mean()
    assert set(DEGRADATIONS) == {"grayscale", "4x down-and-up", "JPEG quality 30", "old print"}


def test_box_jitter_moves_the_three_boxes_together(chip_and_triple):
    from nets.training.augment import jitter_boxes

    _, triple = chip_and_triple
    config = AugmentConfig(box_shift=0.05, box_scale=0.1)
    moved = [jitter_boxes(triple, np.random.default_rng(seed), config) for seed in range(200)]
    centres = np.array([(m[:, :2] + m[:, 2:]) / 2 - (triple[:, :2] + triple[:, 2:]) / 2 for m in moved])
    np.testing.assert_allclose(centres[:, 0], centres[:, 1], atol=1e-3)  # one shift for all three
    np.testing.assert_allclose(centres[:, 0], centres[:, 2], atol=1e-3)
    width = triple[2, 2] - triple[2, 0]
    assert np.std(centres[:, 0, 0]) == pytest.approx(0.05 * width, rel=0.2)
    scales = np.array([(m[:, 2] - m[:, 0]) / (triple[:, 2] - triple[:, 0]) for m in moved])
    np.testing.assert_allclose(scales[:, 0], scales[:, 2], rtol=1e-4)  # one scale for all three
    assert np.std(np.log(scales[:, 0])) == pytest.approx(0.1, rel=0.2)


@pytest.mark.parametrize("seed", range(4))
def test_robust_augmentation_gives_valid_crops_that_differ(chip_and_triple, seed):
    chip, triple = chip_and_triple
    config = AugmentConfig.robust()
    assert config.erase_prob == 0.2 and config.grayscale_prob > 0 and config.box_jitter_prob > 0
    crops = augmented_crops(chip, triple, np.random.default_rng(seed), config)
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8
    again = augmented_crops(chip, triple, np.random.default_rng(seed + 100), config)
    assert not np.array_equal(crops, again)
    np.testing.assert_array_equal(crops, augmented_crops(chip, triple, np.random.default_rng(seed), config))
    everything = AugmentConfig(grayscale_prob=1.0, flip_prob=0.0, erase_prob=0.0, contrast=(1.0, 1.0),
                               brightness=0.0, rotation=0.0)
    grey = augmented_crops(chip, triple, np.random.default_rng(seed), everything)
    assert (grey[..., 0] == grey[..., 2]).all()


def test_alignment_jitter_moves_the_chip_a_little(chip_and_triple):
    from nets.training.augment import jitter_alignment

    chip, _ = chip_and_triple
    config = AugmentConfig(align_shift=0.02, align_scale=0.04, align_angle=3.0)
    moved = jitter_alignment(chip, np.random.default_rng(0), config)
    assert moved.shape == chip.shape and moved.dtype == np.uint8
    assert 0 < np.abs(moved.astype(int) - chip).mean() < 60
    still = AugmentConfig(align_shift=0.0, align_scale=0.0, align_angle=0.0)
    np.testing.assert_array_equal(jitter_alignment(chip, np.random.default_rng(0), still), chip)
