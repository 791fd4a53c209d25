"""`make bench`: in-process latency vs the original serving path, cold start, local-API load,
training cost and sizes, in ONE run. Writes bench/results.json and bench/results.md.

Examples:
  python -m bench                          # everything, bundled model, ../shared/data/busi
  python -m bench --only inference cold    # just those sections
  python -m bench --quick                  # fewer requests, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("inference", "cold", "api", "training", "sizes", "hostile", "overhead", "batch", "drift")


def parse_levels(text: str) -> dict[int, int]:
    """'1:300,4:600,16:1200' -> {1: 300, 4: 600, 16: 1200}."""
    try:
        pairs = [item.split(":") for item in text.split(",") if item]
        levels = {int(c): int(n) for c, n in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CONCURRENCY:REQUESTS[,...], got {text!r}") from None
    if not levels or any(c < 1 or n < 1 for c, n in levels.items()):
        raise argparse.ArgumentTypeError("concurrency and request counts must be positive")
    return levels


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=REPO / "lambda_src" / "model",
                   help="model folder (model.tflite + model.json) to benchmark (default: the bundled model)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "busi",
                   help="BUSI-layout folder for request images; generated images when absent")
    p.add_argument("--out", type=Path, default=REPO / "bench", help="where results.json and results.md go")
    p.add_argument("--cache", type=Path, default=REPO / ".cache" / "bench",
                   help="gitignored cache: the 94 MB baseline model, the dependency-size measurement")
    p.add_argument("--report-dir", type=Path, default=REPO / "reports",
                   help="where `make train` wrote its report (training timings are read from there)")
    p.add_argument("--images", type=int, default=60, help="how many request images (spread over the classes)")
    p.add_argument("--requests", type=int, default=400, help="timed in-process requests per contract for our path")
    p.add_argument("--baseline-requests", type=int, default=40, help="timed requests for the original path")
    p.add_argument("--cold-repeats", type=int, default=7, help="new processes for the cold-start median")
    p.add_argument("--api-levels", type=parse_levels, default=parse_levels("1:300,4:800,16:1600"),
                   help="local-API load as CONCURRENCY:REQUESTS,... (default 1:300,4:800,16:1600)")
    p.add_argument("--base-image-mb", type=float, default=None,
                   help="size to assume for public.ecr.aws/lambda/python:3.12 (not measurable here)")
    p.add_argument("--deps-python", default=None,
                   help="Python to install the Lambda dependencies with (default: python3.12 if on PATH, "
                        "the image's version; else this one)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    p.add_argument("--quick", action="store_true", help="small counts for a smoke run (numbers not for reporting)")
    p.add_argument("--readme", type=Path, default=None,
                   help="also rewrite the goals table between the bench markers in this file (make bench: docs/benchmarks.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.images, args.requests, args.baseline_requests, args.cold_repeats = 12, 40, 5, 3
        args.api_levels = {1: 40, 4: 80, 16: 160}
    sections = set(args.only or SECTIONS)
    model_dir = args.model.resolve()
    if not (model_dir / "model.tflite").is_file() or not (model_dir / "model.json").is_file():
        print(f"error: {model_dir} has no model.tflite + model.json; run `make train` or pass --model DIR",
              file=sys.stderr)
        return 2

    # Heavy imports after argument checks, so --help is instant.
    from classifier.model_card import ModelCard

    from . import api_load, cold_start, environment, hostile, inference, report, sizes, training_cost
    from . import batch as batch_bench
    from . import drift_overhead
    from .images import load_images

    card = ModelCard.load(model_dir)
    args.cache.mkdir(parents=True, exist_ok=True)
    images, images_desc = load_images(args.data, args.images)
    results: dict = {
        "meta": {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "model_dir": str(model_dir),
                 "model_name": card.name, "model_version": card.version,
                 "model_input": f"{card.input_size}x{card.input_size} {card.input_dtype}", "images": images_desc,
                 "quick": args.quick},
        "environment": environment.describe(),
        "load": {"start": environment.snapshot()},
    }
    print(f"bench: model {card.name} {card.version}; {images_desc}", file=sys.stderr)

    steps = [
        ("inference", lambda: inference.run(model_dir=model_dir, images=images, cache_dir=args.cache,
                                            n_ours=args.requests, n_baseline=args.baseline_requests)),
        ("cold_start", lambda: cold_start.run(model_dir=model_dir, image=images[0][1], repeats=args.cold_repeats)),
        ("local_api", lambda: api_load.run(model_dir=model_dir, images=images, log_dir=args.cache,
                                           levels=args.api_levels)),
        ("training", lambda: training_cost.run(model_dir=model_dir)),
        ("sizes", lambda: sizes.run(model_dir=model_dir, extra_model_dirs=[args.report_dir], cache_dir=args.cache,
                                    base_image_mb=args.base_image_mb or sizes.BASE_IMAGE_MB_ASSUMED,
                                    deps_python=args.deps_python)),
        ("hostile", lambda: hostile.run(model_dir=model_dir, warm_image=images[0][1])),
        ("api_overhead", lambda: hostile.run_overhead(model_dir=model_dir, images=images, log_dir=args.cache,
                                                      requests=60 if args.quick else 400)),
        ("batch", lambda: batch_bench.run(model_dir=model_dir, data=args.data)),
        ("drift_metrics", lambda: drift_overhead.run(model_dir=model_dir, images=images,
                                                     requests=40 if args.quick else 300,
                                                     calls=2000 if args.quick else 20000)),
    ]
    section_of = {"inference": "inference", "cold_start": "cold", "local_api": "api",
                  "training": "training", "sizes": "sizes", "hostile": "hostile", "api_overhead": "overhead",
                  "batch": "batch", "drift_metrics": "drift"}
    for key, step in steps:
        if section_of[key] not in sections:
            continue
        t0 = time.perf_counter()
        print(f"bench: {key} ...", file=sys.stderr)
        results[key] = step()
        print(f"bench: {key} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    # With --only, the other sections keep their last measurements (marked as carried over).
    previous_path = args.out / "results.json"
    if args.only and previous_path.is_file():
        try:
            previous = json.loads(previous_path.read_text())
        except ValueError:
            previous = {}
        prev_meta = previous.get("meta", {})
        for key, section in section_of.items():
            if section not in sections and key in previous:
                results[key] = previous[key]
                when = (prev_meta.get("measured_at") or {}).get(key) or prev_meta.get("finished_utc", "?")
                results["meta"].setdefault("measured_at", {})[key] = when
                results["meta"].setdefault("carried_over", []).append(f"{key} (from {when})")

    results["load"]["end"] = environment.snapshot()
    results["meta"]["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for key, section in section_of.items():
        if section in sections and key in results:
            results["meta"].setdefault("measured_at", {})[key] = results["meta"]["finished_utc"]
    # Derived from the sections above (their own measured_at says when each was measured).
    from infra.config import InfraConfig

    from . import cost

    context = json.loads((Path(__file__).resolve().parents[1] / "cdk.json").read_text()).get("context", {})
    stack = InfraConfig.from_context(context.get)  # what `cdk deploy` uses without -c overrides
    results["cost"] = cost.table(results, stack_memory_mb=stack.memory_mb, timeout_s=stack.timeout_seconds)
    results["goals"] = report.goals(results)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(report.markdown(results))
    print(report.goals_table(results))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'results.md'}", file=sys.stderr)
    if args.readme is not None:
        if report.update_readme(args.readme, results, args.out / "results.md"):
            print(f"updated the bench table in {args.readme}", file=sys.stderr)
        else:
            print(f"warning: {args.readme} has no {report.TABLE_START} markers; not updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
