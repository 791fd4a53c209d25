"""-c training=true: the SageMaker training image asset, bucket and execution role (CDK assertions on the synthesized
template, cdk-nag AwsSolutions and, with compliance=hipaa, HIPAA Security; cfn-lint); and the default template is
exactly what it is without the training setting."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import ConfigError, InfraConfig
from infra.training import CHECKPOINTS, DOCKERFILE, JOB_LOG_GROUP, dockerignore_patterns
from tests.infra.conftest import REPO, Synthesized, synthesize

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def training_stack(tmp_path_factory, lambda_src_copy) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk_training"), {"lambdaSrc": str(lambda_src_copy), "training": "true"})


@pytest.fixture(scope="module")
def hipaa_training_stack(tmp_path_factory, lambda_src_copy) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("cdk_training_hipaa"),
                      {"lambdaSrc": str(lambda_src_copy), "training": True, "compliance": "hipaa"})


def _training(stack: Synthesized, cfn_type: str) -> dict[str, dict]:
    return {k: v for k, v in stack.resources(cfn_type).items() if k.startswith("Training")}


def _bucket(stack: Synthesized) -> dict:
    (bucket,) = [v for k, v in _training(stack, "AWS::S3::Bucket").items() if k.startswith("TrainingBucket")]
    return bucket["Properties"]


def _role_statements(stack: Synthesized) -> list[dict]:
    """The execution role's permissions, whether inline (default) or a managed policy (compliance=hipaa)."""
    docs = [p["Properties"]["PolicyDocument"] for p in _training(stack, "AWS::IAM::Policy").values()]
    docs += [p["Properties"]["PolicyDocument"] for p in _training(stack, "AWS::IAM::ManagedPolicy").values()]
    assert len(docs) == 1, docs
    return docs[0]["Statement"]


def _nag(stack: Synthesized, pack: str) -> dict:
    (report,) = [r for r in stack.report["pluginReports"] if r["pluginName"] == pack]
    return report


# --- off by default --------------------------------------------------------------------------------------


def test_default_template_is_unchanged_by_the_training_code(default_stack: Synthesized, tmp_path, lambda_src_copy):
    explicit_off = synthesize(tmp_path / "off", {"lambdaSrc": str(lambda_src_copy), "training": False})
    assert explicit_off.template_path.read_bytes() == default_stack.template_path.read_bytes()
    assert not [k for k in default_stack.template["Resources"] if k.startswith("Training")]
    assert not [k for k in default_stack.template["Outputs"] if k.startswith("Training")]
    assert not [a for a in default_stack.assets.get("dockerImages", {}).values() if "dockerFile" in a["source"]]
    assert InfraConfig().training is False


def test_bad_training_settings_are_refused():
    with pytest.raises(ConfigError, match="trainingCheckpointExpiryDays"):
        InfraConfig(training=True, training_checkpoint_expiry_days=0)
    with pytest.raises(ConfigError, match="'training'"):
        InfraConfig.from_context({"training": "maybe"}.get)


# --- the image ----------------------------------------------------------------------------------------------


def test_training_image_asset_is_built_from_the_training_dockerfile(training_stack: Synthesized):
    (image,) = [a for a in training_stack.assets["dockerImages"].values()
                if a["source"].get("dockerFile") == DOCKERFILE]
    assert image["source"]["platform"] == "linux/amd64"
    staged = training_stack.outdir / image["source"]["directory"]
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    # exactly what the Dockerfile copies: no tests, venvs, runs, data, node_modules or the bundled model
    assert {DOCKERFILE, "model_training/sagemaker_entry.py", "model_training/requirements.txt",
            "lambda_src/requirements.txt", "lambda_src/classifier/preprocessing.py"} <= files
    assert {f.split("/")[0] for f in files} == {"model_training", "lambda_src"}
    assert not [f for f in files if f.startswith("lambda_src/model/") or "__pycache__" in f]
    # every COPY source of the Dockerfile is in the staged context
    dockerfile = (REPO / DOCKERFILE).read_text()
    for source in re.findall(r"^COPY\s+(\S+)\s", dockerfile, flags=re.M):
        assert any(f == source or f.startswith(source) for f in files), source
    uri = training_stack.template["Outputs"]["TrainingImageUri"]["Value"]
    assert image["source"]["directory"].removeprefix("asset.") in json.dumps(uri)


