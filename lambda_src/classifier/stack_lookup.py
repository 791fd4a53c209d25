"""Find a deployed stack's API URL, API key and batch resources through boto3 (CloudFormation outputs,
then API Gateway for the key's value), with boto3's usual profile and region resolution.

boto3 is imported only here, and only when ``--stack`` is used: the client stays stdlib-only otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class StackLookupError(Exception):
    """The stack or an output it should have is not there, or AWS refused: the message says which."""


@dataclasses.dataclass(frozen=True)
class StackInfo:
    name: str
    region: str | None
    outputs: dict[str, str]
    api_key: str | None = None

    @property
    def api_url(self) -> str:
        url = self.outputs.get("ApiUrl")
        if not url:
            raise StackLookupError(f"stack {self.name} has no ApiUrl output: is it this project's stack?")
        return url

    def require(self, key: str, hint: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise StackLookupError(f"stack {self.name} has no {key} output: {hint}")
        return value


def session(profile: str | None = None, region: str | None = None):
    try:
        import boto3
    except ImportError as exc:  # the serving venv has no boto3
        raise StackLookupError("--stack needs boto3: pip install boto3 (the development venv has it)") from exc
    try:
        return boto3.Session(profile_name=profile, region_name=region)
    except Exception as exc:  # noqa: BLE001 - ProfileNotFound and friends
        raise StackLookupError(f"AWS session: {exc}") from exc


def _aws_message(exc: Exception) -> str:
    err = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
    return f"{err.get('Code')}: {err.get('Message')}" if err else str(exc)


def lookup(stack_name: str, *, profile: str | None = None, region: str | None = None, boto_session=None,
           with_key: bool = True) -> StackInfo:
    """The stack's outputs and, when it has an ApiKeyId output, the key's value."""
    sess = boto_session or session(profile, region)
    try:
        cfn = sess.client("cloudformation")
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except Exception as exc:  # noqa: BLE001 - ClientError (no such stack, no credentials), NoRegionError
        raise StackLookupError(f"cannot read stack {stack_name!r}: {_aws_message(exc)}") from exc
    if not stacks:
        raise StackLookupError(f"no stack named {stack_name!r}")
    stack = stacks[0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}
    api_key = None
    key_id = outputs.get("ApiKeyId")
    if with_key and key_id:
        try:
            api_key = sess.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"]
        except Exception as exc:  # noqa: BLE001
            raise StackLookupError(f"cannot read API key {key_id} of stack {stack_name}: {_aws_message(exc)}") from exc
    return StackInfo(name=stack_name, region=getattr(sess, "region_name", None), outputs=outputs, api_key=api_key)


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise StackLookupError(f"{url!r} is not an s3://bucket/prefix/ URL")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise StackLookupError(f"{url!r} names no bucket")
    return bucket, prefix


def start_batch(info: StackInfo, s3_url: str, *, boto_session, name: str | None = None) -> dict[str, Any]:
    """Start the batch state machine on the keys under ``s3_url`` (which must be in the stack's input
    bucket, under its input prefix: the only place the state machine may read)."""
    import json

    arn = info.require("BatchStateMachineArn", "deploy with -c batch=true")
    bucket = info.require("BatchInputBucket", "deploy with -c batch=true")
    allowed = info.outputs.get("BatchInputPrefix", "")
    got_bucket, prefix = parse_s3_url(s3_url)
    if got_bucket != bucket:
        raise StackLookupError(f"the stack's batch reads s3://{bucket}/{allowed}, not bucket {got_bucket}: "
                               f"upload there (aws s3 sync DIR s3://{bucket}/{allowed}NAME/)")
    if not prefix.startswith(allowed):
        raise StackLookupError(f"the prefix must start with {allowed!r} (the only prefix the batch may read)")
    args = {"stateMachineArn": arn, "input": json.dumps({"prefix": prefix})}
    if name:
        args["name"] = name
    try:
        started = boto_session.client("stepfunctions").start_execution(**args)
    except Exception as exc:  # noqa: BLE001
        raise StackLookupError(f"cannot start {arn}: {_aws_message(exc)}") from exc
    return {"executionArn": started["executionArn"], "prefix": prefix}


def wait_batch(execution_arn: str, *, boto_session, poll_s: float = 10.0, timeout_s: float = 6 * 3600,
               sleep=None, progress=None) -> dict[str, Any]:
    """Poll the execution until it ends; its description (status, output, error, cause)."""
    import time

    sleep = sleep or time.sleep
    sfn = boto_session.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while True:
        desc = sfn.describe_execution(executionArn=execution_arn)
        if desc["status"] != "RUNNING":
            return desc
        if progress:
            progress(desc)
        if time.monotonic() > deadline:
            raise StackLookupError(f"{execution_arn} still running after {timeout_s:.0f} s")
        sleep(poll_s)


def result_objects(desc: dict[str, Any], *, boto_session) -> list[str]:
    """s3:// URLs of what the map run's result writer wrote (manifest.json, SUCCEEDED_*/FAILED_* files),
    from the finished execution's output (ResultWriterDetails names the manifest)."""
    import json
    import posixpath

    try:
        details = json.loads(desc.get("output") or "{}").get("ResultWriterDetails") or {}
    except ValueError:
        details = {}
    bucket, manifest = details.get("Bucket"), details.get("Key")
    if not bucket or not manifest:
        return []
    folder = posixpath.dirname(manifest) + "/"
    s3 = boto_session.client("s3")
    urls = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        urls += [f"s3://{bucket}/{obj['Key']}" for obj in page.get("Contents") or []]
    return sorted(urls)
