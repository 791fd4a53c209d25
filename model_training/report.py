"""Markdown reports and the console summary table."""

from __future__ import annotations


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci(result: dict, key: str) -> str:
    ci = result.get("ci95", {}).get(key)
    return f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""


def _confusion(cm: dict, caption: str) -> list[str]:
    lines = ["", f"{caption} (rows true, columns predicted):", "",
             "| | " + " | ".join(cm["labels"]) + " |", "|---" * (len(cm["labels"]) + 1) + "|"]
    return lines + [f"| **{label}** | " + " | ".join(str(v) for v in row) + " |"
                    for label, row in zip(cm["labels"], cm["matrix"])]


def served_table(served: dict) -> str:
    """The labels the API returns (the card's label rule), beside the argmax metrics."""
    lines = [f"Labels as served ({served['rule']}):", "",
             "| metric | value |", "|---|---|",
             f"| accuracy | {_f(served['accuracy'])} |", f"| macro-F1 | {_f(served['macro_f1'])} |"]
    lines += [f"| recall {label} | {_f(v)} |" for label, v in served["recall"].items()]
    return "\n".join(lines + _confusion(served["confusion_matrix"], "Confusion matrix of the served labels"))


def metrics_table(result: dict) -> str:
    served = result.get("served_labels")
    argmax = " (argmax)" if served else ""
    rows = [
        ("images", str(result["n"])),
        ("accuracy" + argmax, _f(result["accuracy"]) + _ci(result, "accuracy")),
        ("macro-F1" + argmax, _f(result["macro_f1"]) + _ci(result, "macro_f1")),
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
    lines += _confusion(result["confusion_matrix"], "Confusion matrix of the most probable class (argmax)" if served
                        else "Confusion matrix")
    if result.get("classes_absent_from_data"):
        lines += ["", f"Classes absent from this data: {', '.join(result['classes_absent_from_data'])}; "
                      f"the model predicted one of them for {result['predictions_of_absent_classes']} of "
                      f"{result['n']} images (counted as errors)."]
    if served:
        lines += ["", served_table(served)]
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
