"""What the stack hands the handler matches what the handler reads (tests may import both; infra may not)."""

from __future__ import annotations

from classifier import request_body, settings
from infra.api import BINARY_MEDIA_TYPES
from infra.config import MAX_RAW_BODY_BYTES, InfraConfig
from tests.infra.conftest import Synthesized


def test_binary_media_types_are_the_handlers():
    assert tuple(BINARY_MEDIA_TYPES) == tuple(request_body.BINARY_MEDIA_TYPES)


def test_environment_names_and_defaults_are_the_handlers(default_stack: Synthesized):
    (function,) = [
        f for name, f in default_stack.resources("AWS::Lambda::Function").items() if name.startswith("Classifier")
    ]
    env = function["Properties"]["Environment"]["Variables"]
    read_by_handler = {
        settings.ENV_NUM_THREADS,
        settings.ENV_MAX_BODY_BYTES,
        settings.ENV_SERVICE_NAME,
        settings.ENV_METRICS_NAMESPACE,
        settings.ENV_LOG_LEVEL,
    }
    assert set(env) == read_by_handler
    # Every value the stack sets must be one the handler accepts.
    parsed = settings.Settings.from_env(env)
    assert parsed.max_body_bytes == settings.DEFAULT_MAX_BODY_BYTES == InfraConfig().max_body_bytes
    assert parsed.service_name == InfraConfig().service_name
    assert MAX_RAW_BODY_BYTES <= settings.HARD_MAX_BODY_BYTES


def test_cors_origins_reach_the_handler_in_a_form_it_accepts(variant_stack: Synthesized):
    (function,) = [
        f for name, f in variant_stack.resources("AWS::Lambda::Function").items() if name.startswith("Classifier")
    ]
    env = function["Properties"]["Environment"]["Variables"]
    assert settings.Settings.from_env(env).cors_origins == ("https://research.example.org",)
