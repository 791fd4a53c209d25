"""Named operating points of the lesion-aware model, each chosen on out-of-site predictions (every image
predicted by a model that never saw its site) and described by what it did there, site by site.

    sensitive   malignant sensitivity >= the target (0.90), and of those thresholds the most specific one
    balanced    the malignant threshold with the largest sensitivity + specificity (Youden's J)

Both call "normal" only when p(normal) reaches the threshold that lets at most MAX_LESIONS_CALLED_NORMAL of
the lesions through: at every training site, out of fold (cross_fit.py) when the run has cross-fit predictions,
else of the pooled out-of-site lesions; they differ in how readily a lesion is called malignant. The card keeps
them in `operating_points` (the API's `?operating_point=NAME`); the default is the sensitive one.
"""

from __future__ import annotations

import numpy as np

from .cross_fit import FILE as CROSS_FIT_FILE
from .cross_fit import CrossFit
from .cross_fit import normal_threshold as cross_fit_normal
from .site_metrics import (LABELS, MAX_LESIONS_CALLED_NORMAL, NO_NORMAL_GATE, malignant_given_lesion,
                           normal_threshold_for, site_metrics, threshold_for_sensitivity)

DEFAULT = "sensitive"
#: Keys of a site's metrics kept in the card for each point (the report has the rest).
_KEPT = ("n", "n_lesions", "n_malignant", "sensitivity", "specificity", "lesions_called_normal",
         "normals_called_normal", "accuracy", "ci95")


def youden_threshold(score: np.ndarray, is_mal: np.ndarray) -> float:
    """The threshold on `score` (>= t: malignant) with the largest sensitivity + specificity - 1;
    ties go to the higher threshold (fewer false alarms)."""
    if not is_mal.any() or is_mal.all():
        return 0.5
    cands = np.unique(score[np.isfinite(score) & (score >= 0)])
    pos, neg = max(int(is_mal.sum()), 1), max(int((~is_mal).sum()), 1)
    best_t, best_j = 0.5, -np.inf
    for t in cands:
        called = score >= t
        j = (called & is_mal).sum() / pos + (~called & ~is_mal).sum() / neg - 1
        if j >= best_j:
            best_t, best_j = float(t), float(j)
    return float(np.clip(best_t, 1e-4, 1 - 1e-4))


def choose(probs: np.ndarray, labels, *, target_sensitivity: float,
           max_lesions_called_normal: float = MAX_LESIONS_CALLED_NORMAL,
           normal: dict | None = None) -> dict[str, dict]:
    """name -> {"malignant_threshold", "normal_threshold", "chosen_by"} from pooled out-of-site predictions.
    ``normal`` (cross_fit.normal_threshold: {"normal_threshold", "rule"}) sets the normal threshold instead of
    these predictions; the malignant thresholds are chosen out of site under it either way."""
    labels = np.asarray(labels)
    lesion, is_mal = labels != "normal", labels == "malignant"
    if normal is None:
        normal_t = normal_threshold_for(probs[lesion, 0], max_lesions_called_normal)
        where = f"and <= {max_lesions_called_normal:.0%} of lesions called normal on {len(labels)} out-of-site predictions"
    else:
        normal_t = float(normal["normal_threshold"])
        where = f"on {len(labels)} out-of-site predictions; normal: {normal['rule']}"
    # A frame called normal is never malignant: it counts as a miss, whatever its p(malignant | lesion). A
    # cross-fit normal threshold belongs to models trained on every site: the single-site models' p(normal)
    # (a BUSI-only model's for BUS-BRA lesions ~0.6) says nothing about it, so it masks nothing here.
    score = malignant_given_lesion(probs)
    if normal is None:
        score = np.where(probs[:, 0] >= normal_t, -1.0, score)
    return {
        "sensitive": {"malignant_threshold": threshold_for_sensitivity(score, is_mal, target_sensitivity),
                      "normal_threshold": normal_t,
                      "chosen_by": f"malignant sensitivity >= {target_sensitivity:.2f} (the most specific such "
                                   f"threshold) {where}"},
        "balanced": {"malignant_threshold": youden_threshold(score, is_mal), "normal_threshold": normal_t,
                     "chosen_by": f"the largest malignant sensitivity + specificity {where}"},
    }


