"""report.md, metrics.json and plots of a lesion-recipe run: per site, unseen (leave-one-site-out)
and held-out test, per device, the operating point, calibration and where the model looked."""

from __future__ import annotations

import json

import numpy as np

from . import plots
from .operating_points import out_of_site_sets
from .site_metrics import LABELS

GOALS = [  # (what, key, comparison, target) from issue 9, judged per unseen site
    ("AUC malignant", "auc_malignant", ">=", 0.90),
    ("malignant sensitivity at the operating point", "sensitivity", ">=", 0.90),
    ("specificity at the operating point", "specificity", ">=", 0.70),
    ("ECE (malignant vs not)", "ece_malignant", "<=", 0.08),
    ("lesions called normal", "lesions_called_normal", "<=", 0.02),
]


def _f(v, d: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{d}f}"


def _ci(m: dict, key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    return f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else ""


def _row(name: str, m: dict) -> str:
    loc = m.get("localisation") or {}
    return (f"| {name} | {m['n']} | {_f(m['auc_malignant'])}{_ci(m, 'auc_malignant')} | "
            f"{_f(m['sensitivity'])}{_ci(m, 'sensitivity')} | {_f(m['specificity'])}{_ci(m, 'specificity')} | "
            f"{_f(m['ece_malignant'])} | {_f(m.get('lesions_called_normal'))} | {_f(loc.get('pointing_hit_rate'))} |")


HEADER = ("| set | images | AUC malignant (95% CI) | sensitivity | specificity | ECE | lesions called normal | "
          "heatmap peak in lesion |\n|---|---|---|---|---|---|---|---|")


def _device_rows(results: dict, prefix: str) -> list[str]:
    return [_row(f"{prefix} · {dev}", m) for site, r in results.items() for dev, m in r.get("devices", {}).items()]


def _goal_rows(loso: dict) -> str:
    lines = ["| goal | " + " | ".join(loso) + " |", "|---|" + "---|" * len(loso)]
    for what, key, op, target in GOALS:
        cells = []
        for m in loso.values():
            v = m.get(key)
            ok = v is not None and (v >= target if op == ">=" else v <= target)
            cells.append(f"{_f(v)} {'met' if ok else '**missed**'}")
        lines.append(f"| {what} {op} {target:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(cfg, card, splits, oos, calib, loso, test, test_probs, history, engine) -> None:
    out = cfg.report
    (out / "metrics.json").write_text(json.dumps({"version": card["version"], "leave_one_site_out": loso,
                                                  "test": test, "calibration": calib,
                                                  "pooled_test": card["test_metrics"]}, indent=1) + "\n")
    by_name = {sp.site.name: sp for sp in splits}
    from .operating_points import cross_fit_sets, plot, section, write_section

    unseen = out_of_site_sets(oos, splits, calib)
    curves = [(f"unseen: {name}", labels, probs) for name, (labels, probs) in unseen.items()]
    for name, probs in test_probs.items():
        sp = by_name[name]
        curves.append((f"test: {name}", [sp.site.labels[i] for i in sp.test], probs))
    plots.site_roc(curves, out / "site_roc.png", threshold=calib["malignant_threshold"])
    plots.site_reliability(curves, out / "site_reliability.png")
    plots.training_curves({"final fit": history} | {f"LOSO -> {o.site}": o.history for o in oos},
                          out / "training_curves.png")
    examples = []
    for sp in splits:
        lesion_test = [i for i in sp.test if sp.site.labels[i] != "normal"][:4]
        normal_test = [i for i in sp.test if sp.site.labels[i] == "normal"][:1]
        for i in lesion_test + normal_test:
            p, heat = engine.predict_with_heatmap(np.repeat(sp.site.x[i][..., None].astype(np.float32), 3, axis=-1))
            examples.append((sp.site.x[i], sp.site.mask[i], heat, f"{sp.site.name} {sp.site.labels[i]}\n"
                             f"p(mal) {p[2]:.2f} p(normal) {p[0]:.2f}"))
    plots.localisation_examples(examples, out / "localisation_examples.png")
    op = card["operating_point"]
    sites_text = "\n".join(
        f"- **{sp.site.name}** (`{sp.site.root}`): {len(sp.site)} images "
        f"({', '.join(f'{l} {sp.site.labels.count(l)}' for l in LABELS if l in sp.site.labels)}), "
        f"{len(set(sp.site.groups))} groups (patients from the metadata CSV and/or repeated frames), "
        f"devices: {', '.join(sorted(set(sp.site.devices) - {''})) or 'not given'}; train+val {len(sp.trainval)}, "
        f"test {len(sp.test)}, {len(sp.excluded)} left out (a group with conflicting labels)."
        for sp in splits)
    extra = card["extra"]
    text = f"""# Training report: {card['name']} {card['version']}

Research use only; not a medical device. Produced by `python -m model_training train --recipe lesion`
with the config in `model.json` (`extra.config`). Test numbers come from the exported `model.tflite`
run by LiteRT on the image files through the serving preprocessing; each site's test split was used
once, after every choice.

## Sites
{sites_text}

No patient and no repeated frame is on both sides of a split (`split.json`).

## Model
{card['backbone']} ({card['weights_source'].split(' ')[0]}), grey letterboxed {card['input_size']} px input
(`{card['preprocessing_id']}`), top {cfg.unfreeze:.0%} of the backbone fine-tuned for {cfg.epochs} epochs after a
one-epoch head warm-up, batches drawn equally from each site, scanner augmentation (crop/zoom-out, aspect,
mirror, gain/contrast/gamma, speckle, blur, resolution, burned-in text and calipers). A segmentation head
learns the lesion masks on a {card['localisation']['grid']}x{card['localisation']['grid']} grid; "lesion present" is read
from its most lesion-like cell; malignancy from the features pooled where the heatmap points, plus global
context. The served graph returns the calibrated probabilities and the heatmap{', averaged with the mirror image' if cfg.tta_flip != 'off' else ''}.

## Calibration and operating point (chosen on {extra['selection']})
- malignancy temperature {calib['malignant_temperature']:.3f} (fitted on {calib['n']} out-of-site predictions);
  lesion temperature {calib['lesion_temperature']:.3f} ({calib['lesion_temperature_note']}).
- **label rule:** normal if p(normal) >= **{op['normal_threshold']:.3f}**, else malignant if p(malignant | lesion)
  = p(malignant) / (p(benign) + p(malignant)) >= **{op['malignant_threshold']:.3f}**, else benign
  ({op['chosen_by']}). Probabilities are not changed by the rule.

## A site the model never saw: leave-one-site-out (train + val of each site)
Each row: a model trained on the other site(s) only, with the calibration and threshold above
(these out-of-site predictions also chose them, so the ECE and sensitivity here read a little better
than a truly new site would see; AUC is untouched by the choice).

{HEADER}
{chr(10).join(_row(name, m) for name, m in loso.items())}
{chr(10).join(_device_rows(loso, 'unseen'))}

Goals of issue 9 on each unseen site:

{_goal_rows(loso) if loso else 'Only one site: no leave-one-site-out.'}

## Held-out test splits (the final model, trained on every site's train + val)
{HEADER}
{chr(10).join(_row(name, m) for name, m in test.items())}
{chr(10).join(_device_rows(test, 'test'))}

Accuracy at the operating point (three classes): {', '.join(f"{n} {_f(m['accuracy'])}" for n, m in test.items())}.
Pooled over the test splits with argmax labels: accuracy {_f(card['test_metrics'].get('accuracy'))},
AUC one-vs-rest macro {_f(card['test_metrics'].get('auc_ovr_macro'))}.

"Heatmap peak in lesion": share of lesion frames whose most lesion-like cell is inside the ground-truth
mask (pointing game); mean IoU of the peak region: {', '.join(f"{n} {_f((m.get('localisation') or {}).get('mean_iou'))}" for n, m in test.items())}.

Plots: `site_roc.png` (malignant vs rest per site, operating point marked), `site_reliability.png`,
`localisation_examples.png` (test frames, heatmap and the true mask outline), `training_curves.png`.

## Export
Parity LiteRT vs Keras on {extra['parity']['n']} test images: {extra['parity']['same_label']} same label, max probability
difference {extra['parity']['max_abs_prob_diff']:.1e}, heatmap {extra['parity']['max_abs_heatmap_diff']:.1e}.
`model.tflite` sha256 `{card['tflite_sha256']}`.

Wall time {extra['train_wall_seconds'] / 60:.1f} min, peak memory {extra['peak_memory_mb']:.0f} MB; seconds per stage:
{', '.join(f'{k} {v:.0f}' for k, v in extra['stage_seconds'].items())}.
"""
    (out / "report.md").write_text(text)
    oof = cross_fit_sets(out, calib)
    sets = {f"unseen {k}": v for k, v in unseen.items()} | oof
    sets |= {f"test {name}": ([by_name[name].site.labels[i] for i in by_name[name].test], probs)
             for name, probs in test_probs.items()}
    ungated = tuple(f"unseen {k}" for k in unseen) if oof else ()  # the normal threshold came from cross-fit
    write_section(out / "report.md", section(calib["points"], sets, no_normal_gate=ungated))
    plot(calib["points"], sets, out / "decision_by_site.png")