def test_the_dockerfile_installs_the_pinned_tensorflow_as_its_gpu_build_and_lints_clean():
    dockerfile = (REPO / DOCKERFILE).read_text()
    pin = re.search(r"^tensorflow-cpu==(\S+)$", (REPO / "model_training/requirements.txt").read_text(), re.M)
    assert pin, "model_training/requirements.txt pins tensorflow-cpu"
    # the RUN line reads that pin at build time (no second copy of the version to drift)
    assert "sed -n 's/^tensorflow-cpu==//p' model_training/requirements.txt" in dockerfile
    assert '"tensorflow[and-cuda]==${tf_version}"' in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "model_training.sagemaker_entry"]' in dockerfile
    result = subprocess.run([str(VENV_BIN / "hadolint"), DOCKERFILE], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "!model_training/" in dockerignore_patterns()


# --- the bucket -------------------------------------------------------------------------------------------------


def test_bucket_is_private_tls_only_logged_and_expires_checkpoints(training_stack: Synthesized):
    bucket = _bucket(training_stack)
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse == {"SSEAlgorithm": "AES256"}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "training-bucket/"
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-checkpoints"]["Prefix"] == CHECKPOINTS and rules["expire-checkpoints"]["ExpirationInDays"] == 14
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    policies = [p["Properties"]["PolicyDocument"]["Statement"]
                for p in training_stack.resources("AWS::S3::BucketPolicy").values()]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for statements in policies for s in statements)
    retained = [v for k, v in _training(training_stack, "AWS::S3::Bucket").items()]
    assert all(b["DeletionPolicy"] == "Retain" for b in retained)


def test_hipaa_bucket_uses_the_stack_key_and_is_versioned(hipaa_training_stack: Synthesized):
    bucket = _bucket(hipaa_training_stack)
    (key_id,) = hipaa_training_stack.resources("AWS::KMS::Key").keys()
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms",
                                                     "KMSMasterKeyID": {"Fn::GetAtt": [key_id, "Arn"]}}
    assert rule["BucketKeyEnabled"] is True
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert hipaa_training_stack.template["Outputs"]["TrainingKmsKeyArn"]["Value"] == {"Fn::GetAtt": [key_id, "Arn"]}


# --- the role -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["training_stack", "hipaa_training_stack"])
def test_role_is_sagemakers_and_scoped_to_the_bucket_prefixes_image_and_job_logs(request, which):
    stack: Synthesized = request.getfixturevalue(which)
    (role,) = _training(stack, "AWS::IAM::Role").values()
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in role["Properties"]  # no AWS managed policy (AmazonSageMakerFullAccess)
    statements = _role_statements(stack)
    by_sid = {s.get("Sid"): s for s in statements}
    text = json.dumps(by_sid["ReadDataAndWeights"]["Resource"])
    assert "/data/*" in text and "/weights/*" in text and by_sid["ReadDataAndWeights"]["Action"] == "s3:GetObject"
    assert "/checkpoints/*" in json.dumps(by_sid["Checkpoints"]["Resource"])
    assert "/output/*" in json.dumps(by_sid["Output"]["Resource"]) and "s3:GetObject" not in by_sid["Output"]["Action"]
    assert JOB_LOG_GROUP in json.dumps(by_sid["TrainingJobLogs"]["Resource"])
    # Resource "*" only where AWS has no resource-level permission, and the metrics only in the jobs' namespace
    for s in statements:
        if s["Resource"] == "*":
            actions = {s["Action"]} if isinstance(s["Action"], str) else set(s["Action"])
            assert actions <= {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}, s
    assert by_sid["TrainingJobMetrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": JOB_LOG_GROUP}}
    pulls = [s for s in statements if "ecr:BatchGetImage" in s["Action"]]
    assert len(pulls) == 1 and "container-assets" in json.dumps(pulls[0]["Resource"])  # that one repository
    outputs = stack.template["Outputs"]
    assert {"TrainingBucketName", "TrainingRoleArn", "TrainingImageUri"} <= set(outputs)


