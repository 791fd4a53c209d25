"""AWS CDK constructs and stack for the classifier API."""
