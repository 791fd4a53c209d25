"""The API's response contract as typed pydantic (v2) models, and the OpenAPI document built from them.

    python -m classifier.response_model docs/openapi.json     # (re)write the committed document

Every body the function sends is built here: ``prediction.prediction_body`` validates its dict as
``Prediction`` (``extra="forbid"``: a field the contract lacks is a bug, not a silent addition) and
``error_body`` builds every 4xx/5xx. pydantic is in the Lambda image for that (lambda_src/requirements.txt).
The OpenAPI document is built from these models by ``openapi()`` rather than by Powertools' resolver,
because the request side (binary PNG/JPEG/DICOM bodies, a DICOM SR answer) is not expressible as a pydantic
request model; the local API serves it at ``GET /openapi.json`` and tests/serving/test_response_model.py
keeps the committed docs/openapi.json equal to it. Research use only; not a medical device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .model_card import DISCLAIMER
from .request_body import BINARY_MEDIA_TYPES

OPENAPI_VERSION = "3.1.0"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelId(_Strict):
    name: str
    version: str


class Decision(_Strict):
    """The two quantities the label rule reads."""

    p_lesion: float = Field(ge=0, le=1, description="1 - p(normal)")
    p_malignant_given_lesion: float = Field(ge=0, le=1, description="p(malignant) / (p(benign) + p(malignant))")


class Placement(_Strict):
    """Where the image sits in the square model input: input pixel = image pixel x scale + (left, top)."""

    size: int
    left: int
    top: int
    scale_x: float
    scale_y: float


class Localisation(_Strict):
    box: list[int] | None = Field(description="[x, y, w, h] in image pixels; null when no lesion is found",
                                  min_length=4, max_length=4)
    peak: float = Field(ge=0, le=1)
    heatmap: list[list[float]] = Field(description="g x g values in [0, 1] over the letterboxed model input")
    placement: Placement | None = None


class InputCheck(_Strict):
    score: float
    warn_threshold: float
    reject_threshold: float
    verdict: Literal["pass", "warn", "reject"]


class DicomInfo(_Strict):
    frame: int = Field(ge=1, description="the frame classified, 1-based")
    frames: int = Field(ge=1)
    region: list[int] | None = Field(description="[x, y, w, h] of the ultrasound region the frame was cropped to",
                                     min_length=4, max_length=4)
    sop_instance_uid: str | None = Field(default=None, description="only with ?include=sop_instance_uid")


class Prediction(_Strict):
    """200 from POST /predict (JSON)."""

    label: str
    label_rule: str
    operating_point: str
    probabilities: dict[str, float] = Field(description="one per label, in the model's label order, summing to 1")
    decision: Decision | None = None
    model: ModelId
    disclaimer: str = Field(pattern=r"^Research use only")
    localisation: Localisation | None = None
    warnings: list[str] | None = None
    input_check: InputCheck | None = None
    dicom: DicomInfo | None = None


class ErrorDetail(_Strict):
    code: str
    message: str
    request_id: str | None = Field(default=None, description="API Gateway's request id: always in the function's "
                                   "errors; absent from the local API's own framing refusals (before the handler)")


class ErrorBody(_Strict):
    """Every 4xx/5xx the function sends."""

    error: ErrorDetail
    disclaimer: str = Field(pattern=r"^Research use only")


def error_body(code: str, message: str, *, request_id: str | None = None) -> dict:
    """The JSON body of every error the function sends (request_id: API Gateway's, when there is one)."""
    error = ErrorDetail(code=code, message=message, request_id=request_id)
    return ErrorBody(error=error, disclaimer=DISCLAIMER).model_dump(mode="json", exclude_none=True)


def _schemas() -> dict:
    defs: dict = {}
    for model in (Prediction, ErrorBody):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[model.__name__] = schema
    return dict(sorted(defs.items()))


def openapi() -> dict:
    """The OpenAPI 3.1 document of POST /predict and GET /health."""
    from .dicom import TRANSFER_SYNTAXES  # pydicom: only for the document, not for building a body
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    errors = {str(s): {"description": d, "content": {"application/json": {"schema": ref}}} for s, d in (
        (400, "bad request or image (code says which)"), (404, "no such route"), (405, "method not allowed"),
        (406, "Accept: application/dicom for a non-DICOM input"), (413, "body over the limit"),
        (415, "unsupported media type, media type mismatch, unsupported DICOM transfer syntax"),
        (422, "image refused: size, not ultrasound, DICOM modality or frame"), (500, "unexpected server error"),
        (503, "model unavailable or service misconfigured"))}
    binary = {"schema": {"type": "string", "format": "binary"}}
    syntaxes = ", ".join(f"{uid} ({name})" for uid, (name, _) in TRANSFER_SYNTAXES.items())
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "busi-classifier", "version": "1",
                 "description": "Breast-ultrasound classifier (normal / benign / malignant). Research use only. "
                                "Not a medical device; not for diagnosis or clinical decisions."},
        "paths": {
            "/predict": {"post": {
                "summary": "Classify one image (PNG, JPEG, BMP in JSON/form, or ultrasound DICOM)",
                "parameters": [
                    {"name": "frame", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
                     "description": "DICOM: the frame to classify (default: the Representative Frame Number, "
                                    "else 1)"},
                    {"name": "include", "in": "query", "required": False,
                     "schema": {"type": "string", "enum": ["sop_instance_uid"]},
                     "description": "DICOM: echo the SOP Instance UID in dicom.sop_instance_uid"},
                    {"name": "operating_point", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "a named operating point of the model card (default: the card's)"},
                ],
                "requestBody": {"required": True, "content": {
                    **{t: binary for t in BINARY_MEDIA_TYPES if t != "multipart/form-data"},
                    "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {
                        "image": {"type": "string", "description": "base64 (a data: URL prefix is accepted)"}}}},
                    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                        "image": {"type": "string", "format": "binary"}}}},
                }, "description": f"DICOM transfer syntaxes decoded: {syntaxes}"},
                "responses": {"200": {"description": "the prediction; with Accept: application/dicom and a "
                                                     "DICOM input, a DICOM Comprehensive SR instead",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/Prediction"}},
                                          "application/dicom": binary}}, **errors},
            }},
            "/health": {"get": {"summary": "Status and model metadata",
                                "responses": {"200": {"description": "ok"}, "503": errors["503"]}}},
        },
        "components": {"schemas": _schemas()},
    }


def document() -> str:
    return json.dumps(openapi(), indent=1, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classifier.response_model",
                                     description="Write the API's OpenAPI document (from the pydantic response "
                                                 "models). Research use only, not a medical device.")
    parser.add_argument("out", type=Path, help="where to write it, e.g. docs/openapi.json")
    args = parser.parse_args(argv)
    args.out.write_text(document(), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
