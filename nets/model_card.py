#!/usr/bin/env python
"""Write NAME.card.json for a trained model: how it was made, what it measures, file sizes, hashes.

  python nets/model_card.py model/c3ae_utk_asia_age_gender.keras

It reads NAME.state.json (training, with the stages of -p fine-tuning), NAME.eval.json (from -test), the .tflite exports (from
-fz) and NAME.calibration.json (from nets/calibrate.py) beside the model, and records the SHA-256 of every file it names. `check_faces` is the MAE on
a fixed list of 500 validation faces (every k-th validation key in sorted order), so a test can
reproduce an exact number from the raw images.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nets.network.contract import artifact, file_sha256  # noqa: E402

CHECK_FACES = 500


def check_keys(split_path: Path, count: int = CHECK_FACES) -> list:
    """Every k-th validation key in sorted order: file names start with the age, so this spreads
    the check faces over all ages like the validation split itself."""
    keys = sorted(json.loads(split_path.read_text())["val"])
    return keys[::max(1, len(keys) // count)][:count]


LEVERS = ("age_cap", "lds", "old_print", "low_res", "grey", "prior_correction")  # issue 25's levers against the pull to the middle


def stage_levers(stage: dict) -> dict:
    """The levers a training stage used (the prior correction's strength as chosen, for "auto")."""
    config = stage.get("config", {})
    used = {key: config[key] for key in LEVERS if config.get(key)}
    if "lds" in used:
        used["lds_sigma"] = config.get("lds_sigma")
    if "prior_correction" in stage:
        used["prior_correction"] = stage["prior_correction"]["strength"]
    return used


def card_stages(state: dict) -> list:
    """Every training run that made the model, earliest first: its command, epochs, best validation
    MAE, time and, for a distilled run, which teacher it learned from."""
    from nets.training.train import training_stages

    return [{"command": stage.get("config", {}).get("command"), "epochs": stage.get("epochs_done"),
             **({"levers": stage_levers(stage)} if stage_levers(stage) else {}),
             "best_epoch": stage.get("best_epoch"),
             "best_val_mae": stage.get("best_val_mae"), "seconds": stage.get("seconds"),
             **({"teacher": {k: stage["teacher"].get(k) for k in ("path", "model", "best_val_mae")}}
                if "teacher" in stage else {})}
            for stage in training_stages(state)]


def read_record(path: Path, made_by: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {path} ({made_by} writes it)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} cannot be read ({exc})") from exc


def check_exports(model, exports: dict, crops) -> None:
    """The card names only exports of this model: each ({KIND: path}) must answer the check faces as it does."""
    from nets.training.data import as_inputs
    from nets.training.export import agreement
    from nets.inference.tflite import TFLiteModel

    expected = {k: np.asarray(v) for k, v in model.predict(as_inputs(crops), verbose=0, batch_size=256).items()}
    for kind, path in exports.items():
        found = agreement(TFLiteModel(path).predict_crops(crops), expected, kind)
        if not found["parity_ok"]:
            raise ValueError(f"{path} does not answer as the model does (ages up to {found['max_age_difference']:.2f} "
                             "years apart on the check faces): an export of an earlier model? export again (-fz) "
                             "or remove it")


def write_card(model_path, dataset: str | None = None, source: str | None = None) -> dict:
    """The card of a model; dataset and source default to those it was trained on (its state file)."""
    from nets.training.data import face_crops, load_rows
    from nets.evaluation.calibration import add_to_card
    from nets.evaluation.evaluate import evaluate_model
    from nets.training.export import exports_beside
    from nets.network.model import as_float32, load_c3ae
    from nets.training.train import all_epochs

    model_path = Path(model_path)
    if not model_path.is_file():  # before its records: "no X.state.json" sent people looking for the wrong file
        raise FileNotFoundError(f"model file {model_path} does not exist" if not model_path.exists()
                                else f"{model_path} is not a model file")
    if model_path.suffix != ".keras":  # a card is written for the trained model, and lists its exports
        raise ValueError(f"{model_path} is not a .keras model; give the model its exports were made from "
                         f"({model_path.name.split('.')[0]}.keras): its card lists them")
    state = read_record(artifact(model_path, ".state.json"), "training")
    evaluation = read_record(artifact(model_path, ".eval.json"), "-test on the whole validation split")
    dataset = dataset or state["config"]["dataset"]
    source = source or state["config"]["source"]
    split_path = artifact(model_path, ".split.json")
    keys = check_keys(split_path)
    rows = load_rows(dataset, source)
    rows = rows[rows["key"].isin(set(keys))].reset_index(drop=True)
    model = as_float32(load_c3ae(model_path))
    check = evaluate_model(model, rows)
    exports = exports_beside(model_path)
    check_exports(model, exports, face_crops(rows))
    files = [model_path, split_path] + list(exports.values())
    split = json.loads(split_path.read_text())
    method = split.get("method", "random by face")
    card = {
        "model": model_path.name,
        "description": state["model"],
        "data": {"source": source, "faces_train": state["train_faces"], "faces_val": state["val_faces"],
                 # which detector prepared the faces it learned from (run it with the same one); chunks
                 # from before the detector was recorded were all MTCNN
                 "detectors": state.get("data", {}).get("detectors", {"mtcnn": state["train_faces"] + state["val_faces"]}),
                 "sources": state.get("data", {}).get("sources"),
                 "split": f"{method}, seed {state['config']['seed']}, "
                          f"validation share {state['config']['val_split']} ({split_path.name})",
                 **({"duplicates": split["duplicates"]} if "duplicates" in split else {})},
        "command": state["config"]["command"],
        "stages": card_stages(state),
        "epochs_trained": state.get("epochs_done"), "best_epoch": state.get("best_epoch"),
        "training_seconds": state.get("seconds"),
        "validation": evaluation,
        "check_faces": {"keys": "every k-th of the sorted validation keys (nets/model_card.py check_keys)", "faces": check["faces"], "mae": check["mae"],
                        **({"gender_accuracy": check["gender_accuracy"]} if "gender_accuracy" in check else {})},
        "curves": [{k: h[k] for k in h if k in ("epoch", "val_age_mae", "val_gender_accuracy", "age_mae")}
                   for h in all_epochs(state)[0]],
        "files": {f.name: {"bytes": f.stat().st_size, "sha256": file_sha256(f)} for f in files},
    }
    add_to_card(card, model_path)  # NAME.calibration.json (nets/calibrate.py): its numbers and its hash
    out = artifact(model_path, ".card.json")
    out.write_text(json.dumps(card, indent=2))
    return card


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--dataset", default=None, help="folder of the feather files (default: the model's training data)")
    p.add_argument("--source", default=None, help="feather source name or regex (default: the model's)")
    a = p.parse_args()
    from detect.quiet import start_tensorflow

    start_tensorflow()  # its start-up notices are not this tool's output
    from nets.training.data import DataError
    from nets.network.model import ModelFileError

    try:
        print(json.dumps(write_card(a.model, a.dataset, a.source), indent=2))
    except (DataError, ModelFileError, ValueError, FileNotFoundError) as exc:
        sys.exit(f"error: {exc}")
