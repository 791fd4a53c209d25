"""/health is answered while a prediction holds the service (no head-of-line blocking in the local API)."""

from __future__ import annotations

import http.client
import json
import threading

from classifier.handler import create_service
from classifier.lambda_context import LocalContext
from classifier.local_api import start_server, stop_server
from classifier.settings import Settings
from tests.serving.events import image_bytes, predict_raw, rest_event


def test_health_does_not_wait_for_a_prediction_in_flight(tiny_model_dir):
    service = create_service(Settings(model_dir=tiny_model_dir, metrics_enabled=False))
    service.warm()
    server = start_server(service, max_body_bytes=1_000_000)
    host, port = server.server_address[:2]
    try:
        expected = json.loads(service(rest_event("GET", "/health"),
                                      LocalContext())["body"])
        assert service._invoke_lock.acquire(timeout=5)  # what a slow prediction holds
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/health")
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read()) == expected
            conn.close()
            # A prediction still waits its turn (Powertools' per-request state is not thread-safe).
            done = threading.Event()
            threading.Thread(target=lambda: (service(predict_raw(image_bytes(60, 50)), LocalContext()), done.set()),
                             daemon=True).start()
            assert not done.wait(0.3)
        finally:
            service._invoke_lock.release()
        assert done.wait(10)
    finally:
        stop_server(server)
