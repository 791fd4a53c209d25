"""The typed config: defaults match cdk.json, `-c key=value` strings parse, bad values fail clearly."""

from __future__ import annotations

import dataclasses

import pytest

from infra.config import ConfigError, InfraConfig, context_key
from tests.infra.conftest import cdk_json_context


def test_cdk_json_lists_every_setting_with_its_default():
    # cdk.json is where users look for the knobs: it must name all of them, with the real defaults.
    context = cdk_json_context()
    defaults = InfraConfig()
    for f in dataclasses.fields(InfraConfig):
        key = context_key(f.name)
        assert key in context, f"cdk.json context lacks {key!r}"
    assert InfraConfig.from_context(context.get) == defaults


def test_defaults_are_the_documented_ones():
    config = InfraConfig()
    assert config.memory_mb == 2048
    assert config.timeout_seconds == 30
    assert config.architecture == "x86_64"
    assert config.api_key is True
    assert config.removal_policy == "destroy"
    assert config.reserved_concurrency is None
    assert config.alarm_email is None
    # 2048 MB buys ~1.16 vCPU: one LiteRT thread; 3538 MB and up buys two.
    assert config.threads == 1
    assert InfraConfig(memory_mb=3538).threads == 2
    assert InfraConfig(memory_mb=10240, num_threads=3).threads == 3


def test_command_line_strings_are_parsed():
    # `npx cdk deploy -c memoryMb=3008 -c apiKey=false ...` hands every value over as a string.
    raw = {
        "memoryMb": "3008",
        "apiKey": "false",
        "architecture": "ARM64",
        "corsOrigins": "https://a.example.org, https://b.example.org",
        "reservedConcurrency": "null",
        "alarmEmail": "ops@example.org",
        "throttleRateLimit": "2.5",
        "logLevel": "debug",
    }
    config = InfraConfig.from_context(raw.get)
    assert config.memory_mb == 3008
    assert config.api_key is False
    assert config.architecture == "arm64"
    assert config.cors_origins == ("https://a.example.org", "https://b.example.org")
    assert config.reserved_concurrency is None
    assert config.alarm_email == "ops@example.org"
    assert config.throttle_rate_limit == 2.5
    assert config.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("memoryMb", "lots", "'memoryMb' must be an integer"),
        ("memoryMb", 64, "'memoryMb' must be 128..10240"),
        ("memoryMb", 2048.5, "'memoryMb' must be an integer"),
        ("architecture", "sparc", "'architecture' must be one of x86_64, arm64"),
        ("apiKey", "maybe", "'apiKey' must be true or false"),
        ("removalPolicy", "snapshot", "'removalPolicy' must be one of destroy, retain"),
        ("logRetentionDays", 45, "'logRetentionDays' must be one of"),
        ("corsOrigins", ["https://example.org/app"], "'corsOrigins' each origin"),
        ("alarmEmail", "not-an-address", "'alarmEmail' must be an e-mail address"),
        ("maxBodyBytes", 10_000_000, "'maxBodyBytes' must be 1024.."),
        ("reservedConcurrency", 0, "'reservedConcurrency' must be >= 1"),
        ("stackName", "1bad name", "'stackName' must start with a letter"),
        ("tags", ["not", "a", "map"], "'tags' must be an object"),
    ],
)
def test_bad_values_name_the_key_and_the_rule(key, value, fragment):
    with pytest.raises(ConfigError) as err:
        InfraConfig.from_context({key: value}.get)
    assert fragment in str(err.value)
