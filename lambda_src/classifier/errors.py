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


class MalformedRequest(ClientError):
    """An event that is not an API Gateway REST proxy request (not an object, no method or path)."""

    status, code = 400, "malformed_request"


class NotFound(ClientError):
    status, code = 404, "not_found"


class MethodNotAllowed(ClientError):
    status, code = 405, "method_not_allowed"


class PayloadTooLarge(ClientError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ClientError):
    status, code = 415, "unsupported_media_type"


class MediaTypeMismatch(ClientError):
    """The request declares one image format (Content-Type, data: URL, form part) and the bytes are another."""

    status, code = 415, "media_type_mismatch"


class ImageTooSmall(ClientError):
    status, code = 422, "image_too_small"


class BadImageDimensions(ClientError):
    """Absurd aspect ratio or more pixels than the decompression-bomb limit."""

    status, code = 422, "bad_image_dimensions"


class NotUltrasound(ClientError):
    """The model's input check (model.json ``input_check``) finds the image unlike any breast-ultrasound frame."""

    status, code = 422, "not_ultrasound"


class ModelLoadError(RuntimeError):
    """The bundled model is missing, corrupt or does not match this code: an operator error, not a client one."""
