"""Child process for the cold-start benchmark: import + model load + first prediction, timed from inside.

Only the standard library is imported before the clock starts, so the time
covers everything a Lambda init plus first invoke would do in our code.
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

RESULT_PREFIX = "BENCH_COLD_RESULT "


def main() -> None:
    model_dir, image_path = sys.argv[1], sys.argv[2]
    from bench.serving import LambdaContext, load_handler, rest_event

    with open(image_path, "rb") as fh:
        event = rest_event(fh.read(), content_type="image/png")
    t_import = time.perf_counter()
    handler = load_handler(model_dir)  # imports classifier.handler (and whatever it loads at import)
    t_loaded = time.perf_counter()
    resp = handler(event, LambdaContext())
    t_done = time.perf_counter()
    # VmHWM, this process's own peak: getrusage's ru_maxrss keeps the high-water mark of the memory the process
    # had before exec (the parent's, with the baseline model loaded), so it over-states a child's peak.
    with open("/proc/self/status") as fh:
        peak_rss_mb = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) / 1024
    sys.stdout.write(RESULT_PREFIX)  # the handler's own log lines share stdout
    json.dump(
        {
            "status": resp.get("statusCode"),
            "import_s": t_loaded - t_import,
            "first_request_s": t_done - t_loaded,
            "total_s": t_done - T0,
            "pid": os.getpid(),
            "peak_rss_mb": peak_rss_mb,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
