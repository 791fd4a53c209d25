"""Local HTTP API on 127.0.0.1: each request becomes the REST proxy event API Gateway sends, answered by the handler.

    python -m classifier.local_api --model lambda_src/model --port 8080

Each request prints one line on stderr, ``POST /predict 200 14.2 ms`` (method, path, status, time to
answer); ``--quiet`` prints none, ``--verbose`` adds the handler's structured JSON logs and metrics on
stdout, as Lambda writes them to CloudWatch (without it, the handler logs warnings and errors only).

Bodies with a binary media type (``request_body.BINARY_MEDIA_TYPES``, the same
list the deployed API declares) are base64-encoded into the event, exactly as
API Gateway does, so ``curl --data-binary @us.png`` behaves as it will in AWS.
From Python: ``start_server(service, port=0)`` returns a running server.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .errors import PayloadTooLarge, json_body
from .lambda_context import LocalContext
from .response_model import document, error_body
from .request_body import BINARY_MEDIA_TYPES, parse_content_type
from .stderr_filter import XNNPACK_NOISE, filtered_stderr

Handler = Callable[[Mapping[str, Any], Any], dict]
STAGE = "local"
#: Seconds a connection may sit idle mid-request before it is dropped (slow clients cannot pin threads).
SOCKET_TIMEOUT_S = 30
#: RFC 9112 framing, strictly: Content-Length is digits only (no sign, no '1_0' as int() allows);
#: a chunk size is hex digits (no sign), optionally followed by chunk extensions.
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,15}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,8})[ \t]*(;[^\r\n]*)?\r?\n")
#: A method is an RFC 9110 token; any such method reaches the handler (405 on a known path).
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
#: Trailer lines after the last chunk, at most (each at most 1 KiB).
_MAX_TRAILERS = 32
#: Control characters from the request line, escaped in the log line (no terminal escapes from clients).
_CONTROL_CHARS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}

# Why http.server and not a library (h11, an ASGI server): the standard library keeps the serving venv
# at exactly lambda_src/requirements.txt (what the Lambda image has), and the only framing we accept is
# small enough to check strictly here: Content-Length or chunked, nothing else (tests/robustness).


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default listen backlog is 5: with 16+ concurrent clients the
    # kernel's accept queue overflows and connections are reset. 128 absorbs bursts.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Handler, *, max_body_bytes: int, quiet: bool = False,
                 verbose: bool = False):
        super().__init__(address, _RequestHandler)
        self.lambda_handler = handler
        self.max_body_bytes = max_body_bytes
        self.quiet = quiet  # no line per request
        self.verbose = verbose and not quiet  # also http.server's own messages (timeouts, refusals), with the client

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _RequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    protocol_version = "HTTP/1.1"
    timeout = SOCKET_TIMEOUT_S
    server_version = "busi-classifier-local"
    # Responses go out in one write with Nagle off: two small writes (headers, then body) can wait
    # for the client's delayed ACK.
    disable_nagle_algorithm = True

    def __getattr__(self, name: str):
        # http.server looks up do_<METHOD> and answers 501 when there is none. Every well-formed
        # method goes to the handler instead, which answers 405 (with Allow) or 404, as API Gateway would.
        if name.startswith("do_"):
            return self._serve if _METHOD.fullmatch(name[3:]) else self._bad_method
        raise AttributeError(name)

    def _bad_method(self) -> None:
        self.send_error(400, "the request method is not an HTTP token")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, oversized headers) in the API's JSON error shape."""
        status = HTTPStatus(code)
        self.log_error("code %d, message %s", code, message)
        self._note = message or status.phrase
        self.close_connection = True
        body = error_body(status.phrase.lower().replace(" ", "_").replace("-", "_"),
                          f"{message or status.phrase} (HTTP {code})")
        self._send(code, {"Content-Type": "application/json"}, json_body(body).encode())

    def handle_expect_100(self) -> bool:
        # Refuse an oversized body before the client sends it (curl asks first above 1 MB).
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.max_body_bytes:
            self.close_connection = True
            self._send_early(_too_large(self.server.max_body_bytes))
            return False
        return super().handle_expect_100()

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/openapi.json":
            # The contract generated from the response models (= docs/openapi.json, a test keeps them equal);
            # local only: API Gateway routes /predict and /health, not this.
            self._note = "openapi.json"
            self._send(200, {"Content-Type": "application/json"}, document().encode())
            return
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET

    def _serve(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except _EarlyResponse as early:
            self.close_connection = True  # the unread body makes the connection unusable
            self._drain()
            self._send_early(early)
            return
        except (OSError, ValueError):
            self.close_connection = True
            return  # the client went away or sent garbage mid-body; nobody to answer
        event = self._event(body, request_id)
        try:
            response = self.server.lambda_handler(event, LocalContext(aws_request_id=request_id))
            status, headers, payload = _decode_response(response)
        except Exception as exc:  # the handler never raises; if it does, answer like API Gateway would
            self.log_error("handler raised %s", type(exc).__name__)
            self._note = f"the handler raised {type(exc).__name__}"
            status, headers = 502, {"Content-Type": "application/json"}
            payload = json_body(error_body("bad_gateway", "the handler failed", request_id=request_id)).encode()
        self._send(status, headers, payload)

    def _send_early(self, early: "_EarlyResponse") -> None:
        self._note = early.body["error"]["message"]
        self._send(early.status, {"Content-Type": "application/json"}, json_body(early.body).encode())

    def _drain(self) -> None:
        """Read and drop a refused body of sane size, so the client sees our 413 rather than a reset."""
        length = self.headers.get("Content-Length", "")
        left = int(length) if length.isdigit() else 0
        if left > 4 * self.server.max_body_bytes:
            return
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        codings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if codings:
            if lengths:  # both: a request-smuggling shape (RFC 9112 6.1); refuse rather than pick one
                raise _EarlyResponse(400, "bad_request", "Transfer-Encoding and Content-Length together")
            coding = ",".join(codings).strip().lower()
            if coding != "chunked":
                raise _EarlyResponse(400, "bad_request", f"Transfer-Encoding {coding[:40]!r} is not supported; "
                                                         "send Content-Length or Transfer-Encoding: chunked")
            return self._read_chunked(limit)
        if not lengths:
            return b""
        raw_length = lengths[0].strip()
        if len(set(v.strip() for v in lengths)) > 1 or not _CONTENT_LENGTH.fullmatch(raw_length.encode("latin-1", "replace")):
            raise _EarlyResponse(400, "bad_request", f"Content-Length {raw_length[:40]!r} is not a byte count")
        length = int(raw_length)
        if length > limit:
            raise _too_large(limit)
        return self._read_exact(length)

    def _read_exact(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) != length:
            raise ValueError("body shorter than Content-Length")
        return data

    def _read_chunked(self, limit: int) -> bytes:
        """At most ``limit`` bytes are ever buffered: each chunk's size is checked before it is read."""
        body, total = bytearray(), 0
        while True:
            match = _CHUNK_SIZE.fullmatch(self.rfile.readline(1024))
            if match is None:
                raise _EarlyResponse(400, "bad_request", "malformed chunked transfer encoding (chunk size)")
            size = int(match.group(1), 16)
            if size == 0:
                for _ in range(_MAX_TRAILERS + 1):
                    line = self.rfile.readline(1024)
                    if line in (b"\r\n", b"\n"):
                        return bytes(body)
                    if not line:
                        raise ValueError("connection closed in the trailers")
                raise _EarlyResponse(400, "bad_request", f"more than {_MAX_TRAILERS} trailer lines")
            total += size
            if total > limit:
                raise _too_large(limit)
            body += self._read_exact(size)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _EarlyResponse(400, "bad_request", "malformed chunked transfer encoding (no CRLF after a chunk)")

    def _event(self, body: bytes, request_id: str) -> dict:
        """The API Gateway REST proxy (v1) event for this request."""
        return proxy_event(
            self.command, self.path, self.headers.items(), body,
            request_id=request_id, source_ip=self.client_address[0], protocol=self.request_version,
        )

    def _send(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        # end_headers() would flush the headers in a write of their own; one write for both instead.
        head = b""
        if self.request_version != "HTTP/0.9":  # HTTP/0.9 has no status line or headers
            self._headers_buffer.append(b"\r\n")
            head = b"".join(self._headers_buffer)
            self._headers_buffer = []
        self.wfile.write(head if self.command == "HEAD" else head + payload)

    def parse_request(self) -> bool:
        self._started, self._note = time.perf_counter(), None  # a new request on this connection
        return super().parse_request()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per response (send_response calls it): ``POST /predict 200 14.2 ms``, and why, for
        a refusal the server makes itself. The path without its query; never the client's address."""
        if self.server.quiet:
            return
        started, note = getattr(self, "_started", None), getattr(self, "_note", None)
        self._started = self._note = None
        took = f"{(time.perf_counter() - started) * 1000:.1f} ms" if started is not None else "- ms"
        path = urlsplit(getattr(self, "path", "") or "").path or "-"
        line = f"{self.command or '-'} {path[:200]} {int(code) if str(code).isdigit() else code} {took}"
        sys.stderr.write((line + (f" ({note})" if note else "")).translate(_CONTROL_CHARS) + "\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        """http.server's own messages (timeouts, refusals); the line per request says enough without --verbose."""
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")



def proxy_event(method: str, target: str, header_items: Iterable[tuple[str, str]], body: bytes, *,
                request_id: str, source_ip: str = "127.0.0.1", protocol: str = "HTTP/1.1") -> dict:
    """An API Gateway REST proxy (v1) event, as the deployed API sends it (bodies of the
    binary media types base64-encoded). The local server and the benchmarks both build theirs here."""
    split = urlsplit(target)
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for key, value in header_items:
        multi_headers.setdefault(key, []).append(value)
        headers[key] = value  # API Gateway keeps the last value
    query = parse_qsl(split.query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for key, value in query:
        multi_query.setdefault(key, []).append(value)
    media_type, _ = parse_content_type(_first_header(multi_headers, "content-type"))
    binary = media_type in BINARY_MEDIA_TYPES
    if not body:
        payload = None
    elif binary:
        payload = base64.b64encode(body).decode("ascii")
    else:
        payload = body.decode("utf-8", errors="replace")  # API Gateway passes text bodies as text
    return {
        "resource": split.path,
        "path": split.path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": split.path,
            "httpMethod": method,
            "path": f"/{STAGE}{split.path}",
            "stage": STAGE,
            "requestId": request_id,
            "requestTimeEpoch": int(time.time() * 1000),
            "protocol": protocol,
            "identity": {"sourceIp": source_ip, "userAgent": _first_header(multi_headers, "user-agent")},
            "accountId": "000000000000",
            "apiId": "local",
        },
        "body": payload,
        "isBase64Encoded": bool(payload) and binary,
    }


def _first_header(multi_headers: Mapping[str, list[str]], name: str) -> str | None:
    """Case-insensitive, first value: what http.server's message object returns."""
    return next((values[0] for key, values in multi_headers.items() if key.lower() == name), None)


class _EarlyResponse(Exception):
    """A request the server refuses before the handler sees it (like API Gateway's own limits)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.body = error_body(code, message)


def _too_large(limit: int) -> _EarlyResponse:
    return _EarlyResponse(413, PayloadTooLarge.code, f"the request body is over the {limit:,}-byte limit")


def _decode_response(response: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """A proxy integration response dict -> (status, headers, body bytes)."""
    status = int(response.get("statusCode", 200))
    HTTPStatus(status)  # a status code http.server cannot send is a handler bug
    headers: dict[str, str] = {}
    for key, values in (response.get("multiValueHeaders") or {}).items():
        headers[key] = ", ".join(str(v) for v in values)
    for key, value in (response.get("headers") or {}).items():
        headers[key] = str(value)
    body = response.get("body") or ""
    payload = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode("utf-8")
    return status, headers, payload


def start_server(handler: Handler, *, host: str = "127.0.0.1", port: int = 0,
                 max_body_bytes: int, quiet: bool = True, verbose: bool = False) -> LocalApiServer:
    """Start serving in a daemon thread; port 0 picks a free one (see ``.url``). Stop with ``.shutdown()``."""
    server = LocalApiServer((host, port), handler, max_body_bytes=max_body_bytes, quiet=quiet, verbose=verbose)
    threading.Thread(target=server.serve_forever, name="local-api", daemon=True).start()
    return server


def stop_server(server: LocalApiServer) -> None:
    server.shutdown()
    server.server_close()


def main(argv: list[str] | None = None) -> int:
    from .handler import create_service  # the edge: settings come from flags and the environment
    from .settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m classifier.local_api",
        description="Serve POST /predict and GET /health on a local port, exactly as the deployed API "
                    "(same proxy events, same handler). Each request prints one line on stderr: method, "
                    "path, status and time to answer, e.g. 'POST /predict 200 14.2 ms'. "
                    "Research use only, not a medical device.",
    )
    parser.add_argument("--model", help="model folder with model.tflite + model.json "
                                        "(default: $CLASSIFIER_MODEL_DIR or lambda_src/model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--threads", type=int, help="LiteRT CPU threads (default: $CLASSIFIER_NUM_THREADS or 1)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--quiet", action="store_true",
                        help="no line per request (start-up lines, warnings and errors only)")
    output.add_argument("--verbose", action="store_true",
                        help="also the handler's structured JSON logs and CloudWatch metrics on stdout, as "
                             "Lambda writes them (level: $POWERTOOLS_LOG_LEVEL or INFO), and http.server's "
                             "own messages")
    args = parser.parse_args(argv)

    overrides: dict[str, Any] = {}
    if args.model:
        overrides["model_dir"] = args.model
    if args.threads is not None:
        overrides["num_threads"] = args.threads
    try:
        settings = dataclasses.replace(Settings.from_env(), **overrides)
        if not args.verbose:  # the JSON request logs and metrics are for CloudWatch; warnings and errors stay
            settings = dataclasses.replace(settings, log_level=_at_least(settings.log_level, "WARNING"),
                                           metrics_enabled=False)
    except ValueError as exc:  # SettingsError: a bad environment variable or flag
        print(f"error: {exc}", file=sys.stderr)
        return 2
    service = create_service(settings)
    with contextlib.nullcontext() if args.verbose else filtered_stderr(XNNPACK_NOISE):
        service.warm()  # builds the interpreter: LiteRT's one XNNPACK INFO line is dropped unless --verbose
    if service.load_error:
        print(f"error: cannot serve: {service.load_error}", file=sys.stderr)
        return 2
    try:
        server = LocalApiServer((args.host, args.port), service, max_body_bytes=settings.max_body_bytes,
                                quiet=args.quiet, verbose=args.verbose)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can call the API "
              "(there is no authentication here)", file=sys.stderr)
    card = service.engine().card
    print(f"serving {card.name} {card.version} on {server.url} (POST /predict, GET /health); Ctrl-C stops",
          file=sys.stderr)
    print(f"the page to try it: {server.url}/", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _at_least(level: str, floor: str) -> str:
    """The more severe of two logging level names."""
    return level if logging.getLevelName(level) >= logging.getLevelName(floor) else floor


if __name__ == "__main__":
    sys.exit(main())
