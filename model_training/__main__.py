"""`python -m model_training train|cv|audit|evaluate`: the training CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import LESION_EPOCHS, LESION_UNFREEZE, RECIPES, TrainConfig
from .errors import TrainingError
from .runs import BUNDLED_MODEL, BUNDLED_REPORT, RUNS
from .sagemaker_job import add_cloud_args

_DEFAULTS = TrainConfig(data=(Path("."),), out=Path("."), report=Path("."))
#: TrainConfig fields that only the frozen recipe reads. The lesion recipe (the default) refuses a value other
#: than the default for any of them: a flag that is silently ignored makes a wrong experiment look right.
FROZEN_ONLY = ("pool_layers", "val_fraction", "near_dup_threshold", "head_c", "head_units", "head_dropout", "head_lr",
               "head_epochs", "label_smoothing", "patience", "ensemble", "quantize", "cv_folds")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(",") if v.strip())


def _data_arg(text: str) -> Path | str:
    """A folder, or an s3:// prefix kept as text (a Path would fold its '//'): `train --on sagemaker` takes those."""
    return text if text.startswith("s3://") else Path(text)


def _negative_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = sorted(set(kinds) - {"strip", "filled"})
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma list of strip, filled")
    return kinds


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _training_args(p: argparse.ArgumentParser, d: TrainConfig) -> None:
    """Flags shared by `train` and `cv` (both build a TrainConfig from them)."""
    p.add_argument("--data", type=_data_arg, required=True, action="append",
                   help="labelled folder <root>/<class>/*.png (masks <name>_mask*.png beside the images; an optional "
                        "metadata CSV with ID and Case/patient columns groups images by patient). Repeat for "
                        "several sites: --data busi --data busbra (the lesion recipe; frozen takes one)")
    p.add_argument("--recipe", choices=list(RECIPES), default=d.recipe,
                   help="lesion: fine-tuned backbone with mask-supervised localisation, calibration and operating "
                        "point chosen leave-one-site-out; frozen: frozen multi-scale features + logistic head "
                        "(one site, the v3 model)")
    p.add_argument("--work", type=Path, default=d.work, help="model.keras and the feature cache (not committed)")
    p.add_argument("--backbone", default=d.backbone, choices=["mobilenet_v2", "efficientnet_b0", "resnet50"])
    p.add_argument("--weights", default=d.weights,
                   help="imagenet (downloaded by Keras), none (random, for tests) or PATH to a .weights.h5 file")
    p.add_argument("--input-size", type=int, default=d.input_size, help="square input side in pixels")
    p.add_argument("--pool-layers", default=d.pool_layers,
                   help="inner backbone layers whose global-average-pooled activations are concatenated with the "
                        "final features (multi-scale): auto (the backbone's default; mobilenet_v2: "
                        "block_13_expand_relu,block_16_project_BN), none, or a comma list of layer names")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"fine-tuning epochs (lesion default {LESION_EPOCHS}, after a one-epoch head warm-up; "
                        f"frozen default {d.epochs}: head only)")
    p.add_argument("--unfreeze", type=float, default=None,
                   help=f"fraction of backbone layers, from the top, fine-tuned (BatchNorm stays frozen); "
                        f"lesion default {LESION_UNFREEZE}, frozen default {d.unfreeze}")
    p.add_argument("--lr", type=float, default=d.fine_tune_lr, help="stage-2 learning rate (Adam)")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                   help="stage-2 label smoothing (0: off); calibration is refitted afterwards by the temperature")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (epochs) on val loss")
    p.add_argument("--ensemble", type=int, default=d.ensemble,
                   help="fine-tune this many models (different seeds); their average is served if validation log-loss improves")
    p.add_argument("--head-c", type=_floats, default=",".join(map(str, d.head_c)),
                   help="head search: inverse L2 strengths of the logistic-regression heads, comma list ('' for none)")
    p.add_argument("--head-units", type=_ints, default=",".join(map(str, d.head_units)), help="head search: MLP hidden units (0 = linear, Adam-trained), comma list ('' for none)")
    p.add_argument("--head-dropout", type=_floats, default=",".join(map(str, d.head_dropout)), help="head search: dropout, comma list")
    p.add_argument("--head-lr", type=_floats, default=",".join(map(str, d.head_lr)), help="head search: learning rates, comma list")
    p.add_argument("--head-epochs", type=int, default=d.head_epochs, help="max epochs per head (early stopping)")
    p.add_argument("--tta-flip", choices=["auto", "on", "off"], default=d.tta_flip,
                   help="mirror test-time augmentation inside the exported graph; auto keeps it if validation log-loss improves")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val-fraction", type=float, default=d.val_fraction)
    p.add_argument("--test-fraction", type=float, default=d.test_fraction)
    p.add_argument("--near-dup-threshold", type=float, default=d.near_dup_threshold,
                   help="thumbnail correlation at or above which two images are one group")
    p.add_argument("--keep-conflicts", action="store_true", help="keep duplicate groups whose labels disagree")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable images out with a warning instead of failing")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m model_training",
        description="Train, audit and evaluate the breast-ultrasound classifier (normal/benign/malignant). "
                    "Data folders use the Kaggle BUSI layout <root>/<class>/*.png (mask files are skipped). "
                    "Research use only; not a medical device.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = _DEFAULTS

    t = sub.add_parser("train", help="train, calibrate, export model.tflite + model.json, and report",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="The default (lesion) recipe: decode and group each --data site (patients and "
                                   "repeated frames never cross splits) and hold out a test split per site; fine-tune "
                                   "MobileNetV2 with mask-supervised localisation and hard negatives, leave one site "
                                   "out to calibrate and choose the malignant threshold, cross-fit inside the sites "
                                   "for the normal threshold, fit the final model on every site's train + val, export "
                                   "the calibrated .tflite, check LiteRT/Keras parity, score each test split once "
                                   "through the served path, fit the input check and write the report. Options marked "
                                   "frozen recipe only are refused by the lesion recipe (--recipe frozen: the older "
                                   "one-site, frozen-feature recipe; docs/training.md).")
    _training_args(t, d)
    add_cloud_args(t)
    t.add_argument("--runs", type=Path, default=RUNS,
                   help="the run goes to a new folder RUNS/<UTC time>-<version>/ (model/ and report/); the bundled "
                        "model is untouched until `promote`")
    t.add_argument("--out", type=Path, default=None,
                   help="write model.tflite + model.json here instead of a run folder (e.g. lambda_src/model to "
                        "replace the bundled model in one step); needs --report too")
    t.add_argument("--report", type=Path, default=None,
                   help="with --out: where metrics.json, plots, report.md and split.json go")
    t.add_argument("--compare-with", type=Path, default=BUNDLED_MODEL,
                   help="model folder whose card the run is compared with, metric by metric (skipped if absent)")
    t.add_argument("--no-input-check", action="store_true",
                   help="lesion recipe: skip fitting the \"is this a breast ultrasound?\" check on the new model "
                        "(about a minute; `input-check` fits it later)")
    t.add_argument("--quantize", choices=["none", "int8"], default=d.quantize,
                   help="int8: full-integer kernels (float in/out), kept only if validation accuracy holds")
    t.add_argument("--cv-folds", type=int, default=d.cv_folds,
                   help="with --epochs 0: choose the head, flip TTA and temperature by K-fold cross-validation "
                        "over train + val and refit the head on both (0: choose on the val split alone); "
                        "with fine-tuning the val split is used")
    t.add_argument("--name", default=d.name, help="model name in model.json")
    t.add_argument("--target-sensitivity", type=float, default=d.target_sensitivity,
                   help="lesion recipe: the malignant threshold is the highest whose sensitivity on the pooled "
                        "out-of-site predictions reaches this")
    t.add_argument("--no-test", action="store_true",
                   help="explore settings without touching the test split: the lesion recipe stops after "
                        "leave-one-site-out (and the cross-fit) and writes their figures to REPORT/metrics.json, "
                        "no final fit or export; the frozen recipe stops after its validation choices")
    t.add_argument("--cross-fit-folds", type=int, default=d.cross_fit_folds,
                   help="lesion recipe: set the \"normal\" threshold on K-fold out-of-fold predictions inside the "
                        "sites (K more fits of the recipe; docs/training.md); 0: on the leave-one-site-out predictions")
    t.add_argument("--no-hard-negatives", dest="hard_negatives", action="store_false",
                   help="lesion recipe: do not add lesion-free frames cut from every site's lesion frames as "
                        "\"no lesion\" frames (docs/training.md)")
    t.add_argument("--negative-kinds", type=_negative_kinds, default=",".join(d.negative_kinds),
                   help="lesion recipe: which lesion-free frames each lesion frame gives: strip (the largest "
                        "full-height or full-width strip clear of the lesion), filled (the whole frame, the lesion "
                        "replaced by the tissue beside it at the same depth); comma list")

    c = sub.add_parser("cv", help="k-fold cross-validation of a training config on train + val (never test)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Pool the train and val splits, deal duplicate groups into K stratified folds, "
                                   "run stage 1 + stage 2 once per fold and report out-of-fold accuracy, macro-F1, "
                                   "AUC, malignant recall, ECE and log-loss for every candidate (head only, one "
                                   "fine-tuned model, the ensemble; with and without flip TTA). Use it to compare "
                                   "settings with less noise than the small val split; the test split is never used.")
    _training_args(c, d)
    c.set_defaults(recipe="frozen")  # cv compares frozen-recipe settings; the lesion recipe's LOSO is inside train
    c.add_argument("--folds", type=int, default=d.cv_folds, help="number of folds (K)")
    c.add_argument("--out", type=Path, default=Path("runs/cv"),
                   help="cv.json, cv.md, oof_logits.npz (+ the audit.json and split.json it used)")

    a = sub.add_parser("audit", help="duplicate/conflict audit of a data folder (prints it, writes JSON)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("data", type=Path, help="labelled folder <root>/<class>/*.png")
    a.add_argument("--out", type=Path, default=Path("runs/audit.json"), help="where the JSON goes")
    a.add_argument("--near-dup-threshold", type=float, default=d.near_dup_threshold)
    a.add_argument("--skip-bad", action="store_true")

    ad = sub.add_parser("adapt", help="fit a trained lesion model to a new site with its labelled images",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        description="With a few hundred labelled images from a new site (BUSI layout, masks not "
                                    "needed), refit what is cheap to refit (the malignancy head or its calibration, "
                                    "the lesion calibration when normal frames are given, the operating point), "
                                    "compare before/after by group-aware cross-validation on those images, and write "
                                    "a new versioned model folder (model.tflite, model.json, model.keras, "
                                    "adapt_report.md): try it with `make serve MODEL_DIR=OUT`, make it the bundled "
                                    "model with `make promote RUN=OUT`, then `make deploy`.")
    ad.add_argument("--model", type=Path, required=True, help="lesion-recipe model folder (with model.keras)")
    ad.add_argument("--data", type=Path, required=True, help="the new site's labelled folder <root>/<class>/*.png")
    ad.add_argument("--out", type=Path, required=True, help="where the adapted model folder goes")
    ad.add_argument("--work", type=Path, default=Path("runs/adapt"), help="decoded-image cache")
    ad.add_argument("--folds", type=int, default=5, help="cross-validation folds on the local images")
    ad.add_argument("--max-images", type=int, default=None, help="use at most this many local images (whole patients)")
    ad.add_argument("--target-sensitivity", type=float, default=d.target_sensitivity)
    ad.add_argument("--seed", type=int, default=d.seed)

    pr = sub.add_parser("promote", help="make a training run the bundled model (lambda_src/model + reports)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        description="Copy RUN/model (model.tflite, model.json, model.keras) over the bundled model "
                                    "folder and RUN/report over the bundled report folder. Other report folders "
                                    "(loso/, adapt/, cv/) are left alone. Commit the result to ship it.")
    pr.add_argument("run", help="a run folder (runs/<time>-<version>), its name, `latest`, or a bare model folder "
                                "(what `adapt` writes)")
    pr.add_argument("--model-dir", type=Path, default=BUNDLED_MODEL, help="the bundled model folder")
    pr.add_argument("--report-dir", type=Path, default=BUNDLED_REPORT, help="the bundled report folder")
    pr.add_argument("--examples", type=Path, default=Path("examples"),
                    help="images the pre-traffic check sends to a new Lambda version (their answers are recorded "
                         "in model.json's pre_traffic)")
    pr.add_argument("--allow-no-input-check", action="store_true",
                    help="promote a model whose model.json has no input check (refused otherwise: the API would "
                         "then label any image, noise and photographs included; `make input-check` fits one)")

    ex = sub.add_parser("expectations", help="record a model's release expectations (drift band, pre-traffic "
                                             "answers) in its model.json",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        description="What `promote` does after copying, on a model folder in place: the drift band "
                                    "(model_training/drift_band.py) from REPORT/loso_predictions.npz and the card, "
                                    "and the example images' probabilities through the LiteRT engine, both written "
                                    "into MODEL/model.json (keys drift and pre_traffic). The stack reads them: drift "
                                    "alarms and the pre-traffic hook (docs/deploy.md).")
    ex.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="model folder (model.tflite + model.json)")
    ex.add_argument("--report", type=Path, default=BUNDLED_REPORT, help="its report folder (loso_predictions.npz)")
    ex.add_argument("--examples", type=Path, default=Path("examples"), help="images for the pre-traffic check")

    op = sub.add_parser("operating-points", help="choose the named operating points (sensitive, balanced) of a "
                                                 "lesion model from its out-of-site predictions",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        description="What `train` does for the models it writes, on a model folder trained before "
                                    "named points existed: the points are chosen again from REPORT/"
                                    "loso_predictions.npz and the card's calibration (the default, `sensitive`, must "
                                    "come out as the card's own rule; with REPORT/cross_fit_predictions.npz from "
                                    "`cross-fit`, the normal threshold comes from it and the card follows), written "
                                    "into MODEL/model.json with what each did on each unseen site, and reported (REPORT/report.md section, "
                                    "decision_by_site.png) with each DATA site's held-out test split scored as served.")
    op.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="model folder (model.tflite + model.json)")
    op.add_argument("--report", type=Path, default=BUNDLED_REPORT,
                    help="its report folder (loso_predictions.npz, split.json, report.md)")
    op.add_argument("--data", type=Path, action="append", default=[],
                    help="a training site's folder, for its test split (repeat per site)")

    cf = sub.add_parser("cross-fit", help="out-of-fold predictions inside the training sites, for the \"normal\" "
                                          "threshold (train does this; for models trained before it)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        description="K patient-grouped folds over each site's train + val (the model's own split, "
                                    "checked against REPORT/split.json; test is never touched): each fold model is "
                                    "trained with the model's recipe (model.json) on every site's other folds and "
                                    "predicts its fold. Writes REPORT/cross_fit_predictions.npz; then "
                                    "`operating-points` sets the normal threshold from it (docs/training.md).")
    cf.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="model folder (its model.json recipe)")
    cf.add_argument("--report", type=Path, default=BUNDLED_REPORT, help="its report folder (split.json)")
    cf.add_argument("--data", type=Path, action="append", default=[], help="a training site's folder (repeat)")
    cf.add_argument("--weights", default=None, help="backbone weights (default: the path in model.json)")
    cf.add_argument("--folds", type=int, default=_DEFAULTS.cross_fit_folds,
                    help="folds (each one a full fit of the recipe)")
    cf.add_argument("--work", type=Path, default=Path("runs/cache"), help="decoded-site cache")

    mc = sub.add_parser("model-card", help="write docs/model-card.md from a model's model.json (promote does it)",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mc.add_argument("--model", type=Path, default=BUNDLED_MODEL, help="model folder (model.tflite + model.json)")
    mc.add_argument("--out", type=Path, default=Path("docs/model-card.md"), help="the page to write")

    e = sub.add_parser("evaluate", help="evaluate a model directory (tflite as served) on a labelled folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Score a labelled folder through the served path (LiteRT, serving preprocessing, "
                                   "the card's label rule). With --split (the model's split.json), a folder the "
                                   "model trained on is scored on its held-out test images only; a folder that is "
                                   "not one of its training sites is scored whole. Without --split every image is "
                                   "scored, and the output says the numbers may include training images.")
    e.add_argument("--model", type=Path, required=True, help="folder with model.tflite + model.json")
    e.add_argument("--data", type=Path, required=True, help="labelled folder; may hold a subset of the model's classes")
    e.add_argument("--out", type=Path, required=True, help="metrics.json, plots, report.md, predictions.json")
    e.add_argument("--skip-bad", action="store_true")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    e.add_argument("--split", type=Path, default=None,
                   help="the model's split.json from `train` (reports/split.json for the bundled model, "
                        "RUN/report/split.json for a run): evaluate only the images it puts in --split-name when "
                        "the folder is one of its training sites")
    e.add_argument("--split-name", default="test", choices=["train", "val", "trainval", "test"],
                   help="trainval/test for lesion-recipe splits, train/val/test for frozen-recipe ones")

    from .input_check import add_parser as add_input_check
    add_input_check(sub)
    return p


def _config(args, **extra) -> TrainConfig:
    remote = [str(d) for d in args.data if isinstance(d, str)]
    if remote:
        raise TrainingError(f"--data {remote[0]}: an S3 prefix trains only as a SageMaker job (train --on sagemaker); "
                            "locally --data is a folder")
    lesion = args.recipe == "lesion"
    epochs = args.epochs if args.epochs is not None else (LESION_EPOCHS if lesion else _DEFAULTS.epochs)
    unfreeze = args.unfreeze if args.unfreeze is not None else (LESION_UNFREEZE if lesion else _DEFAULTS.unfreeze)
    return TrainConfig(
        data=tuple(args.data), recipe=args.recipe, work=args.work, backbone=args.backbone, weights=args.weights, input_size=args.input_size,
        pool_layers=args.pool_layers, seed=args.seed, val_fraction=args.val_fraction,
        test_fraction=args.test_fraction, near_dup_threshold=args.near_dup_threshold,
        keep_conflicts=args.keep_conflicts, skip_bad=args.skip_bad, head_c=args.head_c, head_units=args.head_units,
        head_dropout=args.head_dropout, head_lr=args.head_lr, head_epochs=args.head_epochs, epochs=epochs,
        unfreeze=unfreeze, fine_tune_lr=args.lr, label_smoothing=args.label_smoothing,
        batch_size=args.batch_size, patience=args.patience, ensemble=args.ensemble, tta_flip=args.tta_flip, **extra,
    )


def refuse_unused_options(args) -> None:
    """The lesion recipe refuses frozen-recipe options given with a value other than their default."""
    if args.recipe != "lesion":
        return
    given = [name for name in FROZEN_ONLY if hasattr(args, name) and getattr(args, name) != getattr(_DEFAULTS, name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise TrainingError(f"{flags}: frozen recipe only; the lesion recipe (the default) does not use "
                            f"{'it' if len(given) == 1 else 'them'}. Drop {'it' if len(given) == 1 else 'them'}, "
                            "or pass --recipe frozen (docs/training.md)")


def _train(args) -> int:
    from . import runs

    refuse_unused_options(args)

    if args.on == "sagemaker":  # the same options, as a training job; the run comes back into args.runs
        from .sagemaker_job import train_on_sagemaker

        run = train_on_sagemaker(args, build_parser())
        if run is not None:
            _run_written(run, args.compare_with)
        return 0
    if (args.out is None) != (args.report is None):
        raise TrainingError("--out and --report go together (or give neither: the run goes to a new run folder)")
    run = None
    if args.out is None:
        run = runs.new_run(args.runs)
        args.out, args.report = run / runs.MODEL, run / runs.REPORT
        print(f"run folder: {run} (the bundled model in {runs.BUNDLED_MODEL} is not touched)", flush=True)
    cfg = _config(args, out=args.out, report=args.report, quantize=args.quantize, name=args.name,
                  cv_folds=args.cv_folds, evaluate_test=not args.no_test, target_sensitivity=args.target_sensitivity,
                  hard_negatives=args.hard_negatives, negative_kinds=args.negative_kinds,
                  cross_fit_folds=args.cross_fit_folds)
    if cfg.recipe == "lesion":
        from .lesion_pipeline import train_lesion

        train_lesion(cfg)
    else:
        from .pipeline import train

        train(cfg)
    card_path = cfg.out / "model.json"
    if not card_path.is_file():  # --no-test stops before export
        print(f"--no-test: no model written; the figures are in {cfg.report / 'metrics.json'}", flush=True)
        return 0
    version = json.loads(card_path.read_text())["version"]
    if run is not None:
        run = runs.finish_run(run, version)
        out, report = run / runs.MODEL, run / runs.REPORT
    else:
        out, report = cfg.out, cfg.report
    if cfg.recipe == "lesion" and not args.no_input_check:
        from .input_check import run as fit_input_check

        print("fitting the input check (is this a breast ultrasound?) on the new model ...", flush=True)
        split = report / "split.json"
        doc = fit_input_check(out, list(cfg.data), report=report / "input_check", split=split,
                              command="python -m model_training train (input check fitted after training)")
        rates = doc["fitted"].get("non_ultrasound", {}).get("all", {})
        print(f"input check: written to {out}/model.json"
              + (f"; non-ultrasound test set refused {rates['reject_rate']:.1%}, flagged "
                 f"{rates['flagged_rate']:.1%}" if {"reject_rate", "flagged_rate"} <= set(rates) else ""), flush=True)
    if run is not None:
        _run_written(run, args.compare_with)
    return 0


def _run_written(run: Path, compare_with: Path) -> None:
    """The run against the bundled model, and what to do next (a local run and a downloaded SageMaker one)."""
    from . import runs

    summary = runs.write_comparison(run, old_dir=compare_with)
    print(f"\nrun written: {run}/ (model/, report/report.md)")
    if summary:
        print(summary)
        print(f"  details: {run / runs.REPORT}/comparison.md")
    print(f"try it:      make serve MODEL_DIR={run / runs.MODEL}\n"
          f"evaluate:    make evaluate RUN={run}\n"
          f"ship it:     make promote RUN={run}   (replaces {runs.BUNDLED_MODEL} and {runs.BUNDLED_REPORT})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        elif args.command == "promote":
            from .runs import promote, resolve_run

            run = resolve_run(args.run)
            written = promote(run, model_dir=args.model_dir, report_dir=args.report_dir, examples=args.examples,
                              allow_no_input_check=args.allow_no_input_check)
            card = json.loads((args.model_dir / "model.json").read_text())
            print(f"promoted {run} -> {args.model_dir} and {args.report_dir} ({len(written)} files): the bundled model "
                  f"is now {card.get('name')} {card.get('version')}")
            for note in written.notes:
                print(f"release: {note}")
            if not card.get("input_check"):
                print("note: promoted without an input check (--allow-no-input-check): the API labels any image; "
                      f"fit one with `make input-check` (python -m model_training input-check --model "
                      f"{args.model_dir} --data ...)")
            if args.model_dir.resolve() == BUNDLED_MODEL.resolve():
                from .model_card_doc import write as write_model_card

                print(f"written: {write_model_card(args.model_dir)} (from the promoted model.json)")
            print("next: `make test`, update the numbers quoted in README.md and docs/training.md, and commit "
                  "lambda_src/model, reports and docs/model-card.md to ship it")
        elif args.command == "expectations":
            from .release_expectations import write_expectations

            for note in write_expectations(args.model, args.report, examples=args.examples):
                print(f"release: {note}")
            print(f"written: {args.model / 'model.json'} (drift, pre_traffic)")
        elif args.command == "model-card":
            from .model_card_doc import write

            print(f"written: {write(args.model, args.out)}")
        elif args.command == "cross-fit":
            from .cross_fit import FILE, for_model

            if not args.data:
                raise TrainingError("cross-fit needs the model's training sites: --data DIR per site")
            done = for_model(args.model, args.report, args.data, weights=args.weights, k=args.folds,
                             cache_dir=args.work)
            print(f"written: {args.report / FILE} ({len(done.label)} out-of-fold predictions, {done.seconds:.0f} s)")
        elif args.command == "operating-points":
            from .operating_points import refresh

            for name, point in refresh(args.model, args.report, args.data).items():
                seen = ", ".join(f"{site} sensitivity {m.get('sensitivity') or 0:.3f} specificity "
                                 f"{m.get('specificity') or 0:.3f}" for site, m in point["out_of_site"].items())
                print(f"{name}: malignant if p(malignant | lesion) >= {point['malignant_threshold']:.3f} "
                      f"(out of site: {seen})")
            print(f"written: {args.model / 'model.json'} (operating_points), {args.report / 'report.md'}, "
                  f"{args.report / 'decision_by_site.png'}")
        elif args.command == "cv":
            from .crossval import cross_validate

            if args.recipe != "frozen":
                raise TrainingError("cv compares settings of the frozen recipe; the lesion recipe evaluates "
                                    "itself leave-one-site-out inside `train` (report.md)")

            cross_validate(_config(args, out=args.out, report=args.out), folds=args.folds)
        elif args.command == "audit":
            from . import audit
            from .data import decode_all, discover, fingerprint

            all_samples, _ = discover(args.data)
            samples, images = decode_all(all_samples, skip_bad=args.skip_bad)
            _, result = audit.run(samples, images, threshold=args.near_dup_threshold,
                                  fingerprint=fingerprint(samples), bad_skipped=len(all_samples) - len(samples))
            audit.write_json(result, args.out)
            print(audit.summary_text(result))
            print(f"written: {args.out}")
        elif args.command == "adapt":
            from .adapt import adapt

            result = adapt(model_dir=args.model, data=args.data, out=args.out, work=args.work, folds=args.folds,
                           seed=args.seed, target_sensitivity=args.target_sensitivity, max_images=args.max_images)
            print((args.out / "adapt_report.md").read_text())
            print(f"written: {args.out} (version {result['version']})")
        elif args.command == "evaluate":
            from .evaluate import evaluate_folder
            from .report import metrics_table

            result = evaluate_folder(model=args.model, data=args.data, out=args.out, skip_bad=args.skip_bad,
                                     n_boot=args.bootstrap, split_file=args.split, split_name=args.split_name)
            print(f"scored: {result['scored']}")
            print(metrics_table(result))
            if result.get("operating_points_section"):
                print(result["operating_points_section"])
            print(f"written: {args.out}/metrics.json, report.md, plots")
        elif args.command == "input-check":
            from .input_check import run_cli

            return run_cli(args)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