# Out-of-site figures of a point whose normal threshold came from cross-fitting are the malignant rule alone:
# the single-site models behind them never set that threshold (a BUSI-only model gives BUS-BRA lesions
# p(normal) ~ 0.6), so "called normal" is stated out of fold instead (`out_of_fold`).
def site_point(op: dict, normal_gate: bool = True) -> tuple[float, float]:
    """(malignant threshold, normal threshold) to score a set with: the point's, or, without the normal gate,
    a normal threshold no probability reaches."""
    return op["malignant_threshold"], (op["normal_threshold"] if normal_gate else NO_NORMAL_GATE)


def gate_figures(m: dict, normal_gate: bool) -> dict:
    """A set's metrics, less the "called normal" figures when the set was scored without the normal gate
    (they would read 0 by construction)."""
    return m if normal_gate else {k: v for k, v in m.items() if "called_normal" not in k}


def _figures(labels, probs, op: dict, normal_gate: bool = True) -> dict:
    m = gate_figures(site_metrics(labels, probs, *site_point(op, normal_gate), n_boot=300), normal_gate)
    return {k: m[k] for k in _KEPT if k in m}


def describe(points: dict[str, dict], per_site: dict[str, tuple[list[str], np.ndarray]], *,
             out_of_fold: dict[str, tuple[list[str], np.ndarray]] | None = None) -> dict[str, dict]:
    """Each point with what it did on each out-of-site set: {site: sensitivity, specificity (95 % CIs),
    normals and lesions called normal, ...}. `per_site`: site -> (labels, probabilities). With `out_of_fold`
    (cross-fit predictions, site -> (labels, probabilities)) the normal threshold came from those: the
    out-of-site figures are then the malignant rule's alone and `out_of_fold` holds the whole rule's."""
    gate = out_of_fold is None
    out = {}
    for name, op in points.items():
        entry = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in op.items()}
        entry["out_of_site"] = {site: _figures(*s, op, gate) for site, s in per_site.items()}
        if out_of_fold is not None:
            entry["out_of_fold"] = {site: _figures(*s, op) for site, s in out_of_fold.items()}
        out[name] = entry
    return out


def out_of_fold_sets(cf: CrossFit, calib: dict) -> dict[str, tuple[list[str], np.ndarray]]:
    """site -> (labels, calibrated probabilities) of the cross-fit's out-of-fold predictions."""
    from .site_metrics import hierarchical_probs

    probs = hierarchical_probs(cf.lesion, cf.malig, t_lesion=calib["lesion_temperature"],
                               t_malig=calib["malignant_temperature"])
    return {str(site): ([str(l) for l in cf.label[cf.site == site]], probs[cf.site == site])
            for site in dict.fromkeys(cf.site.tolist())}


