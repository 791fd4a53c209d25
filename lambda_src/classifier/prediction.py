"""One analysis -> the prediction the API returns: the label under a named operating point, the rule
and the quantities it read, the probabilities, and where the model looked (a box only where it found a lesion).
"""

from __future__ import annotations

from typing import Any

from .input_check import WARNING
from .model_card import DISCLAIMER, ModelCard
from .response_model import Prediction

#: A lesion box is drawn only when the heatmap's most lesion-like cell is at least this likely a lesion
#: (and the label is not "normal"): a box "found" on a blank or lesion-free frame misleads more than none.
BOX_MIN_PEAK = 0.5


def unusual_note(check: Any) -> str:
    """What the label rule says when the input check found the image borderline (verdict "warn")."""
    return (f"; input check: unusual input (score {check.score:.2f} >= warn threshold {check.warn_threshold:.2f}), "
            "so this label may not mean anything for this image")


def prediction_body(card: ModelCard, analysis: Any, *, operating_point: str | None = None,
                    include_uid: bool = False) -> dict:
    """The predict route's JSON body for one analysed image (engine.Analysis) under `operating_point`
    (None: the card's default; an unknown name raises UnknownOperatingPoint, a 400), built as the typed
    ``response_model.Prediction`` (which refuses a field the contract lacks) and returned as its JSON dict.
    The input check's verdict comes with the analysis (``analysis.check``, when the model has one): then the
    body carries ``warnings`` and ``input_check`` too; a DICOM input's frame and region come as ``dicom`` (its
    SOP Instance UID only with `include_uid`). Every caller (handler, local API, batch, the DICOM SR) answers
    with this body."""
    probabilities, check = analysis.probabilities, getattr(analysis, "check", None)
    name, _ = card.point(operating_point)
    label, rule = card.decide(probabilities, name)
    if check is not None and check.verdict == "warn":
        rule += unusual_note(check)
    body: dict[str, Any] = {"label": label, "label_rule": rule, "operating_point": name,
                            "probabilities": probabilities}
    decision = card.decision(probabilities)
    if decision is not None:
        body["decision"] = {k: round(v, 6) for k, v in decision.items()}
    body["model"] = {"name": card.name, "version": card.version}
    body["disclaimer"] = card.disclaimer or DISCLAIMER
    if analysis.localisation is not None:
        loc = analysis.localisation.to_dict()
        if label == "normal" or loc["peak"] < BOX_MIN_PEAK:
            loc["box"] = None  # no lesion found: the heatmap stays, for whoever wants to look
        body["localisation"] = loc
    if check is not None:
        body["warnings"] = [WARNING] if check.verdict == "warn" else []
        body["input_check"] = check.to_dict()
    if getattr(analysis, "dicom", None) is not None:  # which frame, the region; the UID only when asked for
        body["dicom"] = analysis.dicom.to_dict(include_uid=include_uid)
    return Prediction.model_validate(body).model_dump(mode="json", exclude_unset=True)
