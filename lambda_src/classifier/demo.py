"""`make demo`: start the local API on the bundled model, classify the example images over HTTP, print them.

    python -m classifier.demo --model lambda_src/model --examples examples

Exits non-zero if the model cannot be loaded or any request fails.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.request
from pathlib import Path

from . import client
from .handler import create_service
from .local_api import start_server, stop_server
from .model_card import CARD_FILE, DISCLAIMER, MODEL_FILE
from .settings import Settings
from .stderr_filter import XNNPACK_NOISE, filtered_stderr

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def find_examples(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def run(model_dir: Path, examples_dir: Path, *, num_threads: int = 1, out=sys.stdout) -> int:
    missing = [name for name in (MODEL_FILE, CARD_FILE) if not (model_dir / name).is_file()]
    if missing:
        print(f"error: {model_dir} has no {' or '.join(missing)}; restore the bundled one (git checkout -- lambda_src/model), "
              f"ship a run (make train, then make promote RUN=...) or pass --model DIR", file=sys.stderr)
        return 2
    if not examples_dir.is_dir() or not (images := find_examples(examples_dir)):
        print(f"error: no PNG/JPEG/BMP images in {examples_dir}", file=sys.stderr)
        return 2

    # Quiet service: the demo prints a table, not JSON logs and metric blobs.
    settings = Settings(model_dir=model_dir, num_threads=num_threads, log_level="ERROR", metrics_enabled=False)
    service = create_service(settings)
    with filtered_stderr(XNNPACK_NOISE):  # LiteRT's XNNPACK INFO line on the first interpreter
        service.warm()
    if service.load_error:
        print(f"error: the model in {model_dir} cannot be loaded: {service.load_error}", file=sys.stderr)
        return 2

    server = start_server(service, max_body_bytes=settings.max_body_bytes)
    try:
        health = client.call(client.route_url(server.url, "health"))
        model = health["model"]
        print(f"Local API on {server.url}: model {model['name']} {model['version']} "
              f"({model.get('backbone') or 'unknown backbone'}, {model['input_size']}x{model['input_size']} input)",
              file=out)
        print(f"Classifying {len(images)} example image(s) over HTTP (POST {server.url}/predict):\n", file=out)
        sources = [str(p) for p in images]
        start = time.perf_counter()
        results = client.predict_sources(server.url, sources)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        labels = set(model["labels"])
        truth = {str(p): p.stem if p.stem in labels else "?" for p in images}
        print(client.format_table(results, truth=truth, footer=False), file=out)
        ok = [r for r in results if r.error is None]
        print(f"\n{len(ok)}/{len(results)} answered in {elapsed_ms:.0f} ms in total "
              f"({elapsed_ms / max(len(results), 1):.1f} ms per image, round trip)", file=out)
        agree = sum(r.response["label"] == truth[r.source] for r in ok)
        print(f"The model's label matches the dataset's for {agree} of {len(ok)}: three images show that the "
              f"service works, not how accurate it is (see the training report).", file=out)
        rule = next((r.response.get("label_rule") for r in ok if r.response.get("label_rule")), None)
        if rule:  # labels follow the model's operating point, not the largest probability
            print(f"Label rule: {rule}", file=out)
        others = [name for name in (model.get("operating_points") or {}) if name != model.get("default_operating_point")]
        for name in others:  # the same images under the model's other named points (?operating_point=NAME)
            again = client.predict_sources(server.url, sources, operating_point=name)
            labels_at = ", ".join(f"{Path(r.source).name} {r.response['label']}" for r in again if r.error is None)
            print(f"At ?operating_point={name}: {labels_at}", file=out)

        # What a client gets for bad input: a 4xx with a code, never a 5xx.
        try:
            client.call(client.route_url(server.url, "predict"), method="POST", body=b"not an image",
                        content_type="image/png")
            print("error: the API accepted a body that is not an image", file=sys.stderr)
            return 1
        except client.ClientFailure as exc:
            print(f"A body that is not an image is refused: HTTP {exc.status} {exc.code}: {exc.message}", file=out)
        page_url = f"{server.url}/"
        with urllib.request.urlopen(page_url, timeout=30) as resp:
            kind = resp.headers.get_content_type()
            if resp.status != 200 or kind != "text/html":
                print(f"error: GET {page_url} answered {resp.status} {kind}, not the page", file=sys.stderr)
                return 1
        print(f"The page to try the model in a browser: {page_url} (up while this demo runs; `make serve` keeps "
              f"one at http://127.0.0.1:8080/)", file=out)
        print(f"\n{health.get('disclaimer') or DISCLAIMER}", file=out)
        if len(ok) != len(results):
            return 1
        return 0
    except (client.ClientFailure, KeyError, OSError) as exc:
        print(f"error: the local API did not answer as expected: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_server(server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m classifier.demo",
        description="Start the local API on a model, classify example images over real HTTP, print the "
                    "results. Research use only, not a medical device.",
    )
    parser.add_argument("--model", type=Path, default=Settings().model_dir,
                        help="model folder with model.tflite + model.json (default: lambda_src/model)")
    parser.add_argument("--examples", type=Path, default=Path("examples"),
                        help="folder of PNG/JPEG/BMP images; a file named after a label shows it (default: examples)")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT CPU threads (default 1)")
    args = parser.parse_args(argv)
    return run(args.model, args.examples, num_threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
