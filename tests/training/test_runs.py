"""Training runs never overwrite the bundled model; `promote` ships one; a rerun is judged against the bundled
model by intervals; `evaluate` scores held-out images of a training site and says what it scored."""

from __future__ import annotations

import copy
import datetime
import json

import pytest

from model_training import runs
from model_training.__main__ import main
from model_training.data import discover
from model_training.errors import TrainingError
from model_training.split_file import select_split
from tests.training.synthetic import make_folder


def _card(version="a" * 16, auc=0.85, ci=(0.81, 0.90), sens=1.0, sens_ci=(1.0, 1.0)) -> dict:
    block = {"n": 100, "auc_malignant": auc, "sensitivity": sens, "specificity": 0.5, "ece_malignant": 0.05,
             "lesions_called_normal": 0.0, "ci95": {"auc_malignant": list(ci), "sensitivity": list(sens_ci),
                                                    "specificity": [0.45, 0.55], "ece_malignant": [0.03, 0.08]}}
    return {"name": "m", "version": version,
            "sites": [{"name": "busi", "leave_one_site_out": copy.deepcopy(block), "test_metrics": block}]}


def _fake_run(root, name="20261129-120000-aaaaaaaa", card=None):
    run = root / name
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.tflite").write_bytes(b"tflite " + name.encode())
    (run / "model" / "model.json").write_text(json.dumps(card or _card()))
    (run / "report" / "input_check").mkdir(parents=True)
    (run / "report" / "report.md").write_text("# run " + name)
    (run / "report" / "input_check" / "input_check.md").write_text("check")
    return run


def test_new_runs_never_collide_and_are_renamed_with_the_version(tmp_path):
    now = datetime.datetime(2026, 11, 29, 12, 0, 0, tzinfo=datetime.timezone.utc)
    first, second = runs.new_run(tmp_path, now=now), runs.new_run(tmp_path, now=now)
    assert first.name == "20261129-120000" and second.name == "20261129-120000.1"
    final = runs.finish_run(first, "0123456789abcdef")
    assert final.name == "20261129-120000-01234567" and final.is_dir() and not first.exists()


def test_resolve_run_by_path_name_or_latest_and_a_clear_error_otherwise(tmp_path):
    old = _fake_run(tmp_path, "20261128-100000-11111111")
    new = _fake_run(tmp_path, "20261129-100000-22222222")
    (tmp_path / "cache").mkdir()  # caches beside the runs are not runs
    assert runs.resolve_run(old) == old
    assert runs.resolve_run(new.name, tmp_path) == new
    assert runs.resolve_run("latest", tmp_path) == new
    with pytest.raises(TrainingError, match="not a training run.*22222222"):
        runs.resolve_run("cache", tmp_path)


def test_promote_replaces_the_bundled_model_and_report_files_and_keeps_other_studies(tmp_path):
    run = _fake_run(tmp_path / "runs")
    model_dir, report_dir = tmp_path / "lambda_src" / "model", tmp_path / "reports"
    (report_dir / "loso").mkdir(parents=True)
    (report_dir / "loso" / "runs.md").write_text("earlier study")
    (report_dir / "report.md").write_text("old report")
    model_dir.mkdir(parents=True)
    (model_dir / "model.tflite").write_bytes(b"old")
    code = main(["promote", str(run), "--model-dir", str(model_dir), "--report-dir", str(report_dir),
                 "--allow-no-input-check"])  # a fake card: no input check
    assert code == 0
    assert (model_dir / "model.tflite").read_bytes() == (run / "model" / "model.tflite").read_bytes()
    assert json.loads((model_dir / "model.json").read_text())["version"] == "a" * 16
    assert (report_dir / "report.md").read_text() == "# run " + run.name
    assert (report_dir / "input_check" / "input_check.md").read_text() == "check"
    assert (report_dir / "loso" / "runs.md").read_text() == "earlier study"
    assert not list(model_dir.glob(".*.tmp"))


