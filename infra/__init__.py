"""AWS CDK constructs and stack for the classifier API.

Importing ``aws_cdk`` starts jsii's Node process, which prints an 11-line "Node 20 is end-of-life" banner
(relayed by jsii's Python side as bytes literals) on every `cdk synth|diff|deploy` and test run. The project
runs on Node 20 on purpose (the pinned CDK CLI supports it), so the banner is silenced here, before any
module of this package imports aws_cdk: for Node 20 only (another end-of-life version still warns), and
a value of your own wins. The same two variables as the Makefile, so `npx cdk ...` run directly is as quiet.
"""

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")