def confusion(labels: list[str], probs: np.ndarray, op: dict) -> list[list[int]]:
    """3 x 3 counts, rows the true label, columns the label this point serves (LABELS order)."""
    from .site_metrics import decide

    y = np.array([LABELS.index(l) for l in labels], dtype=int)
    pred = decide(probs, op["malignant_threshold"], op.get("normal_threshold"))
    m = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    np.add.at(m, (y, pred), 1)
    return m.tolist()


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _ci(m: dict, key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    return f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else ""


def section(points: dict[str, dict], sets: dict[str, tuple[list[str], np.ndarray]], *, default: str = DEFAULT,
            no_normal_gate: tuple[str, ...] = ()) -> str:
    """report.md's "Named operating points": per set (out-of-site, out-of-fold and held-out test) and per
    point, sensitivity and specificity with 95 % intervals, normal frames and lesions called normal, accuracy
    and the confusion matrix of the served label. Sets in `no_normal_gate` are scored by the malignant rule
    alone (their models did not set the normal threshold)."""
    lines = ["## Named operating points (`?operating_point=NAME`; default: " + default + ")", ""]
    for name, op in points.items():
        lines.append(f"- **{name}**: normal if p(normal) >= {op['normal_threshold']:.3f}, else malignant if "
                     f"p(malignant | lesion) >= {op['malignant_threshold']:.3f}, else benign ({op['chosen_by']}).")
    lines += ["", "| set | point | images | sensitivity (95% CI) | specificity (95% CI) | normal frames called normal "
              "| lesions called normal | accuracy |", "|---|---|---|---|---|---|---|---|"]
    for set_name, (labels, probs) in sets.items():
        gate = set_name not in no_normal_gate
        for name, op in points.items():
            m = site_metrics(labels, probs, *site_point(op, gate), n_boot=300)
            lines.append(f"| {set_name}{'' if gate else ' (malignant rule alone)'} | {name} | {m['n']} | {_f(m['sensitivity'])}{_ci(m, 'sensitivity')} | "
                         f"{_f(m['specificity'])}{_ci(m, 'specificity')} | "
                         f"{_f(m.get('normals_called_normal')) if gate else '-'} | "
                         f"{_f(m['lesions_called_normal']) if gate else '-'} | {_f(m['accuracy'])} |")
    lines += ["", "Confusion matrices of the served label (rows true normal / benign / malignant, columns the "
              "label served in the same order):", ""]
    for set_name, (labels, probs) in sets.items():
        gate = set_name not in no_normal_gate
        cells = [f"{name} `{confusion(labels, probs, op if gate else {**op, 'normal_threshold': NO_NORMAL_GATE})}`"
                 for name, op in points.items()]
        lines.append(f"- {set_name}{'' if gate else ' (malignant rule alone)'}: " + "; ".join(cells))
    if no_normal_gate:
        lines += ["", "The normal threshold was set out of fold inside the training sites (cross-fit): the "
                  "single-site models behind the out-of-site sets never set it, so those rows apply the "
                  "malignant rule alone, and the out-of-fold rows (patients no fold model saw, scanners it did) "
                  "state what the whole rule does, normal frames and lesions called normal included."]
    lines += ["", "`decision_by_site.png`: p(normal) and p(malignant | lesion), the two numbers the rule reads, "
              "by set and true label, with each point's thresholds.", ""]
    return "\n".join(lines)


def plot(points: dict[str, dict], sets: dict[str, tuple[list[str], np.ndarray]], path) -> None:
    """Strip plots of p(normal) (all frames) and p(malignant | lesion) (lesion frames) by set and true label."""
    from . import plots

    plt = plots.plt
    names = list(sets)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.6 * len(names) + 2.2), sharey=True)
    colours = {"normal": "C2", "benign": "C0", "malignant": "C3"}
    rng = np.random.default_rng(0)
    for k, set_name in enumerate(names):
        labels, probs = sets[set_name]
        labels = np.asarray(labels)
        score = malignant_given_lesion(probs)
        for ax, values, keep in ((axes[0], probs[:, 0], np.ones(len(labels), bool)),
                                 (axes[1], score, labels != "normal")):
            for j, label in enumerate(LABELS):
                sel = keep & (labels == label)
                if sel.any():
                    y = k + (j - 1) * 0.22 + rng.uniform(-0.07, 0.07, sel.sum())
                    ax.scatter(values[sel], y, s=6, alpha=0.5, color=colours[label],
                               label=label if k == 0 else None)
    for ax, key, title in ((axes[0], "normal_threshold", "p(normal)"),
                           (axes[1], "malignant_threshold", "p(malignant | lesion), lesion frames")):
        for m, (name, op) in enumerate(points.items()):
            ax.axvline(op[key], color="k", ls=("-", "--", ":")[m % 3], lw=1, label=f"{name} threshold")
        ax.set_xlim(0, 1)
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=7)
    axes[0].set_yticks(range(len(names)), names)
    plots._save(fig, path)


SECTION_START, SECTION_END = "<!-- operating-points -->", "<!-- /operating-points -->"


def out_of_site_sets(oos, splits, calib: dict) -> dict[str, tuple[list[str], np.ndarray]]:
    """site -> (labels, calibrated probabilities) of a training run's out-of-site predictions (loso.OutOfSite)."""
    from .site_metrics import hierarchical_probs

    by_name = {sp.site.name: sp.site for sp in splits}
    return {o.site: ([by_name[o.site].labels[i] for i in o.idx],
                     hierarchical_probs(o.lesion, o.malig, t_lesion=calib["lesion_temperature"],
                                        t_malig=calib["malignant_temperature"])) for o in oos}


