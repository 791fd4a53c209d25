"""Does the mirror earn its pass? The run's saved out-of-site and out-of-fold logits scored as served with both
views (image + mirror, averaged) and with the image alone, each variant calibrated and thresholded by the
recipe's own rules (malignant temperature and point on the out-of-site lesions, normal threshold out of fold):

    python -m model_training.mirror_study --report reports [--markdown reports/mirror_study.md]

No model is run: both views' logits are in REPORT/loso_predictions.npz and REPORT/cross_fit_predictions.npz
(issue 23: the mirror costs one MobileNetV2 pass per request). Research use only; not a medical device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from .calibrate import fit_binary_temperature
from .cross_fit import FILE as CROSS_FIT_FILE
from .cross_fit import CrossFit
from .cross_fit import normal_threshold as cross_fit_normal
from .operating_points import DEFAULT, choose
from .site_metrics import MAX_LESIONS_CALLED_NORMAL, NO_NORMAL_GATE, hierarchical_probs, site_metrics

LOSO_FILE = "loso_predictions.npz"
VARIANTS = {"image + mirror": 2, "image only": 1}


def _normal_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    lesion = labels != "normal"
    return float(roc_auc_score(lesion, 1 - probs[:, 0])) if 0 < lesion.sum() < len(labels) else None


def compare(report_dir: Path, *, target_sensitivity: float = 0.90, n_boot: int = 200) -> dict[str, dict]:
    """variant -> {"calibration": ..., "sites": {"unseen S" | "out of fold S": figures}} for both variants."""
    z = np.load(Path(report_dir) / LOSO_FILE, allow_pickle=False)
    cf = CrossFit.load(Path(report_dir) / CROSS_FIT_FILE)
    site, label = z["site"], z["label"]
    lesion = label != "normal"
    out = {}
    for name, views in VARIANTS.items():
        if z["lesion_logits"].shape[0] < views or cf.lesion.shape[0] < views:
            raise ValueError(f"{report_dir}: the saved predictions have fewer than {views} views")
        t_malig = fit_binary_temperature(z["malignant_logits"][:views][:, lesion], label[lesion] == "malignant")
        probs = hierarchical_probs(z["lesion_logits"][:views], z["malignant_logits"][:views], t_malig=t_malig)
        one = CrossFit(cf.site, cf.key, cf.label, cf.fold, cf.lesion[:views], cf.malig[:views], cf.heat_peak)
        normal = cross_fit_normal(one, MAX_LESIONS_CALLED_NORMAL)
        point = choose(probs, label, target_sensitivity=target_sensitivity, normal=normal)[DEFAULT]
        oof = hierarchical_probs(one.lesion, one.malig, t_malig=t_malig)
        sites = {}
        for s in dict.fromkeys(site.tolist()):
            m = site == s  # out of site: the malignant rule alone (single-site models never set "normal")
            sites[f"unseen {s}"] = site_metrics(list(label[m]), probs[m], point["malignant_threshold"], NO_NORMAL_GATE,
                                                n_boot=n_boot) | {"auc_normal_vs_lesion": _normal_auc(label[m], probs[m])}
        for s in dict.fromkeys(cf.site.tolist()):
            m = cf.site == s
            sites[f"out of fold {s}"] = site_metrics(list(cf.label[m]), oof[m], point["malignant_threshold"],
                                                     point["normal_threshold"], n_boot=n_boot) \
                | {"auc_normal_vs_lesion": _normal_auc(cf.label[m], oof[m])}
        out[name] = {"views": views, "calibration": {"malignant_temperature": t_malig,
                                                     "malignant_threshold": point["malignant_threshold"],
                                                     "normal_threshold": point["normal_threshold"]},
                     "sites": sites}
    return out


def _cell(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def markdown(result: dict[str, dict]) -> str:
    rows = ["| set | views | AUC malignant | sensitivity | specificity | ECE malignant | lesions called normal "
            "| normals called normal | normal vs lesion AUC |", "|---|---|---|---|---|---|---|---|---|"]
    sets = list(next(iter(result.values()))["sites"])
    for s in sets:
        for name, r in result.items():
            f = r["sites"][s]
            rows.append(f"| {s} | {name} | {_cell(f['auc_malignant'])} | {_cell(f['sensitivity'])} | "
                        f"{_cell(f['specificity'])} | {_cell(f['ece_malignant'])} | "
                        f"{_cell(f['lesions_called_normal'] if s.startswith('out of fold') else None)} | "
                        f"{_cell(f.get('normals_called_normal') if s.startswith('out of fold') else None)} | "
                        f"{_cell(f['auc_normal_vs_lesion'])} |")
    points = "; ".join(f"{name}: T {r['calibration']['malignant_temperature']:.3f}, normal >= "
                       f"{r['calibration']['normal_threshold']:.3f}, malignant >= "
                       f"{r['calibration']['malignant_threshold']:.3f}" for name, r in result.items())
    return ("Each variant calibrated and thresholded by the recipe's own rules on its own predictions ("
            f"{points}). \"Unseen\" rows are the malignant rule alone; lesions/normals called normal are out of "
            "fold.\n\n" + "\n".join(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_training.mirror_study", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", type=Path, default=Path("reports"),
                   help=f"a run's report folder with {LOSO_FILE} and {CROSS_FIT_FILE} (default: reports)")
    p.add_argument("--markdown", type=Path, help="also write the table here")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    for name in (LOSO_FILE, CROSS_FIT_FILE):
        if not (args.report / name).is_file():
            print(f"error: {args.report / name} not found (make train writes it; cross-fit: python -m model_training "
                  "cross-fit)", file=sys.stderr)
            return 2
    result = compare(args.report)
    text = markdown(result)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
