"""The lesion recipe on small synthetic sites the tests make: patient groups, masks, site-balanced
augmentation, leave-one-site-out, the served heatmap, the model card's sites, and `adapt`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from classifier.preprocessing import PREPROCESSING_ID
from model_training.__main__ import main
from model_training import sites
from model_training.loso import split_site
from model_training.sites import load_site, mask_grid
from tests.training.synthetic import make_site


@pytest.fixture(scope="module")
def two_sites(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites")
    a = make_site(root / "site_a", per_class=14, seed=1)
    b = make_site(root / "site_b", per_class=16, seed=2, classes=("benign", "malignant"), gain=0.6, offset=60,
                  portrait=True, patients_csv=True, device="Scanner X")
    return a, b


def test_patients_from_the_metadata_csv_are_never_split(two_sites, tmp_path):
    site = load_site(two_sites[1], side=64, cache_dir=tmp_path)
    assert set(site.devices) == {"Scanner X"}
    assert len(set(site.groups)) == 16  # two frames per patient
    for seed in range(5):
        sp = split_site(site, test_fraction=0.25, seed=seed)
        train_groups = {site.groups[i] for i in sp.trainval}
        test_groups = {site.groups[i] for i in sp.test}
        assert train_groups and test_groups and not train_groups & test_groups
    cached = load_site(two_sites[1], side=64, cache_dir=tmp_path)  # from the cache: same arrays and groups
    assert np.array_equal(cached.x, site.x) and cached.groups == site.groups


def test_masks_are_letterboxed_like_the_frames(two_sites, tmp_path):
    site = load_site(two_sites[0], side=64, cache_dir=tmp_path)
    for i, label in enumerate(site.labels):
        inside = site.mask[i] > 0
        if label == "normal":
            assert not inside.any()
        elif label == "malignant":  # a bright star: the mask sits on the bright pixels
            assert site.x[i][inside].mean() > site.x[i][~inside].mean() + 60
    grid = mask_grid(site.mask, 4)
    assert grid.shape == (len(site), 4, 4) and 0 <= grid.min() and grid.max() <= 1


def test_augmented_batches_keep_masks_on_lesions_and_draw_sites_evenly(two_sites, tmp_path):
    from model_training.lesion_fit import make_dataset

    big = make_site(tmp_path / "big", per_class=30, seed=3, classes=("malignant",))
    small = make_site(tmp_path / "small", per_class=4, seed=4, classes=("normal",))
    sites = [load_site(p, side=64, cache_dir=tmp_path) for p in (big, small)]
    images, targets, weights = next(iter(make_dataset(sites, batch_size=64, seed=0)))
    img, lesion = images.numpy(), targets["lesion"].numpy()[:, 0]
    assert img.shape == (64, 64, 64, 3) and 0 <= img.min() and img.max() <= 255
    assert 0.3 < lesion.mean() < 0.7  # 4 normal frames against 30 lesions, drawn about evenly
    cells = targets["seg"].numpy()[..., 0]
    assert cells.shape == (64, 4, 4)
    assert cells[lesion == 0].max() == 0 and cells[lesion == 1].max(axis=(1, 2)).min() > 0
    assert (weights["malig"].numpy()[lesion == 0] == 0).all()  # normal frames carry no malignancy target


@pytest.fixture(scope="module")
def trained(two_sites, tmp_path_factory):
    """`train` as `make train` runs it: a new run folder under --runs, nothing else written but --work."""
    root = tmp_path_factory.mktemp("lesion-run")
    a, b = two_sites
    code = main(["train", "--data", str(a), "--data", str(b), "--weights", "none", "--input-size", "64",
                 "--epochs", "1", "--batch-size", "8", "--test-fraction", "0.25", "--runs", str(root / "runs"),
                 "--work", str(root / "work"), "--compare-with", str(root / "no-bundled-model")])
    assert code == 0
    assert sorted(p.name for p in root.iterdir()) == ["runs", "work"]
    (run,) = (root / "runs").iterdir()
    return run


def test_a_run_is_named_by_time_and_version_and_holds_model_report_and_input_check(trained):
    card = json.loads((trained / "model" / "model.json").read_text())
    assert trained.name.endswith("-" + card["version"][:8]) and trained.name[:8].isdigit()
    assert sorted(p.name for p in trained.iterdir()) == ["model", "report"]
    assert {"model.tflite", "model.json", "model.keras"} <= {p.name for p in (trained / "model").iterdir()}
    assert card["input_check"]["fitted"]["sites"] == ["site_a", "site_b"]  # fitted after training, on its split
    assert (trained / "report" / "input_check" / "input_check.md").is_file()


def test_training_writes_sites_loso_operating_point_and_localisation(trained):
    card = json.loads((trained / "model" / "model.json").read_text())
    assert [s["name"] for s in card["sites"]] == ["site_a", "site_b"]
    for s in card["sites"]:
        assert s["leave_one_site_out"]["n"] == s["trainval"] and s["test_metrics"]["n"] == s["test"]
        assert "auc_malignant" in s["leave_one_site_out"]
    loso = card["extra"]["leave_one_site_out"]
    assert loso["site_a"]["trained_on"] == ["site_b"] and loso["site_b"]["trained_on"] == ["site_a"]
    assert "Scanner X" in loso["site_b"]["devices"]
    op = card["operating_point"]
    assert 0 < op["malignant_threshold"] < 1 and 0.5 <= op["normal_threshold"] <= 1
    # named points: the default is the card's rule; each says what it did on each unseen site
    points = card["operating_points"]
    assert set(points) == {"sensitive", "balanced"} and card["default_operating_point"] == "sensitive"
    assert points["sensitive"]["malignant_threshold"] == pytest.approx(op["malignant_threshold"], abs=1e-6)
    assert set(points["balanced"]["out_of_site"]) == {"site_a", "site_b"}
    assert "sensitivity" in points["balanced"]["out_of_site"]["site_b"]
    assert card["localisation"]["grid"] == 4 and card["preprocessing_id"] == PREPROCESSING_ID
    split = json.loads((trained / "report" / "split.json").read_text())
    for site in split["sites"].values():
        sides: dict[str, set] = {}
        for f in site["files"].values():
            sides.setdefault(f["group"], set()).add(f["split"])
        assert all(len(v) == 1 for v in sides.values())
    for name in ("report.md", "metrics.json", "site_roc.png", "site_reliability.png", "localisation_examples.png",
                 "decision_by_site.png"):
        assert (trained / "report" / name).stat().st_size > 0
    assert "leave-one-site-out" in (trained / "report" / "report.md").read_text()
    report = (trained / "report" / "report.md").read_text()
    assert "## Named operating points" in report and "| test site_a | balanced |" in report


def test_served_model_returns_probabilities_heatmap_and_box(trained, two_sites):
    from classifier.engine import Engine

    engine = Engine(trained / "model")
    path = next((two_sites[1] / "malignant").glob("*[0-9].png"))
    analysis = engine.analyse(path.read_bytes())
    assert abs(sum(analysis.probabilities.values()) - 1) < 1e-5
    heat = np.array(analysis.localisation.heatmap)
    assert heat.shape == (4, 4) and 0 <= heat.min() and heat.max() <= 1
    x, y, w, h = analysis.localisation.box
    assert 0 <= x and 0 <= y and x + w <= 80 + 1 and y + h <= 100 + 1  # inside the 80x100 portrait frame


def test_adapt_writes_a_new_model_and_improves_a_shifted_site(trained, tmp_path):
    shifted = make_site(tmp_path / "site_c", per_class=20, seed=9, classes=("benign", "malignant"), gain=1.4,
                        offset=-70, patients_csv=True)
    out = tmp_path / "adapted"
    assert main(["adapt", "--model", str(trained / "model"), "--data", str(shifted), "--out", str(out),
                 "--work", str(tmp_path / "work"), "--folds", "4"]) == 0
    card = json.loads((out / "model.json").read_text())
    cv = card["extra"]["adapt"]["cross_validation"]
    chosen = card["extra"]["adapt"]["chosen"]
    assert chosen != "as_is", cv
    assert cv[chosen]["nll_malignant"] < cv["as_is"]["nll_malignant"] - 0.05, cv
    base = json.loads((trained / "model" / "model.json").read_text())
    assert card["sites"][-1]["name"] == "site_c" and card["version"] != base["version"]
    # only the heads change, so the base model's input check is carried over (an adapted model still refuses noise)
    assert base["input_check"] and card["input_check"] == base["input_check"]
    from classifier.engine import Engine

    assert Engine(out).analyse(next((shifted / "benign").glob("*[0-9].png")).read_bytes()).localisation is not None


def test_promote_ships_a_run_that_serves_and_agrees_with_itself(trained, tmp_path):
    from classifier.engine import Engine
    from model_training import runs

    model_dir, report_dir = tmp_path / "bundled" / "model", tmp_path / "bundled" / "reports"
    assert main(["promote", str(trained), "--model-dir", str(model_dir), "--report-dir", str(report_dir)]) == 0
    card = json.loads((trained / "model" / "model.json").read_text())
    assert Engine(model_dir).card.version == card["version"]
    assert (report_dir / "split.json").read_bytes() == (trained / "report" / "split.json").read_bytes()
    summary = runs.write_comparison(trained, old_dir=model_dir)
    doc = json.loads((trained / "report" / "comparison.json").read_text())
    agree, judged = doc["agree"], doc["judged"]
    assert judged > 0 and agree == judged and f"{judged} of {judged} metrics agree" in summary


def test_the_normal_threshold_comes_from_out_of_fold_predictions_inside_the_sites(trained):
    """cross_fit.py: K patient-grouped folds over every site's train + val; the worst site's 2 % rule."""
    from model_training.cross_fit import FILE, CrossFit
    from model_training.site_metrics import normal_threshold_for

    card = json.loads((trained / "model" / "model.json").read_text())
    cf = CrossFit.load(trained / "report" / FILE)
    split = json.loads((trained / "report" / "split.json").read_text())
    trainval = {(name, key) for name, site in split["sites"].items()
                for key, f in site["files"].items() if f["split"] == "trainval"}
    assert {(str(s), str(k)) for s, k in zip(cf.site, cf.key)} == trainval  # every train + val image once, no test
    assert len(cf.key) == len(trainval) and set(cf.fold.tolist()) == {0, 1, 2}
    for name, site in split["sites"].items():  # a patient (group) sits in one fold only
        group = {key: f["group"] for key, f in site["files"].items()}
        folds: dict[str, set] = {}
        for s, k, f in zip(cf.site, cf.key, cf.fold):
            if s == name:
                folds.setdefault(group[str(k)], set()).add(int(f))
        assert all(len(v) == 1 for v in folds.values())
    p = cf.p_normal()
    lesion = cf.label != "normal"
    expected = max(normal_threshold_for(p[(cf.site == s) & lesion], 0.02) for s in set(cf.site.tolist()))
    calib = card["extra"]["calibration"]
    assert card["operating_point"]["normal_threshold"] == pytest.approx(expected, abs=1e-6)
    assert "cross-fit" in calib["normal_threshold_rule"] and "cross-fit" in card["operating_point"]["chosen_by"]
    assert all(pt["normal_threshold"] == pytest.approx(expected, abs=1e-6) for pt in card["operating_points"].values())


def test_operating_points_follow_the_cross_fit_file_and_return_to_the_trained_card(trained, two_sites, tmp_path):
    """Without the cross-fit file the card goes back to the leave-one-site-out normal rule; with it, to the
    point training chose."""
    import shutil

    from model_training.cross_fit import FILE

    model, report = tmp_path / "model", tmp_path / "report"
    shutil.copytree(trained / "model", model)
    shutil.copytree(trained / "report", report)
    data = [str(d) for d in two_sites]
    trained_card = json.loads((model / "model.json").read_text())
    (report / FILE).rename(tmp_path / FILE)
    assert main(["operating-points", "--model", str(model), "--report", str(report),
                 *[a for d in data for a in ("--data", d)]]) == 0
    loso = json.loads((model / "model.json").read_text())
    assert loso["extra"]["calibration"]["normal_threshold_rule"] == "leave-one-site-out"
    assert "out-of-site predictions" in loso["operating_point"]["chosen_by"]
    (tmp_path / FILE).rename(report / FILE)
    assert main(["operating-points", "--model", str(model), "--report", str(report),
                 *[a for d in data for a in ("--data", d)]]) == 0
    back = json.loads((model / "model.json").read_text())
    for key in ("malignant_threshold", "normal_threshold"):
        assert back["operating_point"][key] == pytest.approx(trained_card["operating_point"][key], abs=1e-6)
    assert back["sites"][0]["test_metrics"]["n"] == trained_card["sites"][0]["test_metrics"]["n"]


def test_no_test_stops_after_leave_one_site_out_and_writes_no_model(two_sites, tmp_path):
    a, b = two_sites
    out, report = tmp_path / "m", tmp_path / "r"
    code = main(["train", "--data", str(a), "--data", str(b), "--weights", "none", "--input-size", "64",
                 "--epochs", "1", "--batch-size", "8", "--test-fraction", "0.25", "--cross-fit-folds", "0",
                 "--no-test", "--out", str(out), "--report", str(report), "--work", str(tmp_path / "w")])
    assert code == 0
    assert not (out / "model.tflite").exists() and not (out / "model.json").exists()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["no_test"] is True and "test" not in metrics
    assert set(metrics["leave_one_site_out"]) == {"site_a", "site_b"}


def test_a_frozen_recipe_option_is_refused_by_the_lesion_recipe(two_sites, tmp_path, capsys):
    a, b = two_sites
    code = main(["train", "--data", str(a), "--data", str(b), "--weights", "none", "--ensemble", "2",
                 "--quantize", "int8", "--out", str(tmp_path / "m"), "--report", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--ensemble, --quantize: frozen recipe only" in err and "--recipe frozen" in err
    assert not (tmp_path / "m").exists()


def test_a_filled_frame_replaces_the_lesion_by_same_depth_tissue():
    rng = np.random.default_rng(0)
    h, w = 120, 200
    depth = np.linspace(60, 200, h)[:, None]  # brightness changes with depth, not across
    frame = np.clip(depth + rng.normal(0, 8, (h, w)), 0, 255)
    lesion = np.zeros((h, w), dtype=bool)
    lesion[40:70, 80:110] = True
    frame[lesion] = 10  # a dark lesion
    img = Image.fromarray(frame.astype(np.uint8), mode="L")
    filled = np.asarray(sites.lesion_filled_frame(img, lesion)).astype(float)
    assert filled.shape == (h, w)
    assert abs(filled[lesion].mean() - depth[40:70].mean()) < 10  # tissue of that depth, no dark blob left
    assert np.array_equal(filled[:, :40], frame.astype(np.uint8)[:, :40])  # far from the lesion: untouched
    wide = np.zeros((h, w), dtype=bool)
    wide[40:70, 20:180] = True
    assert sites.lesion_filled_frame(img, wide) is None  # no room beside it
    assert sites.lesion_filled_frame(img, np.zeros((h, w), dtype=bool)) is None


def test_negative_kinds_choose_the_hard_negatives_and_key_the_cache(two_sites, tmp_path):
    a, _ = two_sites
    strips = load_site(a, side=64, cache_dir=tmp_path)
    both = load_site(a, side=64, cache_dir=tmp_path, negative_kinds=("strip", "filled"))
    none = load_site(a, side=64, cache_dir=tmp_path, negative_kinds=())
    assert len(none.negatives()[0]) == 0 < len(strips.negatives()[0]) < len(both.negatives()[0])
    assert len(list(tmp_path.glob("site-*.npz"))) == 3  # one cache file per choice, none reused for another
    labels = np.array(both.labels)
    assert (labels[both.negatives()[1]] != "normal").all()  # every negative is cut from a lesion frame
