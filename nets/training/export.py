"""Freezing to TFLite (float32, dynamic-range quantised, optionally float16) with a parity check."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nets.network.contract import INPUT_SHAPE

MAX_AGE_DIFFERENCE = 0.5  # years; the float32 export must agree with Keras this closely
# A quantised export may answer the other gender only where the Keras model is unsure (its probability
# within this of 0.5): a flip at p = 0.50 on one of 48 check faces failed a newly trained model's -fz
UNSURE_GENDER = 0.1


def convert(model, kind: str) -> bytes:
    """TFLite bytes of a float32 Keras model: float32, dynamic-range quantised or float16 weights."""
    import contextlib
    import io

    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "float16":
        converter.target_spec.supported_types = [tf.float16]
    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints its temporary export
        return converter.convert()


def parity_crops(count: int = 8, seed: int = 0) -> np.ndarray:
    """Test crops without the data set: the shipped demo face (if present) and random images."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, size=(count, 3) + INPUT_SHAPE, dtype=np.uint8)
    demo = Path(__file__).resolve().parents[2] / "assets" / "astronaut.jpg"
    if demo.exists():
        from detect import load_image, make_detector, prepare_faces

        faces = prepare_faces(load_image(demo), make_detector())
        if faces:
            crops[0] = faces[0].crops()
    return crops


def set_aside(path: Path) -> Path:
    """Rename `path` to PATH.stale (PATH.stale2, ... if taken): kept, but no longer named as an export
    of the model beside it (loaders, the default model and the model card look for NAME.KIND.tflite)."""
    for n in range(1, 1000):
        target = path.with_name(path.name + (".stale" if n == 1 else f".stale{n}"))
        if not target.exists():
            path.rename(target)
            return target
    raise FileExistsError(f"too many set-aside copies of {path}")


def agreement(got: dict, expected: dict, kind: str) -> dict:
    """How closely an export's answers follow the Keras model's on the same crops, and whether that
    passes: ages within MAX_AGE_DIFFERENCE years on every face, gender within 0.01 in probability
    (float32) or, for quantised kinds, the same answer on 99.5 % of the faces where the Keras model
    is sure of its answer (probability more than UNSURE_GENDER from 0.5)."""
    difference = np.abs(got["age"] - expected["age"])
    entry = {"max_age_difference": round(float(difference.max()), 5),
             "mean_age_difference": round(float(difference.mean()), 5)}
    ok = entry["max_age_difference"] <= MAX_AGE_DIFFERENCE
    if "gender" in expected and "gender" not in got:  # an age model's export beside an age + gender model
        ok = False
    elif "gender" in expected:
        entry["max_gender_prob_difference"] = round(float(np.abs(got["gender"] - expected["gender"]).max()), 5)
        same = got["gender"].argmax(1) == expected["gender"].argmax(1)
        sure = np.abs(expected["gender"][:, 1] - 0.5) > UNSURE_GENDER
        entry["same_gender"] = round(float(np.mean(same)), 5)
        entry["other_gender_where_sure"] = int(np.sum(~same & sure))
        ok = ok and (entry["max_gender_prob_difference"] <= 0.01 if kind == "float32"
                     else entry["other_gender_where_sure"] <= 0.005 * len(same))
    entry["parity_ok"] = bool(ok)
    return entry


def keep_if_it_agrees(path: Path, crops, expected: dict, kind: str) -> dict | None:
    """The report entry of an existing export that passes the parity check against the model, or None
    (no such file, not a TFLite model, or it answers otherwise: an export of an earlier model)."""
    from nets.inference.tflite import TFLiteModel
    from nets.network.contract import ModelFileError

    if not path.is_file():
        return None
    try:
        entry = agreement(TFLiteModel(path).predict_crops(crops), expected, kind)
    except ModelFileError:
        return None
    return {"path": str(path), "bytes": path.stat().st_size, **entry, "kept": True} if entry["parity_ok"] else None


