"""docs/model-card.md, generated from the bundled model's card (model.json) so its numbers cannot drift from
the model: `promote` rewrites it, and a test keeps the committed page equal to what this writes.

    .venv/bin/python -m model_training model-card [--model lambda_src/model] [--out docs/model-card.md]
"""

from __future__ import annotations

import json
from pathlib import Path

from classifier.model_card import CARD_FILE, MODEL_FILE

DOC = Path("docs/model-card.md")


def _f(v, d: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{d}f}"


def _ci(m: dict, key: str) -> str:
    ci = (m.get("ci95") or {}).get(key)
    return f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else ""


def _count(m: dict, share_key: str, total: int) -> str:
    v = m.get(share_key)
    return "n/a" if v is None or not total else f"{round(v * total)} of {total}"


def _site_rows(sites: list[dict], key: str) -> list[str]:
    rows = []
    for s in sites:
        m = s.get(key) or {}
        if not m:
            continue
        normals = m.get("n", 0) - m.get("n_lesions", 0)
        rows.append(f"| {s['name']} | {m.get('n')} | {_f(m.get('auc_malignant'))}{_ci(m, 'auc_malignant')} | "
                    f"{_f(m.get('sensitivity'))}{_ci(m, 'sensitivity')} | {_f(m.get('specificity'))}{_ci(m, 'specificity')} | "
                    f"{_f(m.get('ece_malignant'))} | {_f(m.get('lesions_called_normal'))} | "
                    f"{_count(m, 'normals_called_normal', normals)} |")
    return rows


HEAD = ("| site | images | AUC malignant (95% CI) | sensitivity | specificity | ECE | lesions called normal | "
        "normal frames called normal |\n|---|---|---|---|---|---|---|---|")


def render(model_dir: Path) -> str:
    card = json.loads((Path(model_dir) / CARD_FILE).read_text())
    size_mb = (Path(model_dir) / MODEL_FILE).stat().st_size / 1e6
    extra = card.get("extra", {})
    tta = (extra.get("config") or {}).get("tta_flip", "auto") != "off"
    sites = card.get("sites", [])
    data = "; ".join(f"{s['name']} ({s['images']} images: {s['trainval']} train+val, {s['test']} test"
                     + (f"; {len(s['devices'])} scanners" if s.get("devices") else "") + ")" for s in sites)
    points = card.get("operating_points") or {}
    default = card.get("default_operating_point") or "default"
    if not points and card.get("operating_point"):
        points = {"default": card["operating_point"]}
    rules = "<br>".join(
        f"`{name}`{' (default)' if name == default else ''}: normal if p(normal) >= {op['normal_threshold']:.3f}, "
        f"else malignant if p(malignant \\| lesion) >= {op['malignant_threshold']:.3f}, else benign ({op.get('chosen_by', '')})"
        for name, op in points.items()) or "argmax"
    check = card.get("input_check") or {}
    check_text = (f"on: warns (`unusual_input`) at score {check['warn_threshold']:.3f}, refuses (422 `not_ultrasound`) at "
                  f"{check['reject_threshold']:.3f}, and refuses blank frames; results in "
                  "[api.md](api.md#is-it-a-breast-ultrasound-the-input-check)") if check else "off (none fitted)"
    point_rows = []
    for name, op in points.items():
        for site, m in (op.get("out_of_site") or {}).items():
            point_rows.append(f"| {name} | unseen {site} | {_f(m.get('sensitivity'))}{_ci(m, 'sensitivity')} | "
                              f"{_f(m.get('specificity'))}{_ci(m, 'specificity')} | {_f(m.get('normals_called_normal'))} | "
                              f"{_f(m.get('lesions_called_normal'))} |")
    test_normals = [(s["name"], s["test_metrics"]) for s in sites
                    if (s.get("test_metrics") or {}).get("normals_called_normal") is not None]
    normals_text = "; ".join(f"on the {name} test split {_count(m, 'normals_called_normal', m['n'] - m['n_lesions'])} "
                             f"normal frames are labelled normal" for name, m in test_normals)
    lines = [
        f"# Model card: the bundled model (`{card['name']}` `{card['version']}`)",
        "",
        "Back to the [README](../README.md). Generated from `lambda_src/model/model.json` by "
        "`python -m model_training model-card` (`make promote` rewrites it; a test keeps it equal to the card), so every "
        "number is the shipped model's. How they were measured: [training.md](training.md) and the training report "
        "([reports/report.md](../reports/report.md)).",
        "",
        "> **Research use only. Not a medical device.** Outputs must not be used for diagnosis or any",
        "> clinical decision. Every API response says so.",
        "",
        "| | |",
        "|---|---|",
        "| task | one breast-ultrasound frame -> `normal` / `benign` / `malignant` probabilities, a label, and where the "
        "model looked (heatmap, lesion box when a lesion is found) |",
        f"| model | {card.get('backbone', '')} on the frame in grey with a lesion segmentation head and a malignancy head "
        f"(the lesion recipe, [training.md](training.md#the-lesion-recipe-default---recipe-lesion)); a {size_mb:.1f} MB "
        f"{card.get('input_dtype', '')} `.tflite`, {card['input_size']} px input (`{card['preprocessing_id']}`), "
        f"{'2 backbone passes per image (the frame and its mirror)' if tta else '1 backbone pass per image'} |",
        f"| training data | {data or 'n/a'} |",
        f"| label rules (`?operating_point=`) | {rules} |",
        f"| input check | {check_text} |",
        "",
        "**At a site it never saw** (leave-one-site-out on train+val: each site predicted by a model trained on the "
        "others; these predictions also chose the operating points):",
        "",
        HEAD, *_site_rows(sites, "leave_one_site_out"),
        "",
        "**Held-out test splits** (the shipped model; each split scored once, through the served path):",
        "",
        HEAD, *_site_rows(sites, "test_metrics"),
        "",
        "Sensitivity, specificity and the normal/lesion columns are at the default operating point. "
        "**Each named point out of site:**",
        "",
        "| point | set | sensitivity (95% CI) | specificity (95% CI) | normal frames called normal | lesions called normal |",
        "|---|---|---|---|---|---|",
        *(point_rows or ["| - | - | n/a | n/a | n/a | n/a |"]),
        "",
        "**Known limits.** Two training sites are few, and only one of them has normal frames, so \"normal\" is set "
        "where it cannot misfire on another site's lesions and is rarely reached at a new scanner"
        + (f" ({normals_text})" if normals_text else "") + ". Off-site discrimination is well below in-site. Training "
        "is not bit-reproducible (about +-0.01 AUC between runs). The input check was not measured on X-ray, "
        "mammogram, CT/MRI or other-organ ultrasound images. `make adapt` refits the cheap parts to a new site "
        "([training.md](training.md)).",
        "",
    ]
    return "\n".join(lines)


def write(model_dir: Path, out: Path = DOC) -> Path:
    out = Path(out)
    out.write_text(render(model_dir))
    return out