def cross_fit_sets(report_dir, calibration: dict) -> dict[str, tuple[list[str], np.ndarray]]:
    """"out of fold SITE" -> (labels, probabilities) of REPORT/cross_fit_predictions.npz when the card's normal
    threshold came from it (calibration's `normal_threshold_cross_fit`), else {}."""
    from pathlib import Path

    path = Path(report_dir) / CROSS_FIT_FILE
    if not calibration.get("normal_threshold_cross_fit") or not path.is_file():
        return {}
    return _named_out_of_fold(out_of_fold_sets(CrossFit.load(path), calibration))


def _named_out_of_fold(by_site: dict) -> dict:
    """The report's set names for out-of-fold predictions, as "unseen SITE" names the out-of-site ones."""
    return {f"out of fold {k}": v for k, v in by_site.items()}


def loso_sets(report_dir, calibration: dict) -> dict[str, tuple[list[str], np.ndarray]]:
    """The run's out-of-site predictions (report/loso_predictions.npz) as calibrated probabilities, by site."""
    from pathlib import Path

    from .site_metrics import hierarchical_probs

    z = np.load(Path(report_dir) / "loso_predictions.npz", allow_pickle=False)
    out = {}
    for site in dict.fromkeys(str(s) for s in z["site"]):
        m = z["site"] == site
        out[f"unseen {site}"] = ([str(l) for l in z["label"][m]], hierarchical_probs(
            z["lesion_logits"][:, m], z["malignant_logits"][:, m], t_lesion=calibration["lesion_temperature"],
            t_malig=calibration["malignant_temperature"]))
    return out


def test_sets(model_dir, split_file, data_dirs) -> dict[str, tuple[list[str], np.ndarray]]:
    """Each training site's held-out test split, scored as files through the served engine."""
    from pathlib import Path

    from tqdm.auto import tqdm

    from classifier.engine import Engine

    from .data import discover
    from .split_file import select_split

    engine = Engine(model_dir)
    out = {}
    for root in data_dirs:
        samples, _ = discover(Path(root))
        chosen, _what = select_split(samples, Path(split_file), "test", Path(root))
        probs = [engine.predict_bytes(s.path.read_bytes()) for s in tqdm(chosen, desc=f"test {Path(root).name}",
                                                                           unit="img", leave=False)]
        out[f"test {Path(root).name}"] = ([s.label for s in chosen],
                                          np.array([[p[l] for l in LABELS] for p in probs]).reshape(-1, 3))
    return out


def write_section(report_md, text: str) -> None:
    """Put the section into report.md, replacing an earlier one."""
    from pathlib import Path

    path = Path(report_md)
    body = path.read_text() if path.is_file() else ""
    block = f"{SECTION_START}\n{text}\n{SECTION_END}\n"
    if SECTION_START in body and SECTION_END in body:
        head, rest = body.split(SECTION_START, 1)
        body = head + block + rest.split(SECTION_END, 1)[1].lstrip("\n")
    else:
        body = body.rstrip("\n") + "\n\n" + block
    path.write_text(body)


def _restate_site_metrics(raw: dict, unseen: dict, tests: dict, op: dict, *, normal_gate: bool = True) -> None:
    """The card's per-site figures at its (new) default point: out of site (the malignant rule alone unless
    `normal_gate`: see describe) and on each test split (the test images were scored by the served engine just
    now; the argmax `test_metrics` do not depend on the point)."""
    keys = ("n", "n_lesions", "n_malignant", "auc_malignant", "sensitivity", "specificity", "ece_malignant",
            "lesions_called_normal", "accuracy", "normals_called_normal", "ci95")
    extra = raw.setdefault("extra", {})
    for entry in raw.get("sites") or []:
        for key, sets, where in (("leave_one_site_out", unseen, f"unseen {entry['name']}"),
                                 ("test_metrics", tests, f"test {entry['name']}")):
            if where in sets:
                gate = normal_gate or key == "test_metrics"
                m = gate_figures(site_metrics(*sets[where], *site_point(op, gate)), gate)
                entry[key] = {k: m[k] for k in keys if k in m}
                bucket = extra.setdefault("leave_one_site_out" if key == "leave_one_site_out" else "test", {})
                # localisation does not depend on the point; the per-device figures did (dropped, not restated)
                kept = gate_figures({k: v for k, v in bucket.get(entry["name"], {}).items() if k != "devices"}, gate)
                bucket[entry["name"]] = {**kept, **m}