def exports_beside(model_path) -> dict:
    """The NAME.KIND.tflite files beside a model: {KIND: path}, in order of name."""
    from nets.network.contract import artifact

    pattern = artifact(model_path, ".*.tflite").name
    return {path.name.split(".")[-2]: path for path in sorted(Path(model_path).parent.glob(pattern))}


def export_tflite(model_path, float16: bool = False, log=print, rows=None) -> dict:
    """Write NAME.float32.tflite and NAME.dynamic.tflite (and NAME.float16.tflite) beside the model,
    run each with LiteRT against the Keras model on the same crops (test crops, and with `rows`
    real validation faces too), return the report. An export passes its parity check when its
    ages are within MAX_AGE_DIFFERENCE years of Keras's on every face, and its gender within
    0.01 in probability (float32) or gives the same answer on 99.5 % of the faces (quantised). An
    export that fails is not written; an earlier file of that name, made from an earlier model, is
    renamed NAME.KIND.tflite.stale (kept, but no longer taken for an export of this model)."""
    from nets.training.data import as_inputs, face_crops
    from nets.network.model import as_float32, load_c3ae
    from nets.network.contract import ModelFileError
    from nets.inference.tflite import TFLiteModel
    from nets.network.contract import artifact

    model = as_float32(load_c3ae(model_path))
    crops = parity_crops()
    if rows is not None and len(rows):
        crops = np.concatenate([crops, face_crops(rows)])
    expected = {k: np.asarray(v) for k, v in model.predict(as_inputs(crops), verbose=0, batch_size=256).items()}
    report = {"faces": int(len(crops)), "real_faces": int(len(rows)) if rows is not None else 0}
    for kind in ("float32", "dynamic") + (("float16",) if float16 else ()):
        path = artifact(model_path, f".{kind}.tflite")
        kept = keep_if_it_agrees(path, crops, expected, kind)
        if kept is not None:  # an export of this model already: new bytes would only break the card's hash
            report[kind] = kept
            log(f"{path}: already answers as the model does on {len(crops)} faces (age difference at most "
                f"{kept['max_age_difference']:.4f} years); kept as it is")
            continue
        candidate = path.with_name(path.name + ".tmp")
        candidate.write_bytes(convert(model, kind))
        got = TFLiteModel(candidate).predict_crops(crops)
        entry = {"path": str(path), "bytes": candidate.stat().st_size, **agreement(got, expected, kind)}
        ok = entry["parity_ok"]
        if ok:
            try:
                candidate.replace(path)
            except OSError:  # e.g. a folder of that name: no half-done .tmp is left beside the model
                candidate.unlink()
                raise
        else:
            candidate.unlink()
            if path.exists():
                entry["earlier_file_set_aside"] = str(set_aside(path))
        report[kind] = entry
        log(f"{path}: {entry['bytes']} bytes, age difference to Keras at most {entry['max_age_difference']:.4f} "
            f"(mean {entry['mean_age_difference']:.4f}) years"
            + (f", gender probability at most {entry['max_gender_prob_difference']:.4f}, same gender "
               f"{entry['same_gender']:.1%}" if "gender" in expected else "")
            + f" on {len(crops)} faces: {'passes' if ok else 'FAILS, not written'}"
            + (f"; the earlier file of that name is now {entry['earlier_file_set_aside']}"
               if "earlier_file_set_aside" in entry else ""))
    report["parity_ok"] = all(report[kind]["parity_ok"] for kind in report if isinstance(report[kind], dict))
    for kind, path in exports_beside(model_path).items():
        if kind in report:
            continue  # made (or refused) just now
        # an export of a kind not made this time (e.g. float16 without --float16-export) may be of an earlier model
        try:
            ok = agreement(TFLiteModel(path).predict_crops(crops), expected, kind)["parity_ok"]
        except ModelFileError:
            ok = False
        if not ok:
            report.setdefault("earlier_exports_set_aside", []).append(str(set_aside(path)))
            log(f"{path} does not answer as this model does (an export of an earlier model?); it is now "
                f"{report['earlier_exports_set_aside'][-1]}")
    return report