def test_hipaa_role_uses_the_key_with_named_actions_only(hipaa_training_stack: Synthesized):
    by_sid = {s.get("Sid"): s for s in _role_statements(hipaa_training_stack)}
    assert set(by_sid["UseTheStackKey"]["Action"]) == {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey",
                                                       "kms:DescribeKey"}
    assert by_sid["VolumeEncryptionGrant"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert not _training(hipaa_training_stack, "AWS::IAM::Policy")  # inline policies became managed (HIPAA)


# --- cdk-nag and cfn-lint ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which, packs", [("training_stack", ["AwsSolutions"]),
                                          ("hipaa_training_stack", ["AwsSolutions", "HIPAA.Security"])])
def test_cdk_nag_has_no_unacknowledged_finding_and_explains_the_training_ones(request, which, packs):
    stack: Synthesized = request.getfixturevalue(which)
    for pack in packs:
        report = _nag(stack, pack)
        assert report["conclusion"] == "success" and report["violations"] == [], report["violations"]
    training = [s for pack in packs for s in _nag(stack, pack)["suppressedViolations"]
                if any("/Training/" in v["constructPath"] for v in s["violatingConstructs"])]
    rules = {s["ruleName"] for s in training}
    assert {r for r in rules if r.startswith("AwsSolutions-IAM5")} == {
        f"AwsSolutions-IAM5[Resource::<{_bucket_id(stack)}.Arn>/{p}*]" for p in ("data/", "weights/", "checkpoints/", "output/")
    } | {"AwsSolutions-IAM5[Resource::*]",
         f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:{JOB_LOG_GROUP}:*]"}
    if "HIPAA.Security" in packs:
        assert {r for r in rules if r.startswith("HIPAA")} == {"HIPAA.Security-S3BucketReplicationEnabled",
                                                                "HIPAA.Security-S3DefaultEncryptionKMS"}
    for s in training:
        assert len(s["reason"]) >= 80, s


def _bucket_id(stack: Synthesized) -> str:
    (name,) = [k for k in _training(stack, "AWS::S3::Bucket") if k.startswith("TrainingBucket")]
    return name


@pytest.mark.parametrize("which", ["training_stack", "hipaa_training_stack"])
def test_cfn_lint_finds_nothing_in_the_training_templates(request, which):
    stack: Synthesized = request.getfixturevalue(which)
    result = subprocess.run([str(VENV_BIN / "cfn-lint"), str(stack.template_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfiles_requirement_step_swaps_only_tensorflow_cpu(tmp_path):
    """The RUN step's shell, up to its pip install, on copies of the two requirement files (no Docker here)."""
    dockerfile = (REPO / DOCKERFILE).read_text().replace("\\\n", " ")
    (run,) = [line for line in dockerfile.splitlines() if line.startswith("RUN ") and "tensorflow-cpu" in line]
    steps = [s.strip() for s in run[4:].split("&&")]
    before_pip = steps[:[i for i, s in enumerate(steps) if s.startswith("pip install")][0]]
    for name in ("model_training/requirements.txt", "lambda_src/requirements.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text((REPO / name).read_text())
    script = " && ".join(before_pip + ['echo "$tf_version"'])
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    pins = (REPO / "model_training/requirements.txt").read_text().splitlines()
    assert result.stdout.strip() == next(p.split("==")[1] for p in pins if p.startswith("tensorflow-cpu=="))
    gpu = (tmp_path / "model_training/requirements-gpu.txt").read_text().splitlines()
    assert gpu == [p for p in pins if not p.startswith("tensorflow-cpu==")]
    assert "-r ../lambda_src/requirements.txt" in gpu  # so the image gets the serving pins too
