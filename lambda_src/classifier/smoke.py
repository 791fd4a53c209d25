"""After a deploy: does the live API serve the bundled model? (`make smoke STACK=NAME`)

    python -m classifier.smoke --stack BusiClassifier        # URL and key from the stack (boto3)
    python -m classifier.smoke --endpoint http://127.0.0.1:8080

Checks, each printed with PASS/FAIL: GET /health answers with the bundled model's version (from
lambda_src/model/model.json); every image in examples/ gets a label; a body that is not an image gets
a 4xx with an error code. Exit 1 if any check fails. Research use only, not a medical device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import client
from .model_card import CARD_FILE, DISCLAIMER
from .settings import DEFAULT_MODEL_DIR


def run_checks(endpoint: str, api_key: str | None, *, expected_version: str, examples: list[Path],
               timeout: float = 30.0) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, bool, str]] = []
    try:
        health = client.call(client.route_url(endpoint, "health"), api_key=api_key, timeout=timeout)
        version = (health.get("model") or {}).get("version")
        checks.append(("health answers with the bundled model", health.get("status") == "ok" and version == expected_version,
                       f"status {health.get('status')!r}, model version {version!r} (bundled {expected_version!r})"))
    except client.ClientFailure as exc:
        checks.append(("health answers with the bundled model", False, f"HTTP {exc.status} {exc.code}: {exc.message}"))
    for path in examples:
        try:
            doc = client.predict_bytes(endpoint, path.read_bytes(), api_key=api_key, timeout=timeout)
            ok = bool(doc.get("label")) and isinstance(doc.get("probabilities"), dict)
            checks.append((f"{path.name} gets a label", ok, f"label {doc.get('label')!r}"))
        except client.ClientFailure as exc:
            checks.append((f"{path.name} gets a label", False, f"HTTP {exc.status} {exc.code}: {exc.message}"))
    try:
        client.call(client.route_url(endpoint, "predict"), method="POST", body=b"this is not an image",
                    content_type="image/png", api_key=api_key, timeout=timeout)
        checks.append(("a bad body gets a 4xx", False, "it was answered 200"))
    except client.ClientFailure as exc:
        ok = exc.status is not None and 400 <= exc.status < 500 and bool(exc.code)
        checks.append(("a bad body gets a 4xx", ok, f"HTTP {exc.status} {exc.code}"))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classifier.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="deployed stack name: URL and API key from its outputs (boto3)")
    parser.add_argument("--profile")
    parser.add_argument("--region")
    parser.add_argument("--endpoint", help="API base URL instead of --stack")
    parser.add_argument("--api-key")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="the bundled model folder")
    parser.add_argument("--examples", type=Path, default=Path("examples"))
    args = parser.parse_args(argv)
    endpoint, api_key = args.endpoint, args.api_key
    if args.stack:
        from . import stack_lookup

        try:
            info = stack_lookup.lookup(args.stack, profile=args.profile, region=args.region)
        except stack_lookup.StackLookupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        endpoint, api_key = info.api_url, info.api_key or api_key
    if not endpoint:
        parser.error("give --stack NAME or --endpoint URL")
    expected = json.loads((args.model / CARD_FILE).read_text())["version"]
    examples = sorted(p for p in args.examples.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    checks = run_checks(endpoint, api_key, expected_version=expected, examples=examples)
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    failed = sum(not ok for _, ok, _ in checks)
    print(f"{len(checks) - failed}/{len(checks)} checks passed against {endpoint}\n{DISCLAIMER}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
