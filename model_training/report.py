"""Markdown reports and the console summary table."""

from __future__ import annotations


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(result: dict, key: str) -> str:
    ci = result.get("ci95", {}).get(key)
    return f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""


def metrics_table(result: dict) -> str:
    rows = [
        ("images", str(result["n"])),
        ("accuracy", _f(result["accuracy"]) + _ci(result, "accuracy")),
        ("macro-F1", _f(result["macro_f1"]) + _ci(result, "macro_f1")),
        ("AUC one-vs-rest macro", _f(result.get("auc_ovr_macro")) + _ci(result, "auc_ovr_macro")),
        ("AUC malignant vs rest", _f(result.get("auc_malignant")) + _ci(result, "auc_malignant")),
        ("malignant sensitivity", _f(result.get("malignant_sensitivity"))),
        ("malignant specificity", _f(result.get("malignant_specificity"))),
        ("ECE (15 bins)", _f(result["ece"])),
    ]
    lines = ["| metric | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, m in result["per_class"].items():
        lines.append(f"| {label} | {_f(m['precision'])} | {_f(m['recall'])} | {_f(m['f1'])} | {m['support']} |")
    cm = result["confusion_matrix"]
    lines += ["", "Confusion matrix (rows true, columns predicted):", "",
              "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
    for label, row in zip(cm["labels"], cm["matrix"]):
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + " |")
    if result.get("classes_absent_from_data"):
        lines += ["", f"Classes absent from this data: {', '.join(result['classes_absent_from_data'])}; "
                      f"the model predicted one of them for {result['predictions_of_absent_classes']} of "
                      f"{result['n']} images (counted as errors)."]
    return "\n".join(lines)


def eval_markdown(result: dict, *, title: str, scored: str = "") -> str:
    return (
        f"# {title}\n\nThe .tflite as served (LiteRT, serving preprocessing). Research use only; "
        "not a medical device.\n\n"
        + (f"Scored: {scored}.\n\n" if scored else "") +
        f"{metrics_table(result)}\n\n"
        "Plots: `confusion_matrix.png`, `roc.png`, `reliability.png`.\n"
    )


def console_summary(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    bar = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([bar] + [f"{k.ljust(width)} | {v}" for k, v in rows] + [bar])
