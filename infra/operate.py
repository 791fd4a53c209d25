"""Operator commands for a deployed stack (boto3): `status` and `rollback`.

    python -m infra.operate status   --stack BusiClassifier     # make status STACK=...
    python -m infra.operate rollback --stack BusiClassifier     # make rollback STACK=...

status: the model version each version behind the `live` alias serves, the alias's traffic weights (a canary in
progress shows two), the latest CodeDeploy deployment and every alarm of the stack with its state.
rollback: while a CodeDeploy deployment is shifting the alias, stop it with automatic rollback (CodeDeploy moves
all traffic back); otherwise point the alias at the previous published version (or --to N) at once.

AWS calls, exactly: cloudformation:DescribeStacks; lambda:GetAlias, GetFunctionConfiguration,
ListVersionsByFunction, UpdateAlias; cloudwatch:DescribeAlarms; codedeploy:ListDeployments, GetDeployment,
StopDeployment. Credentials and region come from the usual AWS environment (AWS_PROFILE, AWS_REGION).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

#: Deployment states in which the alias may still be shifting.
ACTIVE = ("Created", "Queued", "InProgress", "Baking", "Ready")


class OperateError(RuntimeError):
    """The stack, alias or an earlier version is not there: a one-line message, exit 2."""


@dataclass
class Clients:
    cloudformation: Any
    lambda_: Any
    cloudwatch: Any
    codedeploy: Any

    @classmethod
    def from_session(cls, session: Any) -> "Clients":
        return cls(session.client("cloudformation"), session.client("lambda"), session.client("cloudwatch"),
                   session.client("codedeploy"))


@dataclass(frozen=True)
class Stack:
    name: str
    function: str
    alias: str
    application: str | None
    group: str | None


def find_stack(clients: Clients, name: str) -> Stack:
    try:
        (stack,) = clients.cloudformation.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:  # botocore's ClientError: the stack does not exist (or no access)
        raise OperateError(f"stack {name!r} not found: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if "FunctionName" not in outputs or "AliasName" not in outputs:
        raise OperateError(f"stack {name!r} has no FunctionName/AliasName outputs: deploy this version of the stack")
    return Stack(name, outputs["FunctionName"], outputs["AliasName"], outputs.get("DeploymentApplication"),
                 outputs.get("DeploymentGroup"))


def _model_of(clients: Clients, stack: Stack, version: str) -> str:
    description = clients.lambda_.get_function_configuration(FunctionName=stack.function, Qualifier=version).get(
        "Description", "")
    return description.removeprefix("model ") if description.startswith("model ") else description or "?"


def _deployments(clients: Clients, stack: Stack, statuses: tuple[str, ...] | None = None) -> list[dict]:
    if not stack.application or not stack.group:
        return []
    kwargs = {"applicationName": stack.application, "deploymentGroupName": stack.group}
    if statuses:
        kwargs["includeOnlyStatuses"] = list(statuses)
    ids = clients.codedeploy.list_deployments(**kwargs).get("deployments", [])
    infos = [clients.codedeploy.get_deployment(deploymentId=i)["deploymentInfo"] for i in ids]
    return sorted(infos, key=lambda d: d.get("createTime") or 0, reverse=True)


def status(clients: Clients, stack_name: str) -> dict:
    stack = find_stack(clients, stack_name)
    alias = clients.lambda_.get_alias(FunctionName=stack.function, Name=stack.alias)
    extra = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    weights = {alias["FunctionVersion"]: round(1.0 - sum(extra.values()), 4), **{v: round(w, 4) for v, w in extra.items()}}
    versions = {v: {"weight": w, "model": _model_of(clients, stack, v)} for v, w in weights.items()}
    deployments = _deployments(clients, stack)
    latest = None
    if deployments:
        d = deployments[0]
        latest = {"id": d["deploymentId"], "status": d.get("status"), "created": str(d.get("createTime", ""))}
    alarms = clients.cloudwatch.describe_alarms(AlarmNamePrefix=f"{stack.name}-").get("MetricAlarms", [])
    return {"stack": stack.name, "function": stack.function, "alias": stack.alias, "versions": versions,
            "deployment": latest, "alarms": {a["AlarmName"]: a["StateValue"] for a in alarms}}


def _previous_version(clients: Clients, stack: Stack, current: str) -> str:
    numbers, marker = [], None
    while True:
        page = clients.lambda_.list_versions_by_function(FunctionName=stack.function, **({"Marker": marker} if marker else {}))
        numbers += [int(v["Version"]) for v in page["Versions"] if v["Version"].isdigit()]
        marker = page.get("NextMarker")
        if not marker:
            break
    earlier = [n for n in numbers if n < int(current)]
    if not earlier:
        raise OperateError(f"{stack.function} has no version before {current}: nothing to roll back to")
    return str(max(earlier))


def rollback(clients: Clients, stack_name: str, to: str | None = None) -> str:
    """What was done, in one sentence."""
    stack = find_stack(clients, stack_name)
    active = _deployments(clients, stack, ACTIVE)
    if active and to is None:
        deployment = active[0]["deploymentId"]
        clients.codedeploy.stop_deployment(deploymentId=deployment, autoRollbackEnabled=True)
        return (f"stopped deployment {deployment} with rollback: CodeDeploy moves all of {stack.alias}'s traffic "
                f"back to the version it started from")
    alias = clients.lambda_.get_alias(FunctionName=stack.function, Name=stack.alias)
    current = alias["FunctionVersion"]
    target = to or _previous_version(clients, stack, current)
    if target == current and not (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights"):
        raise OperateError(f"{stack.alias} already serves version {target}")
    clients.lambda_.update_alias(FunctionName=stack.function, Name=stack.alias, FunctionVersion=target,
                                 RoutingConfig={"AdditionalVersionWeights": {}})
    return (f"{stack.alias} now serves version {target} (model {_model_of(clients, stack, target)}), was {current}. "
            f"The stack still names the newer version: deploy the commit of the model you want to keep, or the "
            f"next `make deploy` shifts traffic from {target} to what that commit builds")


def _print_status(doc: dict) -> None:
    print(f"stack {doc['stack']}: function {doc['function']}, alias {doc['alias']}")
    for version, info in doc["versions"].items():
        print(f"  version {version:>4}  {info['weight']:>6.1%} of traffic  model {info['model']}")
    d = doc["deployment"]
    print(f"  latest deployment: {d['id']} {d['status']} ({d['created']})" if d else "  no CodeDeploy deployment yet")
    for name, state in sorted(doc["alarms"].items()):
        print(f"  alarm {state:<17} {name}")
    print("Research use only. Not a medical device.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.operate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("status", "model version per alias version, traffic weights, latest deployment, alarms"),
                       ("rollback", "stop a shift in progress with rollback, else point the alias at the previous version")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--stack", required=True, help="CloudFormation stack name (cdk.json stackName)")
        p.add_argument("--region", default=None, help="AWS region (default: the AWS environment's)")
        p.add_argument("--profile", default=None, help="AWS profile (default: the AWS environment's)")
        if name == "rollback":
            p.add_argument("--to", default=None, help="version number to point the alias at (default: the one before)")
    return parser


def main(argv: list[str] | None = None, clients: Clients | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if clients is None:
            import boto3

            clients = Clients.from_session(boto3.Session(profile_name=args.profile, region_name=args.region))
        if args.command == "status":
            _print_status(status(clients, args.stack))
        else:
            print(rollback(clients, args.stack, to=args.to))
    except OperateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
