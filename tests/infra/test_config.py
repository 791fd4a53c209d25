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
    assert config.memory_mb == 1769  # the bench's cost table: one full vCPU
    assert config.timeout_seconds == 10  # below API Gateway's 29 s integration timeout
    assert config.architecture == "x86_64"
    assert config.api_key is True
    assert config.removal_policy == "destroy"
    assert config.reserved_concurrency == 10
    assert config.alarm_email is None
    # The cheap profile: no KMS key, VPC or WAF unless asked for.
    assert config.compliance == "none" and not config.hipaa
    assert config.waf is None and not config.waf_enabled
    assert InfraConfig(compliance="hipaa").waf_enabled
    assert InfraConfig(waf=True).waf_enabled and not InfraConfig(waf=True).hipaa
    # 1769 MB buys one vCPU: one LiteRT thread; 3538 MB and up buys two.
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
        "waf": "true",
        "wafRateLimit": "300",
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
    assert config.waf is True and config.waf_rate_limit == 300 and config.compliance == "none"
    assert InfraConfig.from_context({"compliance": " HIPAA "}.get).compliance == "hipaa"
    assert InfraConfig.from_context({"waf": "null"}.get).waf is None


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
        ("timeoutSeconds", 29, "'timeoutSeconds' must be 3..28, below API Gateway's 29 s"),
        ("timeoutSeconds", 30, "'timeoutSeconds' must be 3..28"),
        ("compliance", "pci", "'compliance' must be one of none, hipaa"),
        ("waf", "sometimes", "'waf' must be true or false"),
        ("wafRateLimit", 5, "'wafRateLimit' must be 10.."),
        ("stackName", "1bad name", "'stackName' must start with a letter"),
        ("tags", ["not", "a", "map"], "'tags' must be an object"),
    ],
)
def test_bad_values_name_the_key_and_the_rule(key, value, fragment):
    with pytest.raises(ConfigError) as err:
        InfraConfig.from_context({key: value}.get)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"compliance": "hipaa", "reservedConcurrency": "null"}, "'reservedConcurrency' must be set with compliance=hipaa"),
        ({"compliance": "hipaa", "waf": "false"}, "'waf' cannot be false with compliance=hipaa"),
    ],
)
def test_the_hipaa_profile_refuses_to_drop_its_controls(context, fragment):
    with pytest.raises(ConfigError) as err:
        InfraConfig.from_context(context.get)
    assert fragment in str(err.value)
