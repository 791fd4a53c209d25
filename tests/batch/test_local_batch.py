"""`python -m classifier.batch score` end to end on generated images: rows equal the API's answers, bad files
are error rows, a rerun resumes, processes agree with one process, the labelled metrics are evaluate's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from classifier import batch
from classifier.engine import Engine
from classifier.handler import Service
from classifier.settings import Settings
from tests.batch.conftest import make_folder
from tests.serving.events import rest_event

DISCLAIMER_START = "Research use only"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    make_folder(root)
    return root


def test_rows_equal_the_api_answer_and_bad_files_are_error_rows(folder, lesion_model, tmp_path):
    out = tmp_path / "r.jsonl"
    summary = batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False)
    rows = {r["path"]: r for r in _jsonl(out)}
    assert len(rows) == 14 and not any("_mask" in p for p in rows)  # 12 images + 2 bad, the mask skipped
    service = Service(Settings(model_dir=lesion_model, metrics_enabled=False))
    for path, row in rows.items():
        data = Path(path).read_bytes()
        ctype = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        resp = service(rest_event("POST", "/predict", body=data, content_type=ctype))
        body = json.loads(resp["body"])
        if resp["statusCode"] == 200:
            assert row["error"] is None
            for key in ("label", "label_rule", "probabilities", "model", "disclaimer"):
                assert row[key] == body[key], (path, key)
            assert row["box"] == body["localisation"]["box"] and row["peak"] == body["localisation"]["peak"]
        else:
            assert row["error"]["code"] == body["error"]["code"], path
            assert row["label"] is None and row["disclaimer"].startswith(DISCLAIMER_START)
    assert rows[str(folder / "normal/notes.png")]["error"]["code"] == "not_an_image"
    assert rows[str(folder / "malignant/broken.png")]["error"]["code"] == "corrupt_image"
    assert summary["errors"] == {"corrupt_image": 1, "not_an_image": 1}
    assert sum(summary["labels"].values()) == 12 and summary["scored_now"] == 14
    assert summary["disclaimer"].startswith(DISCLAIMER_START)
    assert json.loads(Path(str(out) + ".summary.json").read_text())["rows"] == 14


def test_rows_carry_the_input_check_as_the_api_does(checked_model, tmp_path):
    root = tmp_path / "archive"
    make_folder(root, n_per_class=2, photo=True)
    out = tmp_path / "r.jsonl"
    batch.run(root, out, model_dir=checked_model, processes=1, progress=False)
    service = Service(Settings(model_dir=checked_model, metrics_enabled=False))
    rows = _jsonl(out)
    for row in rows:
        data = Path(row["path"]).read_bytes()
        ctype = "image/jpeg" if data.startswith(b"\xff\xd8") else "image/png"
        resp = service(rest_event("POST", "/predict", body=data, content_type=ctype))
        body = json.loads(resp["body"])
        if resp["statusCode"] == 200:
            for key in ("label", "label_rule", "probabilities", "warnings", "input_check"):
                assert row[key] == body[key], (row["path"], key)
        else:
            assert row["error"]["code"] == body["error"]["code"]
    refused = {Path(r["path"]).name: r for r in rows if r["error"] and r["error"]["code"] == "not_ultrasound"}
    assert "holiday.png" in refused and refused["holiday.png"]["input_check"]["verdict"] == "reject"
    assert all(r["input_check"]["verdict"] in ("pass", "warn") for r in rows if not r["error"])
    csv_out = tmp_path / "r.csv"
    batch.run(root, csv_out, model_dir=checked_model, processes=1, progress=False)
    records = list(csv.DictReader(csv_out.read_text().splitlines()))
    assert {r["input_check_verdict"] for r in records if not r["error_code"]} <= {"pass", "warn"}


def test_resume_skips_written_rows_and_cuts_a_half_written_line(folder, lesion_model, tmp_path):
    out = tmp_path / "r.csv"
    first = batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False)
    assert first["scored_now"] == 14
    text = out.read_text()
    assert text.startswith("path,")  # a plain CSV: its first line is the header (pandas and DictReader read it as is)
    assert all(r["disclaimer"].startswith(DISCLAIMER_START) for r in csv.DictReader(text.splitlines()))  # every row says so
    # A run killed mid-write: drop the last 3 rows and leave half a line behind.
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2])
    again = batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False)
    assert again["skipped_already_done"] == 11 and again["scored_now"] == 3
    records = list(csv.DictReader(out.read_text().splitlines()))
    assert len(records) == 14 and len({r["path"] for r in records}) == 14
    third = batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False)
    assert third["scored_now"] == 0 and third["rows"] == 14 and third["errors"] == first["errors"]
    # --retry-errors scores the two bad files again (and only them)
    retried = batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False, retry_errors=True)
    assert retried["scored_now"] == 2 and retried["rows"] == 14


def test_a_file_from_another_model_is_not_resumed(folder, lesion_model, tiny_model_dir, tmp_path):
    out = tmp_path / "r.jsonl"
    batch.run(folder, out, model_dir=tiny_model_dir, processes=1, progress=False)
    with pytest.raises(batch.BatchError, match="model version"):
        batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False)
    assert batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False, overwrite=True)["rows"] == 14


def test_two_processes_give_the_rows_of_one(folder, lesion_model, tmp_path):
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    batch.run(folder, one, model_dir=lesion_model, processes=1, progress=False)
    summary = batch.run(folder, two, model_dir=lesion_model, processes=2, progress=False)
    assert summary["processes"] == 2
    by_path = lambda rows: {r["path"]: r for r in rows}  # noqa: E731
    assert by_path(_jsonl(one)) == by_path(_jsonl(two))


def test_labelled_folder_writes_evaluate_metrics(folder, lesion_model, tmp_path):
    out = tmp_path / "r.jsonl"
    summary = batch.run(folder, out, model_dir=lesion_model, processes=1, progress=False, labelled=True, n_boot=50)
    metrics = json.loads((tmp_path / "r.jsonl.eval" / "metrics.json").read_text())
    assert metrics["n"] == 12 and metrics["excluded_errors"] == 2 and summary["metrics"]["n"] == 12
    # The same numbers as the API's engine scored by hand: argmax accuracy over the 12 good images.
    engine = Engine(lesion_model)
    labels = engine.labels
    good = [r for r in _jsonl(out) if not r["error"]]
    assert all(r["truth"] == Path(r["path"]).parent.name for r in good)
    y = np.array([labels.index(r["truth"]) for r in good])
    p = np.array([[engine.analyse(Path(r["path"]).read_bytes()).probabilities[l] for l in labels] for r in good])
    assert metrics["accuracy"] == pytest.approx(float((p.argmax(1) == y).mean()))
    assert metrics["confusion_matrix"]["labels"] == labels and "ci95" in metrics
    assert metrics["disclaimer"].startswith(DISCLAIMER_START)
    preds = json.loads((tmp_path / "r.jsonl.eval" / "predictions.json").read_text())
    assert {d["file"] for d in preds} == {str(Path(r["path"]).relative_to(folder)) for r in good}


def test_list_file_and_unreadable_paths(folder, lesion_model, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images and a missing one\n{folder / 'benign/benign (0).png'}\n"
                       f"{folder / 'malignant/malignant (1).jpg'}\n\nmissing.png\n")
    out = tmp_path / "r.jsonl"
    summary = batch.run(listing, out, model_dir=lesion_model, processes=1, progress=False)
    assert summary["rows"] == 3 and summary["errors"] == {"unreadable_file": 1}
    missing = [r for r in _jsonl(out) if r["error"]][0]
    assert missing["path"] == str(tmp_path / "missing.png")


def test_cli_prints_the_summary_with_the_disclaimer(folder, lesion_model, tmp_path, capsys):
    rc = batch.main(["score", str(folder), "--out", str(tmp_path / "r.csv"), "--model", str(lesion_model),
                     "--processes", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "14 row(s)" in out and "corrupt_image 1" in out and "images/s" in out
    assert out.strip().endswith("Research use only. Not a medical device; not for diagnosis or clinical decisions.")
    assert batch.main(["score", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.csv"),
                       "--model", str(lesion_model)]) == 2


def test_model_without_heatmap_has_no_box(folder, tiny_model_dir, tmp_path):
    out = tmp_path / "r.csv"
    batch.run(folder, out, model_dir=tiny_model_dir, processes=1, progress=False)
    records = list(csv.DictReader(out.read_text().splitlines()))
    good = [r for r in records if not r["error_code"]]
    assert good and all(r["box_x"] == "" and r["label"] for r in good)
    assert all(abs(sum(float(r[f"p_{l}"]) for l in ("normal", "benign", "malignant")) - 1) < 1e-4 for r in good)


def test_evaluate_scores_what_batch_and_the_api_score(checked_model, tmp_path, capsys):
    """`model_training evaluate` is the served path: the input check's refusal is counted, not scored as a
    prediction; unreadable files stop it unless --skip-bad; its labels are batch's (and so the API's)."""
    from model_training.__main__ import main

    root = tmp_path / "archive"
    make_folder(root, n_per_class=2, photo=True)
    ev = tmp_path / "ev"
    assert main(["evaluate", "--model", str(checked_model), "--data", str(root), "--out", str(ev)]) == 2
    assert "broken.png" in capsys.readouterr().err  # a bad file is named, and SKIP_BAD=1 is the way on
    assert main(["evaluate", "--model", str(checked_model), "--data", str(root), "--out", str(ev), "--skip-bad",
                 "--bootstrap", "20"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    out = tmp_path / "r.jsonl"
    batch.run(root, out, model_dir=checked_model, processes=1, progress=False)
    good = {str(Path(r["path"]).relative_to(root)): r for r in _jsonl(out) if not r["error"]}
    assert metrics["n"] == len(good) == 6 and metrics["refused_by_input_check"] == ["normal/holiday.png"]
    assert "6 of 9 scored, 1 refused by the model's input check" in metrics["scored"]
    preds = json.loads((ev / "predictions.json").read_text())
    assert {p["file"]: p["predicted"] for p in preds} == {k: r["label"] for k, r in good.items()}
