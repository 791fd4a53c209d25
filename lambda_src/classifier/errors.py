"""Errors a client can cause, each with its HTTP status and stable error code, in one table."""

from __future__ import annotations

import json
from typing import Any


def json_body(body: Any) -> str:
    """The wire format of every JSON body the API sends (the handler's responses and errors, the local API's own
    refusals): one line, ending with a newline, so `curl` output ends cleanly."""
    return json.dumps(body) + "\n"


class ClientError(Exception):
    """An error caused by the request. Subclasses set ``status`` and ``code``."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


class MalformedBody(ClientError):
    status, code = 400, "malformed_body"


class InvalidBase64(ClientError):
    status, code = 400, "invalid_base64"


class NotAnImage(ClientError):
    status, code = 400, "not_an_image"


class CorruptImage(ClientError):
    status, code = 400, "corrupt_image"


class UnsupportedImage(ClientError):
    """A PNG/JPEG/BMP using something this service does not decode, to keep every decode bounded:
    more progressive scans or segments than the limits, run-length-encoded BMP."""

    status, code = 400, "unsupported_image"


class NotDicom(ClientError):
    """Declared DICOM (Content-Type application/dicom) but the bytes are no DICOM Part 10 file."""

    status, code = 400, "not_dicom"


class InvalidParameter(ClientError):
    """A query parameter with a value it cannot take (``frame`` not a positive integer, an unknown ``include``)."""

    status, code = 400, "invalid_parameter"


class UnknownOperatingPoint(ClientError):
    """?operating_point= names none of the model's operating points (model.json operating_points)."""

    status, code = 400, "unknown_operating_point"


class MalformedRequest(ClientError):
    """An event that is not an API Gateway REST proxy request (not an object, no method or path)."""

    status, code = 400, "malformed_request"


class NotFound(ClientError):
    status, code = 404, "not_found"


class MethodNotAllowed(ClientError):
    status, code = 405, "method_not_allowed"


class NotAcceptable(ClientError):
    """``Accept: application/dicom`` (a DICOM SR result) for an input that is not DICOM: the SR references it."""

    status, code = 406, "not_acceptable"


class PayloadTooLarge(ClientError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ClientError):
    status, code = 415, "unsupported_media_type"


class MediaTypeMismatch(ClientError):
    """The request declares one image format (Content-Type, data: URL, form part) and the bytes are another."""

    status, code = 415, "media_type_mismatch"


class UnsupportedTransferSyntax(ClientError):
    """A DICOM file in a transfer syntax ``dicom.TRANSFER_SYNTAXES`` does not list (JPEG 2000, JPEG-LS, ...)."""

    status, code = 415, "unsupported_transfer_syntax"


class UnsupportedModality(ClientError):
    """A DICOM file of another modality than ultrasound (US)."""

    status, code = 422, "unsupported_modality"


class FrameOutOfRange(ClientError):
    """``?frame=N`` beyond the file's frames (a PNG/JPEG/BMP has one)."""

    status, code = 422, "frame_out_of_range"


class ImageTooSmall(ClientError):
    status, code = 422, "image_too_small"


class BadImageDimensions(ClientError):
    """Absurd aspect ratio or more pixels than the decompression-bomb limit."""

    status, code = 422, "bad_image_dimensions"


class NotUltrasound(ClientError):
    """The model's input check (model.json ``input_check``) finds the image unlike any breast-ultrasound frame."""

    status, code = 422, "not_ultrasound"

    def __init__(self, message: str, *, check: Any = None):
        super().__init__(message)
        self.check = check  # the CheckResult that refused the image (its score, for audits and drift)


class ModelLoadError(RuntimeError):
    """The bundled model is missing, corrupt or does not match this code: an operator error, not a client one."""
