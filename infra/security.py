"""What the compliance=hipaa profile adds: a customer-managed KMS key, an isolated VPC, managed instead of inline policies.

None of it exists in the default profile (see docs/security.md for what each piece answers and costs).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import InfraConfig


class EncryptionKey(Construct):
    """One customer-managed key, rotated yearly, for the log groups, the ECR repository and the alarm topic.

    The key policy keeps CDK's default (the account's IAM policies decide who may use it) and adds the two
    services that encrypt with it on their own behalf: CloudWatch Logs (only for log groups of this account
    and region, bound by the encryption context) and CloudWatch alarms publishing to the encrypted topic.
    ECR needs no statement: it creates a grant on the key when the repository is created.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"{config.stack_name}: log groups, image repository and alarm topic",
            enable_key_rotation=True,
            # With removalPolicy=destroy the log groups and the repository go with the stack, and the key is
            # scheduled for deletion (30 days' wait, cancellable); with retain it stays to read what is kept.
            removal_policy=RemovalPolicy.DESTROY if config.destroy_on_delete else RemovalPolicy.RETAIN,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": Stack.of(self).format_arn(
                            service="logs", resource="log-group", resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsToTheEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )



class IsolatedNetwork(Construct):
    """A VPC with isolated subnets only (no internet gateway, no NAT: no route out of AWS) in two AZs,
    interface endpoints for exactly what the function calls, flow logs, the default security group closed.

    The Lambda service pulls the image from ECR and ships the function's stdout (logs, EMF metrics) outside
    the VPC, so neither needs an endpoint. The handler makes no AWS API calls today; the two endpoints are
    the only AWS services it can reach through its network interface, for the two it is allowed to talk to:
    CloudWatch Logs and X-Ray (active tracing's segments, or an SDK client added later). Anything else
    (S3, STS, the internet) has no route.
    """

    #: The interface endpoints (service name -> construct id); nothing else is reachable from the subnets.
    ENDPOINTS = {"logs": "CloudWatchLogs", "xray": "XRay"}

    def __init__(
        self, scope: Construct, construct_id: str, *, config: InfraConfig, flow_log_group: logs.ILogGroup
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/24"),
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=26)
            ],
            restrict_default_security_group=True,
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
        )
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.function_security_group = ec2.SecurityGroup(
            self,
            "FunctionSecurityGroup",
            vpc=self.vpc,
            description="BUSI classifier function: no inbound; outbound only to the VPC endpoints on 443",
            allow_all_outbound=False,
        )
        self.endpoint_security_group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            description="VPC interface endpoints: HTTPS from the classifier function only",
            allow_all_outbound=False,
        )
        self.endpoint_security_group.add_ingress_rule(
            self.function_security_group, ec2.Port.tcp(443), "HTTPS from the classifier function"
        )
        self.function_security_group.add_egress_rule(
            self.endpoint_security_group, ec2.Port.tcp(443), "HTTPS to the VPC interface endpoints"
        )
        services = {
            "logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
            "xray": ec2.InterfaceVpcEndpointAwsService.XRAY,
        }
        self.endpoints = {
            name: self.vpc.add_interface_endpoint(
                self.ENDPOINTS[name],
                service=services[name],
                subnets=self.subnets,
                security_groups=[self.endpoint_security_group],
                open=False,
                private_dns_enabled=True,
            )
            for name in self.ENDPOINTS
        }


def managed_instead_of_inline(scope: Construct) -> list[iam.CfnManagedPolicy]:
    """Turn every inline policy (iam.Policy, e.g. a role's DefaultPolicy) under ``scope`` into a customer-managed
    policy with the same document and the same roles (HIPAA's IAMNoInlinePolicy).

    The managed policy replaces the inline one inside the same Policy construct, so everything that depends on
    that construct (a function waiting for its role's permissions) now waits for the managed policy instead.
    Call it once every grant has been made; statements added later still land in the (lazy) document.
    """
    converted = []
    for inline in [c for c in scope.node.find_all() if isinstance(c, iam.CfnPolicy)]:
        parent = inline.node.scope
        assert parent is not None
        stack = Stack.of(inline)
        if stack.resolve(inline.users) or stack.resolve(inline.groups):
            raise RuntimeError(f"{inline.node.path}: only role policies are converted")
        managed = iam.CfnManagedPolicy(
            parent,
            "Managed",
            policy_document=inline.policy_document,
            roles=inline.roles,
            description=f"Was the inline policy {parent.node.path}"[:1000],
        )
        parent.node.try_remove_child(inline.node.id)
        converted.append(managed)
    return converted
