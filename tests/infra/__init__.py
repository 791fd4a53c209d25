"""Tests of the CDK app: template assertions, cdk-nag, cfn-lint, the pinned CLI."""
