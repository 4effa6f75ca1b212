"""Label readers of preprocessing/sources.py on tiny trees built in tmp_path (files may be empty:
the readers only parse names and label files)."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from preprocessing.sources import (
    DEFAULT_INPUTS,
    READERS,
    SourceError,
    matlab_age,
    read_afad,
    read_asia,
    read_csv_labels,
    read_mat_source,
    read_source,
    read_utk,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def by_name(items):
    return {item.name: item for item in items}


def reasons_by_file(skipped):
    return {Path(path).name: reason for path, reason in skipped}


# --- wiki / imdb ---------------------------------------------------------------------------

def matlab_datenum(day: dt.date) -> float:
    """MATLAB serial day number of a date (datenum(1, 1, 1) == 367)."""
    return float(day.toordinal() + 366)


# (full_path, dob, photo_taken, gender, face_score, second_face_score)
MAT_ROWS = [
    ("01/june_born.jpg", dt.date(1980, 6, 30), 2000, 1.0, 4.5, np.nan),      # age 20, male
    ("02/july_born.jpg", dt.date(1980, 7, 1), 2000, 0.0, 3.0, np.nan),       # age 19, female
    ("03/no_gender.jpg", dt.date(1970, 1, 15), 2010, np.nan, 2.0, np.nan),   # age 40, unknown
    ("04/two_faces.jpg", dt.date(1975, 3, 3), 2005, 1.0, 5.0, 1.25),         # second face
    ("05/no_face.jpg", dt.date(1960, 2, 2), 2000, 0.0, -np.inf, np.nan),     # face_score -inf
    ("06/too_old.jpg", dt.date(1850, 1, 1), 2000, 1.0, 2.5, np.nan),         # age 150
    ("07/before_birth.jpg", dt.date(2001, 1, 1), 1995, 1.0, 2.5, np.nan),    # age -6
    ("08/december.jpg", dt.date(1990, 12, 31), 2015, 0.0, 1.5, np.nan),      # age 24
    ("09/newborn.jpg", dt.date(2000, 3, 1), 2000, 0.0, 1.5, np.nan),         # age 0, kept
]
MAT_EXPECTED = {  # kept rows: name -> (age, gender)
    "01/june_born.jpg": (20, 1),
    "02/july_born.jpg": (19, 0),
    "03/no_gender.jpg": (40, -1),
    "08/december.jpg": (24, 0),
    "09/newborn.jpg": (0, 0),
}


def write_mat(path: Path, name: str, rows=MAT_ROWS, extra_dob=None) -> Path:
    """A .mat laid out like wiki.mat / imdb.mat: struct `name` with 1xN fields."""
    n = len(rows)
    full_path = np.empty((1, n), dtype=object)
    names = np.empty((1, n), dtype=object)
    for i, row in enumerate(rows):
        full_path[0, i] = row[0]
        names[0, i] = f"Person {i}"
    dob = [matlab_datenum(r[1]) if isinstance(r[1], dt.date) else float(r[1]) for r in rows]
    if extra_dob is not None:
        dob.append(extra_dob)
    struct = {
        "dob": np.array([dob], dtype=np.float64),
        "photo_taken": np.array([[r[2] for r in rows]], dtype=np.float64),
        "full_path": full_path,
        "gender": np.array([[r[3] for r in rows]], dtype=np.float64),
        "name": names,
        "face_score": np.array([[r[4] for r in rows]], dtype=np.float64),
        "second_face_score": np.array([[r[5] for r in rows]], dtype=np.float64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {name: struct})
    return path


def test_matlab_serial_date_conversion_and_july_rule():
    assert matlab_datenum(dt.date(1, 1, 1)) == 367  # MATLAB's datenum(1, 1, 1)
    assert matlab_age(matlab_datenum(dt.date(1980, 6, 30)), 2000) == 20
    assert matlab_age(matlab_datenum(dt.date(1980, 7, 1)), 2000) == 19
    assert matlab_age(matlab_datenum(dt.date(1980, 1, 1)), 2000) == 20
    assert matlab_age(matlab_datenum(dt.date(1980, 12, 31)), 2000) == 19
    # fractional serial numbers (a time of day) belong to the same day
    assert matlab_age(matlab_datenum(dt.date(1980, 6, 30)) + 0.75, 2000) == 20


@pytest.mark.parametrize("name", ["wiki", "imdb"])
def test_mat_reader_ages_genders_and_skips(tmp_path, name):
    mat = write_mat(tmp_path / f"{name}_crop" / f"{name}.mat", name)
    items, skipped = READERS[name](mat.parent)

    got = {item.name: (item.age, item.gender) for item in items}
    assert got == MAT_EXPECTED
    for item in items:
        assert isinstance(item.age, float) and isinstance(item.gender, int)
        assert Path(item.path) == mat.parent / item.name

    reasons = {Path(p).relative_to(mat.parent).as_posix(): r for p, r in skipped}
    assert set(reasons) == {"04/two_faces.jpg", "05/no_face.jpg", "06/too_old.jpg",
                            "07/before_birth.jpg"}
    assert "second face" in reasons["04/two_faces.jpg"]
    assert "face_score" in reasons["05/no_face.jpg"] and "-inf" in reasons["05/no_face.jpg"]
    assert "150" in reasons["06/too_old.jpg"] and "outside" in reasons["06/too_old.jpg"]
    assert "-6" in reasons["07/before_birth.jpg"] and "outside" in reasons["07/before_birth.jpg"]


def test_mat_reader_accepts_the_mat_file_itself(tmp_path):
    mat = write_mat(tmp_path / "wiki_crop" / "wiki.mat", "wiki")
    from_folder = read_mat_source(mat.parent, "wiki")
    from_file = read_mat_source(mat, "wiki")
    assert from_folder == from_file
    assert read_source("wiki", str(mat)) == from_file


def test_mat_reader_invalid_dob_is_skipped_not_fatal(tmp_path):
    rows = [("a/nan_dob.jpg", np.nan, 2000, 1.0, 2.0, np.nan),
            ("a/ok.jpg", dt.date(1990, 1, 1), 2000, 1.0, 2.0, np.nan)]
    mat = write_mat(tmp_path / "wiki.mat", "wiki", rows)
    items, skipped = read_mat_source(mat, "wiki")
    assert [(i.name, i.age) for i in items] == [("a/ok.jpg", 10.0)]
    assert reasons_by_file(skipped) == {"nan_dob.jpg": "invalid date of birth"}


def test_missing_mat_raises_source_error_with_path(tmp_path):
    with pytest.raises(SourceError) as err:
        read_mat_source(tmp_path, "imdb")
    assert str(tmp_path / "imdb.mat") in str(err.value)
    # a folder that holds the other data set's .mat is still "missing"
    write_mat(tmp_path / "wiki.mat", "wiki")
    with pytest.raises(SourceError, match="imdb.mat"):
        read_source("imdb", tmp_path)


@pytest.mark.parametrize("content", [b"this is not a MATLAB file at all\x00\x01\x02" * 20, b""],
                         ids=["garbage", "empty"])
def test_garbage_mat_raises_source_error_with_path(tmp_path, content):
    mat = tmp_path / "wiki.mat"
    mat.write_bytes(content)
    with pytest.raises(SourceError) as err:
        read_mat_source(tmp_path, "wiki")
    assert str(mat) in str(err.value)
    assert "is not a MATLAB .mat file" in str(err.value)


def test_mat_with_the_wrong_struct_raises_source_error(tmp_path):
    mat = write_mat(tmp_path / "wiki.mat", "imdb")  # struct named imdb in wiki.mat
    with pytest.raises(SourceError) as err:
        read_mat_source(mat, "wiki")
    assert str(err.value) == f"{mat} has no 'wiki' structure (it holds: imdb)"


def test_mat_errors_name_the_missing_or_malformed_field(tmp_path):
    mat = tmp_path / "imdb.mat"
    scipy.io.savemat(str(mat), {"imdb": {"full_path": np.array([["a.jpg"]], dtype=object),
                                         "dob": np.array([[700000.0]])}})
    with pytest.raises(SourceError) as err:
        read_mat_source(mat, "imdb")
    assert str(err.value) == (f"{mat}: the 'imdb' structure lacks the field(s) "
                              "photo_taken, gender, face_score, second_face_score")

    scipy.io.savemat(str(mat), {"imdb": np.array([[1.0, 2.0]])})  # numbers, not a struct
    with pytest.raises(SourceError) as err:
        read_mat_source(mat, "imdb")
    assert str(mat) in str(err.value) and "is not a structure" in str(err.value)

    fields = {f: np.array([[1.0]]) for f in ("photo_taken", "gender", "face_score", "second_face_score")}
    scipy.io.savemat(str(mat), {"imdb": {**fields, "full_path": np.array([["a.jpg"]], dtype=object),
                                         "dob": np.array([["not a date"]], dtype=object)}})
    with pytest.raises(SourceError) as err:
        read_mat_source(mat, "imdb")
    assert str(err.value) == f"{mat}: the field dob of 'imdb' is not a row of numbers"


def test_mat_with_fields_of_different_lengths_raises(tmp_path):
    mat = write_mat(tmp_path / "wiki.mat", "wiki", extra_dob=matlab_datenum(dt.date(1990, 1, 1)))
    with pytest.raises(SourceError, match="different lengths"):
        read_mat_source(mat, "wiki")


# --- UTKFace ---------------------------------------------------------------------------------

UTK_GOOD = {  # file name -> (age, gender in project convention: UTK 0 male -> 1)
    "25_0_0_20170116220224657.jpg.chip.jpg": (25, 1),
    "1_1_2_20161219140530307.jpg.chip.jpg": (1, 0),
    "100_1_0_20170112213500903.jpg.chip.jpg": (100, 0),
    # the odd names of the real data set (data/README)
    "39_1_20170116174525125.jpg.chip.jpg": (39, 0),        # no race field
    "61_1_20170109142408075.jpg.chip.jpg": (61, 0),        # no race field
    "24_0_1_20170116220224657 .jpg.chip.jpg": (24, 1),     # space before .jpg
    "55_0_0_20170116232725357jpg.chip.jpg": (55, 1),       # no dot before jpg
    "30_1_3_2017011X.jpg.chip.jpg": (30, 0),               # malformed timestamp
}
UTK_BAD_NAME = ["readme.txt", "abc_0_1_20170116.jpg.chip.jpg", "30_2_0_20170116.jpg.chip.jpg",
                "_1_0_20170116.jpg.chip.jpg", "40-1-0-20170116.jpg"]


def test_utk_names_and_gender_flip(tmp_path):
    for name in list(UTK_GOOD) + UTK_BAD_NAME + ["116_0_0_20170120134921760.jpg.chip.jpg"]:
        touch(tmp_path / name)
    touch(tmp_path / "sub" / "26_1_0_20170116.jpg.chip.jpg")  # nested folders are read too
    items, skipped = read_utk(tmp_path)

    got = {i.name: (i.age, i.gender) for i in items}
    assert got == {**UTK_GOOD, "sub/26_1_0_20170116.jpg.chip.jpg": (26, 0)}
    for item in items:
        assert Path(item.path) == tmp_path / item.name
    reasons = reasons_by_file(skipped)
    assert set(reasons) == set(UTK_BAD_NAME) | {"116_0_0_20170120134921760.jpg.chip.jpg"}
    for name in UTK_BAD_NAME:
        assert "AGE_GENDER" in reasons[name]
    assert "116" in reasons["116_0_0_20170120134921760.jpg.chip.jpg"]


def test_utk_missing_or_not_a_folder(tmp_path):
    with pytest.raises(SourceError) as err:
        read_utk(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(err.value)
    a_file = touch(tmp_path / "file.jpg")
    with pytest.raises(SourceError, match="folder"):
        read_source("utk", a_file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_utk(empty) == ([], [])


def test_item_paths_are_absolute_however_the_input_is_spelled(tmp_path, monkeypatch):
    touch(tmp_path / "UTK" / "20_0_0_x.jpg")
    touch(tmp_path / "UTK" / "notes.txt")
    monkeypatch.chdir(tmp_path)
    relative = read_utk(Path("UTK"))
    assert relative == read_utk(tmp_path / "UTK")
    assert Path(relative[0][0].path) == tmp_path / "UTK" / "20_0_0_x.jpg"
    assert Path(relative[1][0][0]) == tmp_path / "UTK" / "notes.txt"


# --- AFAD ------------------------------------------------------------------------------------

def test_afad_tree(tmp_path):
    root = tmp_path / "AFAD-Full"
    touch(root / "15" / "111" / "a.jpg")
    touch(root / "15" / "112" / "b.jpg")
    touch(root / "72" / "111" / "c.jpg")
    touch(root / "72" / "112" / "d.jpg")
    touch(root / "101" / "111" / "old.jpg")            # age outside 0..100
    touch(root / "30" / "113" / "x.jpg")               # unknown gender folder
    touch(root / "thirty" / "111" / "y.jpg")           # age folder not a number
    touch(root / "30" / "z.jpg")                       # not under a gender folder
    touch(root / "AFAD-Full.txt")
    items, skipped = read_afad(root)

    got = {i.name: (i.age, i.gender) for i in items}
    assert got == {"15/111/a.jpg": (15, 1), "15/112/b.jpg": (15, 0),
                   "72/111/c.jpg": (72, 1), "72/112/d.jpg": (72, 0)}
    reasons = reasons_by_file(skipped)
    assert set(reasons) == {"old.jpg", "x.jpg", "y.jpg", "z.jpg", "AFAD-Full.txt"}
    assert "outside" in reasons["old.jpg"]
    for name in ("x.jpg", "y.jpg", "z.jpg", "AFAD-Full.txt"):
        assert "111" in reasons[name] and "112" in reasons[name]


def test_afad_missing_folder(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_source("afad", tmp_path / "AFAD-Full")


# --- All-Age-Faces (asia) --------------------------------------------------------------------

def test_asia_names(tmp_path):
    for name in ["00012A23.jpg", "07380A30.jpg", "07381A30.jpg", "13321A80.jpg", "00001A02.JPG",
                 "00100A101.jpg", "12345.jpg", "00012B23.jpg", "notes.txt"]:
        touch(tmp_path / name)
    items, skipped = read_asia(tmp_path)

    got = {i.name: (i.age, i.gender) for i in items}
    assert got == {"00012A23.jpg": (23, 0), "07380A30.jpg": (30, 0), "07381A30.jpg": (30, 1),
                   "13321A80.jpg": (80, 1), "00001A02.JPG": (2, 0)}
    reasons = reasons_by_file(skipped)
    assert set(reasons) == {"00100A101.jpg", "12345.jpg", "00012B23.jpg", "notes.txt"}
    assert "outside" in reasons["00100A101.jpg"]
    assert "IDA" in reasons["12345.jpg"]


# --- csv -------------------------------------------------------------------------------------

def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_labels_genders_and_bad_rows(tmp_path):
    labels = write_csv(tmp_path / "data" / "LABELS.csv", "\n".join([
        "path,age,gender",
        "img/f_letter.jpg,30,F",
        "img/m_letter.jpg,31.5,m",
        "img/zero.jpg,32,0",
        "img/one.jpg,33,1",
        "img/words.jpg,34, Female ",
        "img/male_word.jpg,35,MALE",
        "img/no_gender.jpg,36,",
        "../outside.jpg,37,M",
        "img/bad_age.jpg,abc,M",
        "img/empty_age.jpg,,F",
        "img/bad_gender.jpg,40,X",
        "img/gender_two.jpg,41,2",
        "img/too_old.jpg,150,F",
        "img/negative.jpg,-1,F",
        "img/short_row.jpg",
    ]) + "\n")
    items, skipped = read_csv_labels(labels)

    got = {i.name: (i.age, i.gender) for i in items}
    assert got == {
        str(Path("img/f_letter.jpg")): (30.0, 0),
        str(Path("img/m_letter.jpg")): (31.5, 1),
        str(Path("img/zero.jpg")): (32.0, 0),
        str(Path("img/one.jpg")): (33.0, 1),
        str(Path("img/words.jpg")): (34.0, 0),
        str(Path("img/male_word.jpg")): (35.0, 1),
        str(Path("img/no_gender.jpg")): (36.0, -1),
        str(Path("../outside.jpg")): (37.0, 1),
    }
    for item in items:  # paths are resolved relative to the CSV's folder
        assert Path(item.path) == (labels.parent / item.name).resolve()
        assert Path(item.path).is_absolute()

    reasons = reasons_by_file(skipped)
    assert set(reasons) == {"bad_age.jpg", "empty_age.jpg", "bad_gender.jpg", "gender_two.jpg",
                            "too_old.jpg", "negative.jpg", "short_row.jpg"}
    assert "not a number" in reasons["bad_age.jpg"] and "abc" in reasons["bad_age.jpg"]
    assert "not a number" in reasons["empty_age.jpg"]
    assert "not a number" in reasons["short_row.jpg"]
    assert "gender" in reasons["bad_gender.jpg"] and "X" in reasons["bad_gender.jpg"]
    assert "gender" in reasons["gender_two.jpg"]
    assert "outside" in reasons["too_old.jpg"] and "outside" in reasons["negative.jpg"]


def test_csv_duplicate_rows_kept_once_and_conflicting_paths_skipped(tmp_path):
    labels = write_csv(tmp_path / "LABELS.csv", "\n".join([
        "path,age,gender",
        "img/same.jpg,40,M",          # line 2
        "img/other.jpg,20,F",         # line 3
        "img/same.jpg,40.0,male",     # line 4: the same labels written differently
        "img/./same.jpg,40,1",        # line 5: the same file, spelled differently
        "img/torn.jpg,40,M",          # line 6
        "img/torn.jpg,40,M",          # line 7
        "img/torn.jpg,41,F",          # line 8
        "img/../img/torn.jpg,40,",    # line 9: unknown gender is a label too
        "img/bad.jpg,abc,M",          # line 10: not a label, skipped for its own reason
        "img/bad.jpg,30,F",           # line 11
    ]) + "\n")
    items, skipped = read_csv_labels(labels)

    assert [(i.name, i.age, i.gender) for i in items] == [
        (str(Path("img/same.jpg")), 40.0, 1), (str(Path("img/other.jpg")), 20.0, 0),
        (str(Path("img/bad.jpg")), 30.0, 0)]
    by_reason = sorted((Path(p).name, r) for p, r in skipped)
    assert by_reason == [
        ("bad.jpg", "age 'abc' is not a number"),
        ("same.jpg", "same labels as line 2 of LABELS.csv"),
        ("same.jpg", "same labels as line 2 of LABELS.csv"),
        *[("torn.jpg", "conflicting labels in LABELS.csv (lines 6, 7, 8, 9)")] * 4,
    ]
    # every row is accounted for: kept or skipped with a reason
    assert len(items) + len(skipped) == 10


def test_csv_saved_by_excel_with_a_byte_order_mark(tmp_path):
    labels = tmp_path / "LABELS.csv"
    labels.write_text("path,age,gender\r\nimg/a.jpg,30,F\r\n", encoding="utf-8-sig")
    assert labels.read_bytes().startswith(b"\xef\xbb\xbf")
    items, skipped = read_csv_labels(labels)
    assert [(i.name, i.age, i.gender) for i in items] == [(str(Path("img/a.jpg")), 30.0, 0)]
    assert skipped == []


def test_csv_not_utf8_names_the_file(tmp_path):
    labels = tmp_path / "LABELS.csv"
    labels.write_bytes("path,age,gender\nimg/Jos\u00e9.jpg,30,M\n".encode("latin-1"))
    with pytest.raises(SourceError) as err:
        read_csv_labels(labels)
    assert str(err.value) == f"{labels} is not UTF-8 text; save it as UTF-8 (in Excel: CSV UTF-8)"


def test_csv_without_gender_column_means_unknown(tmp_path):
    labels = write_csv(tmp_path / "L.csv", "age,path\n20,a.jpg\n")
    items, skipped = read_source("csv", labels)
    assert [(i.name, i.age, i.gender) for i in items] == [("a.jpg", 20.0, -1)]
    assert skipped == []


@pytest.mark.parametrize("header", ["path,gender", "age,gender", "file,age,gender", ""])
def test_csv_missing_column_raises(tmp_path, header):
    labels = write_csv(tmp_path / "LABELS.csv", header + ("\na.jpg,1\n" if header else ""))
    with pytest.raises(SourceError) as err:
        read_csv_labels(labels)
    assert str(labels) in str(err.value)


def test_csv_missing_file_raises(tmp_path):
    with pytest.raises(SourceError) as err:
        read_source("csv", tmp_path / "LABELS.csv")
    assert str(tmp_path / "LABELS.csv") in str(err.value)
    with pytest.raises(SourceError):  # a folder is not a CSV
        read_source("csv", tmp_path)


# --- dispatch --------------------------------------------------------------------------------

def test_read_source_dispatch(tmp_path):
    assert set(READERS) == {"wiki", "imdb", "utk", "afad", "asia", "csv"}
    assert set(DEFAULT_INPUTS) == set(READERS)
    with pytest.raises(SourceError, match="unknown source"):
        read_source("morph", tmp_path)
    touch(tmp_path / "20_0_0_x.jpg")
    items, _ = read_source("utk", str(tmp_path))  # a str path works too
    assert [(i.age, i.gender) for i in items] == [(20.0, 1)]
    assert all(math.isfinite(i.age) for i in items)