def test_promote_refuses_a_card_without_an_input_check_unless_told(tmp_path, capsys):
    run = _fake_run(tmp_path / "runs")
    model_dir = tmp_path / "model"
    assert main(["promote", str(run), "--model-dir", str(model_dir), "--report-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "has no input check" in err and "--allow-no-input-check" in err and "make input-check" in err
    assert not model_dir.exists()  # nothing copied
    assert main(["promote", str(run), "--model-dir", str(model_dir), "--report-dir", str(tmp_path / "r"),
                 "--allow-no-input-check"]) == 0
    assert "promoted without an input check" in capsys.readouterr().out


def test_promote_of_something_that_is_not_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["promote", str(tmp_path / "nowhere")]) == 2
    assert "not a training run" in capsys.readouterr().err


def test_a_run_agrees_with_itself_and_a_shift_beyond_both_intervals_is_flagged():
    same = runs.compare(_card(), _card())
    assert runs.verdict(same) == (8, 8)  # 4 judged metrics x (unseen, test)
    moved = runs.compare(_card(auc=0.75, ci=(0.70, 0.80)), _card())
    bad = [r for r in moved if r.agrees is False]
    assert {(r.scope, r.metric) for r in bad} == {("unseen", "auc_malignant"), ("test", "auc_malignant")}
    assert "differs: unseen busi auc_malignant 0.850 -> 0.750" in runs.comparison_summary(moved, old_dir="b")


def test_agreement_is_judged_both_ways_so_a_degenerate_interval_does_not_flag_a_rerun():
    # bundled sensitivity 1.0 with interval [1, 1]; a rerun's 0.97 [0.91, 1.0] covers 1.0: agrees
    rows = runs.compare(_card(sens=0.97, sens_ci=(0.91, 1.0)), _card())
    assert all(r.agrees for r in rows if r.metric == "sensitivity")
    rows = runs.compare(_card(sens=0.80, sens_ci=(0.70, 0.88)), _card())
    assert not any(r.agrees for r in rows if r.metric == "sensitivity")


def test_metrics_without_intervals_are_shown_but_not_judged():
    rows = runs.compare(_card(), _card())
    lcn = [r for r in rows if r.metric == "lesions_called_normal"]
    assert lcn and all(r.agrees is None for r in lcn)


def test_write_comparison_against_a_bundled_model(tmp_path):
    run = _fake_run(tmp_path / "runs", card=_card(auc=0.75, ci=(0.70, 0.80)))
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    assert runs.write_comparison(run, old_dir=bundled) is None  # nothing bundled: nothing to compare
    (bundled / "model.json").write_text(json.dumps(_card(version="b" * 16)))
    summary = runs.write_comparison(run, old_dir=bundled)
    assert "6 of 8 metrics agree" in summary
    doc = json.loads((run / "report" / "comparison.json").read_text())
    assert doc["agree"] == 6 and doc["judged"] == 8 and doc["bundled"] == "b" * 16
    assert "| unseen | busi | auc_malignant | 0.750 [0.700, 0.800] | 0.850 [0.810, 0.900] | **no** |" in (
        run / "report" / "comparison.md").read_text()


@pytest.fixture()
def site_with_split(tmp_path):
    data = make_folder(tmp_path / "busi", per_class=4, seed=0)
    samples, _ = discover(data)
    files = {s.key: {"label": s.label, "split": "test" if i % 4 == 0 else "trainval"} for i, s in enumerate(samples)}
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"sites": {"busi": {"root": str(data), "files": files}}}))
    return data, samples, split


def test_evaluate_scores_only_the_held_out_images_of_a_training_site(site_with_split):
    data, samples, split = site_with_split
    chosen, scored = select_split(samples, split, "test", data)
    assert len(chosen) == 3 and "the test split: 3 of 12 images of busi (held out from training" in scored


def test_evaluate_finds_a_training_site_by_its_recorded_root_under_another_name(site_with_split, tmp_path):
    data, samples, split = site_with_split
    doc = json.loads(split.read_text())
    doc["sites"] = {"renamed": doc["sites"]["busi"]}
    split.write_text(json.dumps(doc))
    chosen, _ = select_split(samples, split, "test", data)
    assert len(chosen) == 3


def test_evaluate_scores_every_image_of_a_folder_the_model_never_trained_on(site_with_split, tmp_path):
    _, _, split = site_with_split
    other = make_folder(tmp_path / "elsewhere", per_class=2, seed=1)
    samples, _ = discover(other)
    chosen, scored = select_split(samples, split, "test", other)
    assert chosen == samples and "not one of the model's training sites (busi" in scored


def test_promote_takes_a_bare_model_folder_too_as_adapt_writes_it(tmp_path):
    adapted = _fake_run(tmp_path, "adapted") / "model"
    model_dir, report_dir = tmp_path / "model", tmp_path / "reports"
    assert main(["promote", str(adapted), "--model-dir", str(model_dir), "--report-dir", str(report_dir),
                 "--allow-no-input-check"]) == 0
    assert (model_dir / "model.tflite").read_bytes() == (adapted / "model.tflite").read_bytes()
    assert not report_dir.exists()  # a bare model folder has no report to copy
