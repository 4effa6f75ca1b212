"""Seeing and reducing the pull toward the middle ages (issue 25): signed bias and balanced MAE,
the shift of the answers on degraded copies, the old-print look, the per-age cap, LDS loss weights,
the prior correction of W1 and the LAG check."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nets.evaluation.evaluate import age_metrics, age_shift
from nets.training.augment import DEGRADATIONS, AugmentConfig, PrintLook, augmented_crops, old_print, random_print_look
from nets.training.balance import cap_per_age, lds_weights, smoothed_density

LAG_DIR = (Path(__file__).resolve().parents[2] / "shared" / "data" / "LAG")


# --- numbers that see it ---------------------------------------------------------------------------

def test_signed_bias_and_balanced_mae_per_decade():
    # 100 children called 5 years too old, 20 teenagers 2 too young, 10 people in their 80s (too few to count)
    true = np.r_[np.full(100, 5.0), np.full(20, 15.0), np.full(10, 85.0)]
    pred = np.r_[np.full(100, 10.0), np.full(20, 13.0), np.full(10, 60.0)]
    m = age_metrics(true, pred)
    assert m["mae_per_decade"]["0-9"] == {"mae": 5.0, "bias": 5.0, "n": 100}
    assert m["mae_per_decade"]["10-19"] == {"mae": 2.0, "bias": -2.0, "n": 20}
    assert m["mae_per_decade"]["80-89"]["bias"] == -25.0
    # balanced: the mean of the decades 0-79 with 20 faces or more, not weighted by their size
    assert m["balanced_mae"] == pytest.approx(3.5)
    assert m["mae"] == pytest.approx((500 + 40 + 250) / 130, abs=1e-4)
    assert m["bias"] == pytest.approx((500 - 40 - 250) / 130, abs=1e-4)


def test_a_decade_with_fewer_than_20_faces_does_not_count_in_the_balanced_mae():
    m = age_metrics(np.r_[np.full(30, 25.0), np.full(19, 45.0)], np.r_[np.full(30, 26.0), np.full(19, 35.0)])
    assert m["balanced_mae"] == pytest.approx(1.0)
    assert m["mae_per_decade"]["40-49"]["n"] == 19


def test_age_shift_is_signed_per_decade():
    true = np.r_[np.full(25, 5.0), np.full(25, 75.0)]
    clean = true.copy()
    degraded = np.r_[np.full(25, 7.0), np.full(25, 72.0)]  # children older, the old younger
    shift = age_shift(true, clean, degraded)
    assert shift["age_shift"] == pytest.approx(-0.5)
    assert shift["age_shift_per_decade"]["0-9"]["shift"] == 2.0
    assert shift["age_shift_per_decade"]["70-79"]["shift"] == -3.0
    assert shift["largest_decade_shift"] == -3.0


# --- the old-print look ----------------------------------------------------------------------------

@pytest.fixture
def chip():
    rng = np.random.default_rng(3)
    base = np.linspace(0, 255, 256, dtype=np.float32)[None, :, None] * np.array([0.3, 0.6, 1.0])
    return np.clip(base + rng.normal(0, 10, (256, 256, 3)), 0, 255).astype(np.uint8)


def test_old_print_tones(chip):
    plain = dict(contrast=1.0, lift=0.0, blur=0.0, grain=0.0, vignette=0.0)
    grey = old_print(chip, PrintLook(tone="grey", **plain))
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    sepia = old_print(chip, PrintLook(tone="sepia", **plain)).astype(int)
    bright = sepia[..., 1] > 60
    assert (sepia[..., 0][bright] < sepia[..., 1][bright]).all() and (sepia[..., 1][bright] < sepia[..., 2][bright]).all()
    faded = old_print(chip, PrintLook(tone="faded", saturation=0.3, **plain)).astype(int)
    spread = lambda image: (image.max(axis=2) - image.min(axis=2)).mean()  # noqa: E731
    assert 0 < spread(faded) < 0.5 * spread(chip.astype(int))
    with pytest.raises(ValueError, match="tone"):
        old_print(chip, PrintLook(tone="blue"))


def test_old_print_fades_softens_grains_and_darkens_the_corners(chip):
    look = PrintLook(tone="grey", contrast=0.6, lift=60.0, blur=0.0, grain=0.0, vignette=0.0)
    faded = old_print(chip, look).astype(float)
    grey = old_print(chip, PrintLook(tone="grey", contrast=1.0, lift=0.0, blur=0.0, grain=0.0, vignette=0.0)).astype(float)
    assert faded.std() == pytest.approx(0.6 * grey.std(), rel=0.05) and faded.min() >= 59
    blurred = old_print(chip, PrintLook(tone="grey", contrast=1.0, lift=0.0, blur=1.5, grain=0.0, vignette=0.0))
    detail = lambda image: np.abs(np.diff(image.astype(int), axis=0)).mean()  # noqa: E731
    assert detail(blurred) < 0.5 * detail(grey)
    flat = np.full((256, 256, 3), 128, np.uint8)
    grainy = old_print(flat, PrintLook(tone="grey", contrast=1.0, lift=0.0, blur=0.0, grain=8.0, vignette=0.0, seed=1))
    assert grainy.astype(float).std() == pytest.approx(8.0, rel=0.1)
    np.testing.assert_array_equal(grainy, old_print(flat, PrintLook(tone="grey", contrast=1.0, lift=0.0, blur=0.0,
                                                                    grain=8.0, vignette=0.0, seed=1)))
    dark = old_print(flat, PrintLook(tone="grey", contrast=1.0, lift=0.0, blur=0.0, grain=0.0, vignette=0.4))
    assert dark[0, 0, 0] < 0.7 * 128 and dark[128, 128, 0] >= 127
    assert "old print" in DEGRADATIONS and DEGRADATIONS["old print"](chip).shape == chip.shape


def test_random_print_looks_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    looks = [random_print_look(rng) for _ in range(300)]
    assert {look.tone for look in looks} == {"grey", "sepia", "faded"}
    assert all(0.55 <= look.contrast <= 0.9 and 0.4 <= look.blur <= 1.6 and 3 <= look.grain <= 12
               and 0 <= look.vignette <= 0.4 and look.lift <= (1 - look.contrast) * 200 for look in looks)


def test_old_print_augmentation_fires_with_its_probability(chip):
    from detect import triple_boxes

    triple = triple_boxes(np.array([80.0, 60.0, 176.0, 190.0]), np.array([128.0, 140.0]))
    still = dict(flip_prob=0.0, erase_prob=0.0, contrast=(1.0, 1.0), brightness=0.0, rotation=0.0)
    off = augmented_crops(chip, triple, np.random.default_rng(5), AugmentConfig(**still))
    on = augmented_crops(chip, triple, np.random.default_rng(5), AugmentConfig(old_print_prob=1.0, **still))
    assert not np.array_equal(off, on)
    spread = lambda image: (image.max(axis=-1).astype(int) - image.min(axis=-1)).mean()  # noqa: E731
    assert spread(on) < spread(off)  # the colour is (mostly) gone


# --- balancing the ages ----------------------------------------------------------------------------

def rows_of(ages, sources):
    return pd.DataFrame({"age": ages, "key": [f"{s}:{i}.jpg" for i, s in enumerate(sources)]})


def test_cap_per_age_keeps_at_most_n_per_year_and_source():
    ages = [30] * 50 + [30] * 5 + [8] * 3
    sources = ["utk"] * 50 + ["asia"] * 5 + ["utk"] * 3
    capped = cap_per_age(rows_of(ages, sources), 10, seed=1)
    kinds = capped["key"].str.split(":").str[0] + capped["age"].astype(str)
    assert kinds.value_counts().to_dict() == {"utk30": 10, "asia30": 5, "utk8": 3}
    pd.testing.assert_frame_equal(capped, cap_per_age(rows_of(ages, sources), 10, seed=1))
    assert not capped.equals(cap_per_age(rows_of(ages, sources), 10, seed=2))
    with pytest.raises(ValueError, match="1 or more"):
        cap_per_age(rows_of(ages, sources), 0)


def test_lds_weights_favour_the_rare_ages():
    ages = np.r_[np.full(900, 30), np.full(100, 70)]
    inverse, sqrt = lds_weights(ages, "inverse"), lds_weights(ages, "sqrt")
    for weights in (inverse, sqrt):
        assert weights.mean() == pytest.approx(1.0, abs=1e-5) and weights.max() <= 5.0 + 1e-6
        assert weights[-1] > weights[0]
    assert inverse[-1] / inverse[0] == pytest.approx(9.0, rel=1e-3)  # 9 times rarer
    assert sqrt[-1] / sqrt[0] == pytest.approx(3.0, rel=1e-3)
    lonely = lds_weights(np.r_[np.full(999, 30), [90]], "inverse")
    assert lonely.max() == pytest.approx(5.0, abs=1e-5)  # capped
    density = smoothed_density([30, 30, 31], sigma=2.0)
    assert density.sum() == pytest.approx(1.0) and density[28] > 0 and density.argmax() in (30, 31)
    with pytest.raises(ValueError, match="inverse or sqrt"):
        lds_weights(ages, "log")


def test_loss_weights_reach_the_age_and_w1_losses_only(tiny_utk):
    from nets.training.data import load_rows, make_dataset

    rows = load_rows(tiny_utk, "utk").iloc[:6].reset_index(drop=True)
    weights = np.arange(1, 7, dtype=np.float32)
    batch = next(iter(make_dataset(rows, 6, 12, True, False, age_weights=weights)))
    assert len(batch) == 3
    np.testing.assert_array_equal(batch[2]["age"].numpy(), weights)
    np.testing.assert_array_equal(batch[2]["W1"].numpy(), weights)
    np.testing.assert_array_equal(batch[2]["gender"].numpy(), np.ones(6))
    assert len(next(iter(make_dataset(rows, 6, 12, True, False)))) == 2


# --- the prior correction of W1 --------------------------------------------------------------------

def test_prior_correction_layer_divides_by_the_prior_and_serialises(tmp_path):
    import keras

    from nets.network.layers import PriorCorrection
    from nets.network.model import build_c3ae, describe, load_c3ae

    prior = np.array([0.1, 0.2, 0.3, 0.4])
    w1 = np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]], np.float32)
    corrected = np.asarray(PriorCorrection(prior, 1.0)(w1))
    np.testing.assert_allclose(corrected[1], 0.25, rtol=1e-5)  # the prior itself becomes uniform
    np.testing.assert_allclose(corrected.sum(axis=1), 1.0, rtol=1e-5)
    assert corrected[0, 0] > corrected[0, 3]  # a rare bin gains
    np.testing.assert_allclose(np.asarray(PriorCorrection(prior, 0.0)(w1)), w1, rtol=1e-6)
    with pytest.raises(ValueError, match="above 0"):
        PriorCorrection([0.5, 0.5, 0.0], 1.0)
    # inside a model: described, saved and loaded with it, changes the age
    share = list(np.linspace(1, 2, 12) / np.linspace(1, 2, 12).sum())
    plain = build_c3ae(se=True, white=True, gender=True)
    fixed = build_c3ae(se=True, white=True, gender=True, prior_correction={"prior": share, "strength": 0.5})
    fixed.set_weights(plain.get_weights())
    assert describe(plain)["prior_correction"] is None and describe(fixed)["prior_correction"]["strength"] == 0.5
    assert describe(fixed)["params"] == describe(plain)["params"]
    path = tmp_path / "fixed.keras"
    fixed.save(path)
    again = load_c3ae(path)
    crops = {name: np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
             for name in ("outer", "middle", "inner")}
    np.testing.assert_allclose(again.predict(crops, verbose=0)["age"], fixed.predict(crops, verbose=0)["age"], rtol=1e-5)
    assert not np.allclose(plain.predict(crops, verbose=0)["age"], fixed.predict(crops, verbose=0)["age"])
    assert isinstance(again.get_layer("W1_prior_correction"), keras.layers.Layer)


def test_prior_correction_refused_with_training():
    from nets.training.train import TrainConfig, TrainingError, train

    with pytest.raises(TrainingError, match="--epochs 0"):
        train(TrainConfig(epochs=3, prior_correction=0.5), log=lambda m: None)


def test_the_prior_strength_chosen_is_the_most_balanced_within_the_allowance():
    from nets.training.train import choose_prior_strength

    def entry(utk, asia):
        return {"utk": {"mae": utk[0], "balanced_mae": utk[1]}, "asia": {"mae": asia[0], "balanced_mae": asia[1]}}

    sweep = {0.0: entry((5.3, 6.2), (5.9, 6.5)), 0.3: entry((5.4, 6.1), (5.9, 6.2)),
             0.5: entry((5.5, 6.1), (6.0, 6.1)), 0.8: entry((5.8, 6.3), (6.1, 6.0))}
    assert choose_prior_strength(sweep) == 0.5  # 0.8 is more balanced on asia but 0.5 years worse on utk
    assert choose_prior_strength(sweep, mae_allowance=0.15) == 0.3
    assert choose_prior_strength(sweep, mae_allowance=0.05) == 0.0


# --- the LAG check ---------------------------------------------------------------------------------

def test_lag_summary_counts_pairs_per_person():
    from nets.evaluation.lag import LagFaces, lag_summary

    person = np.array(["ann", "ann", "ann", "bob", "bob"])
    young = np.array([True, True, False, True, False])
    faces = LagFaces("x", [], person, young, np.zeros((5, 3, 64, 64, 3), np.uint8), {"young": [], "adult": ["b"]})
    summary = lag_summary([10.0, 40.0, 30.0, 16.0, 45.0], faces)
    assert summary["pairs"] == 3 and summary["pairs_in_order"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["young_median"] == 16.0 and summary["adult_median"] == 37.5
    assert summary["young_under_13"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["young_under_18"] == pytest.approx(2 / 3, abs=1e-4)
    assert summary["not_found"] == {"young": 0, "adult": 1}


@pytest.fixture(scope="module")
def small_lag(tmp_path_factory):
    """Three people of ../shared/data/LAG (young and adult photos), and a young photo with no face."""
    if not (LAG_DIR / "young").is_dir():
        pytest.skip(f"LAG not found at {LAG_DIR}")
    adults = sorted(p.name for p in (LAG_DIR / "adult").glob("*.jpg"))
    people = sorted({name.split("__")[0] for name in adults})[:3]
    root = tmp_path_factory.mktemp("lag")
    for kind in ("young", "adult"):
        (root / kind).mkdir()
        for path in (LAG_DIR / kind).glob("*.jpg"):
            if path.name.split("__")[0] in people:
                shutil.copy(path, root / kind / path.name)
    import cv2

    cv2.imwrite(str(root / "young" / "nobody__blank.jpg"), np.full((100, 100, 3), 200, np.uint8))
    return root


def test_lag_check_cli_on_a_tflite_model(small_lag, run_python, repo_root):
    model = repo_root / "model" / "c3ae_utk_asia_age_gender.float32.tflite"
    result = run_python("nets/lag_check.py", model, "--lag", small_lag, "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)[str(model)]
    young = len(list((small_lag / "young").glob("*.jpg")))
    assert found["not_found"]["young"] >= 1 and found["young_photos"] + found["not_found"]["young"] == young
    assert found["adult_photos"] + found["not_found"]["adult"] == len(list((small_lag / "adult").glob("*.jpg")))
    assert found["pairs"] >= 3 and 0 <= found["pairs_in_order"] <= 1
    assert 0 < found["young_median"] < found["adult_median"] < 100
    table = run_python("nets/lag_check.py", model, "--lag", small_lag)
    assert table.returncode == 0 and "young median" in table.stdout
    missing = run_python("nets/lag_check.py", model, "--lag", small_lag / "nothing")
    assert missing.returncode == 1 and "no LAG folder" in missing.stderr


# --- cross-source validation -----------------------------------------------------------------------

def test_cross_source_split_trains_on_one_source_and_validates_on_the_other(tmp_path, run_python):
    from nets.training.cross_source import cross_source_split, write_cross_source_split

    usual = tmp_path / "usual.split.json"
    usual.write_text(json.dumps({"seed": 2019, "val_split": 0.2, "train": ["utk:1.jpg", "asia:2.jpg", "utk:3.jpg"],
                                 "val": ["utk:4.jpg", "asia:5.jpg", "asia:6.jpg"]}))
    split = cross_source_split(usual, "utk", "asia")
    assert split["train"] == ["utk:1.jpg", "utk:3.jpg"] and split["val"] == ["asia:5.jpg", "asia:6.jpg"]
    assert cross_source_split(usual, "asia", "utk")["val"] == ["utk:4.jpg"]
    with pytest.raises(ValueError, match="two different sources"):
        cross_source_split(usual, "utk", "utk")
    with pytest.raises(ValueError, match="no afad faces"):
        cross_source_split(usual, "afad", "utk")
    out = tmp_path / "x" / "m.split.json"
    write_cross_source_split(usual, "utk", "asia", out)
    assert json.loads(out.read_text())["val"] == ["asia:5.jpg", "asia:6.jpg"]
    again = run_python("nets/cross_source_split.py", usual, "--train", "utk", "--val", "asia", "-o", out)
    assert again.returncode == 2 and "never replaced" in again.stderr


# --- models side by side ---------------------------------------------------------------------------

def a_record(bias_by_decade, lag_young_median):
    """A -test record of two sources whose answers are off by bias_by_decade[decade] (30 faces each)."""
    from nets.evaluation.evaluate import age_metrics

    true = np.repeat(np.arange(8) * 10 + 5.0, 30)
    pred = true + np.repeat(np.asarray(bias_by_decade, float), 30)
    per_source = {s: age_metrics(true, pred) for s in ("asia", "utk")}
    shift = {"age_shift": 0.2, "largest_decade_shift": -0.4, "mae_change": 0.1, "balanced_mae_change": 0.1,
             "age_shift_per_decade": {d: {"shift": -0.4 if d == "70-79" else 0.1, "n": 30}
                                      for d in per_source["utk"]["mae_per_decade"]}}
    return {**age_metrics(true, pred), "per_source": per_source,
            "degraded": {"old print": {**shift, "per_source": {s: shift for s in per_source}}},
            "lag": {"young_median": lag_young_median, "young_under_13": 0.3, "young_under_18": 0.6,
                    "adult_median": 34.0, "pairs_in_order": 0.95, "not_found": {"young": 5, "adult": 0}}}


def test_targets_against_the_reference():
    from nets.evaluation.compare import target_report

    shipped = a_record([2, 6, 3, 0, -2, -3, -5, -6], 25.0)
    better = a_record([1, 2.5, 1, 0, -1, -1, -2, -3], 17.0)
    report = {what: (met, numbers) for what, met, numbers in target_report(better, shipped)}
    assert report["utk: balanced MAE at least 0.7 lower"][0] and "(-1.938)" in report["utk: balanced MAE at least 0.7 lower"][1]
    assert report["utk: bias within +-3 in every decade 0-69"] == (True, "largest +2.5 (10-19)")
    assert report["asia: plain MAE at most 0.3 worse"][0]
    assert report["LAG: young median <= 18, >= 55 % under 18, adult median >= 30, pairs >= 94 %"][0]
    assert report["old print: answers moved within +-0.5 overall, +-1.0 per decade"][0]
    worse = {what: met for what, met, _ in target_report(shipped, better)}
    assert not worse["utk: bias within +-3 in every decade 0-69"] and not worse["utk: plain MAE at most 0.3 worse"]


def test_compare_evals_prints_tables_and_plots(tmp_path, run_python):
    old, new = tmp_path / "old.eval.json", tmp_path / "new.eval.json"
    old.write_text(json.dumps(a_record([2, 6, 3, 0, -2, -3, -5, -6], 25.0)))
    new.write_text(json.dumps(a_record([1, 2.5, 1, 0, -1, -1, -2, -3], 17.0)))
    plot = tmp_path / "bias.png"
    result = run_python("nets/compare_evals.py", f"shipped={old}", f"new={new}", "--plot", plot)
    assert result.returncode == 0, result.stderr
    assert "| new | utk | 240 |" in result.stdout and "+2.5" in result.stdout
    assert "target (against shipped)" in result.stdout and plot.stat().st_size > 10000
    stale = tmp_path / "stale.eval.json"
    stale.write_text(json.dumps({"mae": 5.0, "per_source": {}}))
    refused = run_python("nets/compare_evals.py", stale)
    assert refused.returncode == 2 and "run -test again" in refused.stderr


def test_compare_evals_takes_models_validated_on_one_source_each(tmp_path, run_python):
    """Cross-source runs validate on one source each: every table shows each model where it has numbers."""
    records = {}
    for name, kept in (("utk2asia", "asia"), ("asia2utk", "utk")):
        record = a_record([1, 2, 1, 0, -1, -1, -2, -3], 20.0)
        record["per_source"] = {kept: record["per_source"][kept]}
        record["degraded"]["old print"]["per_source"] = {kept: record["degraded"]["old print"]["per_source"][kept]}
        records[name] = tmp_path / f"{name}.eval.json"
        records[name].write_text(json.dumps(record))
    result = run_python("nets/compare_evals.py", *(f"{k}={v}" for k, v in records.items()), "--plot", tmp_path / "b.png")
    assert result.returncode == 0, result.stderr
    assert "| utk2asia | asia | 240 |" in result.stdout and "| asia2utk | utk | 240 |" in result.stdout
    asia_table = result.stdout.split("| asia: MAE / bias")[1].split("\n\n")[0]
    assert "utk2asia" in asia_table and "asia2utk" not in asia_table


# --- the levers in a run's record ------------------------------------------------------------------

def test_resume_goes_on_with_the_levers_of_the_run(tmp_path):
    from nets.network.contract import artifact
    from nets.training.config import TrainConfig
    from nets.training.request import _resumable_state

    model = tmp_path / "m.keras"
    started = TrainConfig(save_path=str(model), epochs=6, age_cap=150, lds="inverse", lds_sigma=3.0, old_print=0.35,
                          low_res=0.5, grey=0.3)
    artifact(model, ".state.json").write_text(json.dumps({"config": started.__dict__, "epochs_done": 2}))
    artifact(model, ".last.keras").write_bytes(b"the last model")
    said = []
    _, cfg = _resumable_state(TrainConfig(save_path=str(model), epochs=6, resume=True),
                              artifact(model, ".state.json"), artifact(model, ".last.keras"), said.append)
    assert (cfg.age_cap, cfg.lds, cfg.lds_sigma, cfg.old_print, cfg.low_res, cfg.grey) == (150, "inverse", 3.0, 0.35, 0.5, 0.3)
    assert "--age-cap 150 (not None), --lds inverse (not None), --lds-sigma 3.0 (not 2.0), --old-print 0.35" in said[0]


def test_levers_train_and_the_prior_correction_is_chosen_on_validation(tiny_utk, tmp_path, capsys):
    from nets.model_card import stage_levers
    from nets.network.contract import artifact
    from nets.network.model import describe, load_c3ae
    from nets.training.cli import main

    def run(*argv):
        code = main([str(a) for a in argv], "C3AE", gender=True)
        return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    trained = tmp_path / "t" / "m.keras"
    code, said = run("--dataset", tiny_utk, "--source", "utk", "-se", "-white", "-b", "8", "--epochs", "1",
                     "--age-cap", "2", "--lds", "sqrt", "--old-print", "0.5", "--low-res", "0.6", "--grey", "0.3", "-s", trained)
    assert code == 0, said
    assert any(line.startswith("--age-cap 2: ") for line in said) and any("--lds sqrt: " in line for line in said)
    state = json.loads(artifact(trained, ".state.json").read_text())
    assert state["train_faces_used"] < state["train_faces"]
    assert stage_levers(state) == {"age_cap": 2, "lds": "sqrt", "lds_sigma": 2.0, "old_print": 0.5, "low_res": 0.6, "grey": 0.3}
    corrected = tmp_path / "c" / "m.keras"
    artifact(corrected, ".split.json").parent.mkdir()
    shutil.copy(artifact(trained, ".split.json"), artifact(corrected, ".split.json"))
    code, said = run("--dataset", tiny_utk, "--source", "utk", "-se", "-white", "--epochs", "0", "--mirror",
                     "--prior-correction", "0.4", "-p", trained, "-s", corrected)
    assert code == 0, said
    about = describe(load_c3ae(corrected))
    assert about["mirror"] and about["prior_correction"]["strength"] == 0.4
    assert sum(about["prior_correction"]["prior"]) == pytest.approx(1.0, abs=1e-5)
    assert stage_levers(json.loads(artifact(corrected, ".state.json").read_text()))["prior_correction"] == 0.4
    chosen = tmp_path / "a" / "m.keras"
    artifact(chosen, ".split.json").parent.mkdir()
    shutil.copy(artifact(trained, ".split.json"), artifact(chosen, ".split.json"))
    code, said = run("--dataset", tiny_utk, "--source", "utk", "-se", "-white", "--epochs", "0",
                     "--prior-correction", "auto", "-p", trained, "-s", chosen)
    assert code == 2 and "too few validation faces here: give a strength" in said[-1], said
    code, said = run("--dataset", tiny_utk, "--source", "utk", "-se", "-white", "--epochs", "2",
                     "--prior-correction", "0.4", "-s", tmp_path / "refused" / "m.keras")
    assert code == 2 and "--epochs 0 -p MODEL" in said[-1]
