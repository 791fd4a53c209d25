"""settings: the typed serving configuration read from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.settings import DEFAULT_MAX_BODY_BYTES, Settings, SettingsError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_point_at_the_bundled_model_and_lambda_limits():
    s = Settings.from_env({})
    assert s.model_dir == REPO / "lambda_src" / "model"
    assert (s.num_threads, s.max_body_bytes, s.log_level, s.metrics_enabled) == (1, 4_500_000, "INFO", True)
    assert DEFAULT_MAX_BODY_BYTES * 4 / 3 < 6_291_456  # still under Lambda's payload limit once base64-encoded


def test_environment_overrides():
    s = Settings.from_env({
        "CLASSIFIER_MODEL_DIR": "/opt/m", "CLASSIFIER_NUM_THREADS": " 2 ", "CLASSIFIER_MAX_BODY_BYTES": "1_000_000",
        "POWERTOOLS_SERVICE_NAME": "svc", "POWERTOOLS_METRICS_NAMESPACE": "Ns", "POWERTOOLS_LOG_LEVEL": "debug",
        "POWERTOOLS_METRICS_DISABLED": "true", "CLASSIFIER_CORS_ORIGINS": "https://a.example, http://b:8000",
    })
    assert s == Settings(model_dir=Path("/opt/m"), num_threads=2, max_body_bytes=1_000_000, service_name="svc",
                         metrics_namespace="Ns", log_level="DEBUG", metrics_enabled=False,
                         cors_origins=("https://a.example", "http://b:8000"))


@pytest.mark.parametrize("env, fragment", [
    ({"CLASSIFIER_NUM_THREADS": "two"}, "CLASSIFIER_NUM_THREADS must be an integer"),
    ({"CLASSIFIER_NUM_THREADS": "0"}, "between 1 and 64"),
    ({"CLASSIFIER_MAX_BODY_BYTES": "7000000"}, "6 MB payload limit"),
    ({"CLASSIFIER_MAX_BODY_BYTES": "-5"}, "CLASSIFIER_MAX_BODY_BYTES"),
    ({"POWERTOOLS_LOG_LEVEL": "LOUD"}, "POWERTOOLS_LOG_LEVEL"),
    ({"POWERTOOLS_METRICS_DISABLED": "maybe"}, "true or false"),
    ({"CLASSIFIER_CORS_ORIGINS": "https://a/path"}, "CLASSIFIER_CORS_ORIGINS"),
])
def test_bad_values_name_the_variable(env, fragment):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert fragment in str(info.value)


def test_keyword_only():
    with pytest.raises(TypeError):
        Settings("/tmp/model")  # type: ignore[misc]


def test_log_predictions_is_off_unless_set():
    assert Settings.from_env({}).log_predictions is False
    assert Settings.from_env({"CLASSIFIER_LOG_PREDICTIONS": "true"}).log_predictions is True
    with pytest.raises(SettingsError, match="CLASSIFIER_LOG_PREDICTIONS"):
        Settings.from_env({"CLASSIFIER_LOG_PREDICTIONS": "maybe"})