def refresh(model_dir, report_dir, data_dirs) -> dict[str, dict]:
    """Choose the named points again from a run's saved out-of-site predictions and write them into its
    model.json (thresholds and what each did out of site) and report (section + plot): for model folders
    trained before named points existed. The default point's thresholds are the card's own rule's, unless
    REPORT/cross_fit_predictions.npz (`cross-fit`) brings a new normal rule: then the card's default point,
    calibration and per-site figures follow it (its recorded drift band and pre-traffic answers must then be
    written again: `expectations`)."""
    import json
    from pathlib import Path

    from classifier.model_card import CARD_FILE, ModelCard

    model_dir, report_dir = Path(model_dir), Path(report_dir)
    raw = json.loads((model_dir / CARD_FILE).read_text())
    calib = raw["extra"]["calibration"]
    unseen = loso_sets(report_dir, calib)
    labels = [l for ls, _ in unseen.values() for l in ls]
    probs = np.concatenate([p for _, p in unseen.values()])
    normal, oof = None, None
    if (report_dir / CROSS_FIT_FILE).is_file():  # the normal threshold from out-of-fold predictions (cross_fit.py)
        cf = CrossFit.load(report_dir / CROSS_FIT_FILE)
        normal = cross_fit_normal(cf, calib["max_lesions_called_normal"], t_lesion=calib["lesion_temperature"])
        oof = out_of_fold_sets(cf, calib)
    points = choose(probs, labels, target_sensitivity=calib["target_sensitivity"],
                    max_lesions_called_normal=calib["max_lesions_called_normal"], normal=normal)
    old = raw.get("operating_point") or {}
    rule = normal["rule"] if normal else "leave-one-site-out"
    changed = calib.get("normal_threshold_rule", "leave-one-site-out") != rule
    if not changed:
        # the same rule on the same saved predictions must give the card's own point
        for key in ("malignant_threshold", "normal_threshold"):
            if old.get(key) is not None and abs(old[key] - points[DEFAULT][key]) > 1e-5:
                raise ValueError(f"{model_dir}: the {DEFAULT} point's {key} {points[DEFAULT][key]:.6f} is not the "
                                 f"card's {old[key]:.6f}: the saved predictions are not this model's")
    else:  # a new normal rule (cross-fit predictions added): the card's point and calibration follow it
        if calib.get("normal_threshold_rule") is None:
            calib["normal_threshold_loso"] = calib.get("normal_threshold")
        raw["operating_point"] = {**old, **{k: points[DEFAULT][k] for k in ("malignant_threshold", "normal_threshold",
                                                                              "chosen_by")}}
        calib.update(normal_threshold=points[DEFAULT]["normal_threshold"], normal_threshold_rule=rule,
                     malignant_threshold=points[DEFAULT]["malignant_threshold"], normal_threshold_cross_fit=normal,
                     points=points)
    raw["operating_points"] = describe(points, {k.removeprefix("unseen "): v for k, v in unseen.items()},
                                       out_of_fold=oof)
    raw["default_operating_point"] = DEFAULT
    tests = test_sets(model_dir, report_dir / "split.json", data_dirs)
    if changed:
        _restate_site_metrics(raw, unseen, tests, raw["operating_point"], normal_gate=oof is None)
    ModelCard.from_dict(raw).write(model_dir)
    metrics_file = report_dir / "metrics.json"
    if changed and metrics_file.is_file():  # the report's figures follow the card's (new) point too
        metrics = json.loads(metrics_file.read_text())
        for key in ("test", "leave_one_site_out", "calibration"):
            metrics[key] = raw["extra"].get(key, metrics.get(key))
        metrics_file.write_text(json.dumps(metrics, indent=1) + "\n")
    sets = unseen | _named_out_of_fold(oof or {}) | tests
    write_section(report_dir / "report.md", section(points, sets, no_normal_gate=tuple(unseen) if oof else ()))
    plot(points, sets, report_dir / "decision_by_site.png")
    return raw["operating_points"]
