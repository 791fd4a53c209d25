"""results.json -> goals met or missed, and the markdown tables results.md and the README show."""

from __future__ import annotations

import os
import re
from pathlib import Path

TABLE_START, TABLE_END = "<!-- bench:table -->", "<!-- /bench:table -->"


def _get(d: dict, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def goals(results: dict) -> list[dict]:
    """One row per goal of issue 5: what was asked, what was measured, whether it was met (None: not measured)."""
    inf, cold, api, sizes = (results.get(k) or {} for k in ("inference", "cold_start", "local_api", "sizes"))
    rows = []

    p50 = _get(inf, "ours_binary", "p50_ms")
    rows.append({"goal": "end-to-end p50, 1 thread, bundled model (image/png request)", "target": "<= 10 ms",
                 "measured": f"{p50:.2f} ms" if p50 is not None else "not measured",
                 "met": None if p50 is None else p50 <= 10.0})

    ratio = inf.get("speedup_p50")
    rows.append({"goal": "faster than the original path (p50 ratio, same run, same JSON requests)", "target": ">= 20x",
                 "measured": f"{ratio:.1f}x ({_get(inf, 'baseline', 'p50_ms')} ms vs "
                             f"{_get(inf, 'ours_json', 'p50_ms')} ms)" if ratio else "not measured",
                 "met": None if ratio is None else ratio >= 20.0})

    cs = cold.get("median_s")
    rows.append({"goal": "cold start: new process, import + model load + first prediction (median)",
                 "target": "<= 0.5 s",
                 "measured": f"{cs:.3f} s (process wall incl. Python start-up {cold.get('process_wall_median_s')} s)"
                 if cs is not None else "not measured",
                 "met": None if cs is None else cs <= 0.5})

    c4 = next((lv for lv in api.get("levels", []) if lv["concurrency"] == 4), None)
    rows.append({"goal": "local API at concurrency 4", "target": ">= 100 req/s, 0 errors",
                 "measured": f"{c4['requests_per_s']} req/s, {c4['errors']} errors / {c4['requests']}"
                 if c4 else "not measured",
                 "met": None if c4 is None else (c4["requests_per_s"] >= 100 and c4["errors"] == 0)})

    train = results.get("training") or {}
    wall = train.get("total_wall_s") if train.get("available") else None
    rows.append({"goal": "`make train` wall time on the shared data (issue 3)", "target": "<= 15 min",
                 "measured": f"{wall / 60:.1f} min, peak memory {train.get('peak_memory_mb')} MB (recorded by the run)"
                 if wall is not None else "not available", "met": None if wall is None else wall <= 900})

    hostile = results.get("hostile") or {}
    if hostile.get("n"):
        ok = not hostile["unexpected"] and not hostile["over_budget"] and hostile["server_errors"] == 0
        rows.append({"goal": f"hostile-image corpus ({hostile['n']} inputs, bench/hostile_corpus.py): "
                             "expected status, 0 5xx, 0 labels for refused inputs, each within the request budget",
                     "target": f"<= {hostile['budget']['wall_s']} s, <= {hostile['budget']['peak_rss_growth_mb']:.0f} MB "
                               "peak RSS above idle",
                     "measured": f"max {hostile['max_wall_s']} s, max +{hostile['max_peak_growth_mb']} MB; "
                                 f"{hostile['server_errors']} 5xx, {hostile['labels_for_refused']} labels for refused; "
                                 f"unexpected: {', '.join(hostile['unexpected']) or 'none'}; "
                                 f"over budget: {', '.join(hostile['over_budget']) or 'none'}",
                     "met": ok})
    else:
        rows.append({"goal": "hostile-image corpus within the request budget", "target": "<= 2 s, <= 400 MB",
                     "measured": "not measured", "met": None})
    ov = results.get("api_overhead") or {}
    rows.append({"goal": "local API's own overhead (HTTP p50 minus in-process p50, same images)",
                 "target": "<= 3 ms",
                 "measured": f"{ov['overhead_p50_ms']} ms ({ov['http']['p50_ms']} vs {ov['in_process']['p50_ms']} ms)"
                 if ov else "not measured", "met": None if not ov else ov["overhead_p50_ms"] <= ov["goal_ms"]})

    deps = _get(sizes, "lambda_deps", "total_mb")
    installed = _get(sizes, "lambda_deps", "installed_mb")
    measured = "not measured" if deps is None else f"{deps} MB" + (
        f" as shipped ({installed} MB installed, less what lambda_src/prune_site.py removes)" if installed else "")
    rows.append({"goal": "Lambda Python dependencies (lambda_src/requirements.txt installed alone, as the image gets them)",
                 "target": "<= 150 MB", "measured": measured, "met": None if deps is None else deps <= 150})
    # Issue 12 (only once `--only batch` has run: earlier results have no batch section).
    bat = results.get("batch") or {}
    runs = bat.get("runs") or {}
    if runs:
        n = str(bat["cpus"])
        rows.append({"goal": f"local batch (classifier.batch), {bat['cpus']} processes vs 1, shared BUSI, bundled model",
                     "target": ">= 1.7x",
                     "measured": f"{bat['speedup']}x ({runs[n]['images_per_s']} vs {runs['1']['images_per_s']} images/s, "
                                 f"best of {bat.get('repeats', 1)}; all runs {runs[n].get('all_images_per_s')} vs "
                                 f"{runs['1'].get('all_images_per_s')})",
                     "met": None if not bat.get("speedup") else bat["speedup"] >= 1.7})
        rows.append({"goal": "local batch images/s on the shared BUSI images, bundled model", "target": ">= 100 images/s",
                     "measured": f"{bat['images_per_s']} images/s ({runs[n]['images']} images, {bat['cpus']} processes)",
                     "met": bat["images_per_s"] >= 100})
        cloud = bat["cloud_100k"]
        rows.append({"goal": "cloud batch of 100,000 images at default settings (README arithmetic, not measured)",
                     "target": "<= 15 min, <= $2",
                     "measured": f"{cloud['wall_min']} min, ${cloud['total_usd']} (${cloud['total_without_uploads_usd']} "
                                 "without the uploads)",
                     "met": cloud["wall_min"] <= 15 and cloud["total_usd"] <= 2})

    # Issue 22: the drift metrics' cost per request (bench/drift_overhead.py).
    drift = results.get("drift_metrics") or {}
    rec = drift.get("record") or {}
    rows.append({"goal": "drift metrics per request (DriftMetrics.record, batched EMF write amortised)",
                 "target": f"<= {drift.get('goal_ms', 0.2)} ms",
                 "measured": f"mean {rec['mean_ms']} ms, p99 {rec['p99_ms']} ms over {rec['calls']} calls; handler p50 "
                             f"on vs off {drift['handler']['on_p50_ms']} vs {drift['handler']['off_p50_ms']} ms"
                 if rec else "not measured",
                 "met": None if not rec else rec["mean_ms"] <= drift["goal_ms"] and rec["p99_ms"] <= drift["goal_ms"]})

    # Issue 23: the cost table, from inputs measured in this invocation (not carried over from an earlier one).
    cost = results.get("cost") or {}
    carried = " ".join((results.get("meta") or {}).get("carried_over") or [])
    stale = [k for k in ("inference", "cold_start", "hostile") if k + " (" in carried]
    rows.append({"goal": "cost per million predictions at the cheapest memory size that fits (issue 23)",
                 "target": "a table whose inputs are measured in the same run",
                 "measured": (f"{cost['recommended_memory_mb']} MB: ${cost['recommended_x86_per_million_usd']} x86, "
                              f"${cost['recommended_arm64_per_million_usd']} arm64 per million (stack default "
                              f"{cost['stack_memory_mb']} MB: ${cost['stack_x86_per_million_usd']})"
                              + (f"; inputs carried over: {', '.join(stale)}" if stale else ""))
                 if cost.get("available") else "not measured",
                 "met": None if not cost.get("available") else not stale})
    return rows


def _met(v) -> str:
    return {True: "yes", False: "**NO**", None: "not measured"}[v]


def goals_table(results: dict) -> str:
    lines = ["| goal | target | measured | met? |", "|---|---|---|---|"]
    for r in goals(results):
        lines.append(f"| {r['goal']} | {r['target']} | {r['measured']} | {_met(r['met'])} |")
    return "\n".join(lines)


def _lat_row(name: str, s: dict) -> str:
    if not s or not s.get("n"):
        return f"| {name} | - | - | - | - | - |"
    return f"| {name} | {s['n']} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {s['p99_ms']:.2f} | {s['mean_ms']:.2f} |"


def markdown(results: dict) -> str:
    env, meta = results.get("environment", {}), results.get("meta", {})
    inf, cold, api = (results.get(k) or {} for k in ("inference", "cold_start", "local_api"))
    train, sizes = results.get("training") or {}, results.get("sizes") or {}
    out = [
        "# Benchmark results",
        "",
        f"`make bench`, {meta.get('finished_utc', '?')}. Model: **{meta.get('model_name', '?')}** "
        f"{meta.get('model_version', '')} ({meta.get('model_input', '?')}). Images: {meta.get('images', '?')}.",
        "",
        f"Machine: {env.get('cpu', '?')}, {env.get('logical_cores', '?')} logical cores, "
        f"{env.get('memory_gb', '?')} GB RAM, Python {env.get('python', '?')}. "
        f"Load average (1/5/15 min) at start {_get(results, 'load', 'start', 'load_avg_1_5_15')}, "
        f"at end {_get(results, 'load', 'end', 'load_avg_1_5_15')}.",
    ]
    busy = _get(results, "load", "start", "busy_processes") or []
    out.append("Other busy processes at start: " + (
        "; ".join(f"{b['cpu_percent']}% `{b['cmd'][:60]}`" for b in busy[:4]) if busy else "none above 10% of a core") + ".")
    out += ["", "## Goals", "", goals_table(results), ""]

    if inf:
        out += ["## In-process end to end (decode + preprocess + invoke + JSON), 1 thread", "",
                "| path | n | p50 ms | p95 ms | p99 ms | mean ms |", "|---|---|---|---|---|---|",
                _lat_row("ours: handler, image/png (base64 by API Gateway)", inf.get("ours_binary")),
                _lat_row('ours: handler, JSON {"image": base64}', inf.get("ours_json")),
                _lat_row("original path: float32 ResNet50 224, interpreter per request, JSON", inf.get("baseline")),
                "", f"Speed-up (p50, JSON vs JSON): **{inf.get('speedup_p50')}x**; mean: {inf.get('speedup_mean')}x. "
                f"Baseline model {_get(inf, 'baseline', 'model_mb')} MB, random weights, "
                "nearest resize, ImageNet normalisation in numpy.", ""]
        bd = inf.get("breakdown_p50_ms") or {}
        if bd:
            out += [f"Where our time goes (p50 of each step, same images): PNG/JPEG decode {bd.get('decode_rgb')} ms, "
                    f"resize {bd.get('resize')} ms, LiteRT invoke {bd.get('invoke')} ms; the rest of the handler "
                    "(base64, request parsing, JSON, Powertools logging and metrics) is the difference to the p50 above.", ""]
        bb = inf.get("baseline_breakdown_p50_ms") or {}
        if bb:
            out += [f"Original path, same images: decode + nearest resize + normalise {bb.get('decode_resize_normalise')} ms, "
                    f"new interpreter {bb.get('new_interpreter')} ms, invoke {bb.get('invoke')} ms. "
                    f"Model part alone (new interpreter + invoke vs our invoke): **{inf.get('speedup_model_only_p50')}x**. "
                    "Both paths pay for decoding the image, which bounds the end-to-end ratio.", ""]
        base_p50 = _get(inf, "baseline", "p50_ms")
        if bd and base_p50:
            floor = bd.get("decode_rgb", 0) + bd.get("resize", 0)
            out += [f"Bound: with a model that cost nothing, our path would still decode and resize ({floor:.2f} ms), "
                    f"so the end-to-end ratio on these images cannot exceed {base_p50 / floor:.1f}x here.", ""]
    if cold:
        out += ["## Cold start", "",
                f"Median of {cold.get('repeats')} new processes: **{cold.get('median_s')} s** "
                f"(min {cold.get('min_s')}, max {cold.get('max_s')}); whole process incl. Python start-up "
                f"{cold.get('process_wall_median_s')} s. {cold.get('note', '')}", ""]
    if api:
        out += ["## Local API (loopback, " + api.get("transport", "") + ")", "",
                "| concurrency | requests | req/s | errors | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|---|---|---|"]
        for lv in api.get("levels", []):
            lat = lv["latency"]
            out.append(f"| {lv['concurrency']} | {lv['requests']} | {lv['requests_per_s']} | {lv['errors']} | "
                       f"{lat.get('p50_ms', '-')} | {lat.get('p95_ms', '-')} | {lat.get('p99_ms', '-')} |")
        rss = api.get("server_rss_mb", {})
        out += ["", f"Server RSS: {rss.get('after_warmup')} MB after a 20-request warm-up, {rss.get('end')} MB after "
                "concurrency 16 (more threads in flight hold more buffers; growth at a steady concurrency is what the "
                "soak test in tests/robustness checks). Client and server share the same cores.", ""]
    hostile = results.get("hostile") or {}
    if hostile.get("cases"):
        out += ["## Hostile images (issue 10)", "",
                f"Budget per request: decode + inference <= {hostile['budget']['wall_s']} s, peak RSS <= "
                f"{hostile['budget']['peak_rss_growth_mb']:.0f} MB above the idle process. {hostile.get('method', '')}.", "",
                "| input | bytes | expected | got | wall s | peak RSS above idle MB |", "|---|---|---|---|---|---|"]
        for r in hostile["cases"]:
            got = f"{r.get('status')} {r.get('code') or r.get('label') or ''}".strip()
            exp = f"{r['expected_status']} {r['expected_code'] or '(label)'}"
            out.append(f"| {r['name']} | {r['bytes']:,} | {exp} | {got}{'' if r['as_expected'] else ' **unexpected**'} "
                       f"| {r.get('wall_s', '-')} | {r.get('peak_growth_mb', '-')} |")
        out += [""]
    ov = results.get("api_overhead") or {}
    if ov:
        out += ["## Local API overhead", "",
                f"HTTP p50 {ov['http']['p50_ms']} ms vs in-process p50 {ov['in_process']['p50_ms']} ms: "
                f"**{ov['overhead_p50_ms']} ms** of the local API's own (goal <= {ov['goal_ms']} ms); median of the "
                f"per-pair differences {ov.get('paired_median_ms', '-')} ms. {ov['method']}.", ""]
    if results.get("cost"):
        from .cost import markdown as cost_markdown

        out += cost_markdown(results["cost"])
    carried = (results.get("meta") or {}).get("carried_over")
    if carried:
        out += ["Sections not re-run in this invocation (`--only`), kept from the previous results: "
                + "; ".join(carried) + ".", ""]
    out += ["## Training (`make train` on the shared data)", ""]
    if train.get("available"):
        out += ["| stage | wall s |", "|---|---|"]
        out += [f"| {s['name']} | {s['wall_s']} |" for s in train.get("stages", [])]
        if not train.get("stages"):
            out += [f"| per stage | not recorded ({train.get('stages_note')}) |"]
        out += [f"| **total** | **{train.get('total_wall_s')}** ({train.get('total_wall_s', 0) / 60:.1f} min) |", "",
                f"Peak memory (training process RSS): {train.get('peak_memory_mb', 'not recorded')} MB. "
                f"Run: {train.get('run')}. Source: {train.get('source')}.", ""]
    else:
        out += [f"Not available: {train.get('reason', 'not measured')}.", ""]
    if sizes:
        deps, img = sizes.get("lambda_deps", {}), sizes.get("image_estimate", {})
        out += ["## Sizes", "", "| item | MB |", "|---|---|"]
        out += [f"| model file `{m['path']}` ({m['input_dtype'] or 'see card'}) | {m['mb']} |" for m in sizes.get("model_files", [])]
        if deps.get("installed_mb") is not None:
            out += [f"| Lambda dependencies as installed (`pip install --target`, Python {deps.get('python')}) "
                    f"| {deps['installed_mb']} |",
                    f"| &nbsp;&nbsp;less what `lambda_src/prune_site.py` removes (same image layer) | -{deps.get('pruned_mb')} |",
                    f"| **Lambda dependencies as shipped** | **{deps.get('total_mb')}** |"]
        else:  # results from before the prune step
            out += [f"| Lambda dependencies (`pip install --target`, Python {deps.get('python')}) | {deps.get('total_mb')} |"]
        out += [f"| &nbsp;&nbsp;of which `{p['name']}` | {p['mb']} |" for p in deps.get("largest", [])[:4]]
        out += [f"| &nbsp;&nbsp;of which compiled `.pyc` / test code (`tests`, `testing` folders) | "
                f"{deps.get('pyc_mb')} / {deps.get('tests_mb')} |"]
        out += [f"| expected image: base (assumed) {img.get('base_mb')} + deps {img.get('deps_mb')} + model "
                f"{img.get('model_dir_mb')} + code {img.get('code_mb')} | **{img.get('total_mb')}** |", "",
                f"How: {img.get('method', '')}.", ""]
        if deps.get("pruned"):
            out += ["Removed by `lambda_src/prune_site.py` (MB): " + "; ".join(
                f"`{r['pattern']}` {r['mb']}" for r in deps["pruned"]) + ". Why each: the script's rules.", ""]
    out += ["Raw numbers: `bench/results.json`. Medians and ratios above come from this one run."]
    return "\n".join(out) + "\n"


def readme_block(results: dict, results_link: str = "bench/results.md") -> str:
    meta = results.get("meta", {})
    return (f"{TABLE_START}\nFrom `make bench` at {meta.get('finished_utc', '?')} on "
            f"{_get(results, 'environment', 'cpu', default='?')} ({_get(results, 'environment', 'logical_cores')} cores), "
            f"model {meta.get('model_name', '?')} {meta.get('model_version', '')}"
            + (f" (not re-run then, kept from earlier runs: {'; '.join(meta['carried_over'])})"
               if meta.get("carried_over") else "") + ":\n\n"
            f"{goals_table(results)}\n\nDetails, load conditions and sizes: [bench/results.md]({results_link}).\n{TABLE_END}")


def update_readme(readme: Path, results: dict, results_md: Path | None = None) -> bool:
    """Replace the table between the bench markers; False when the README has no such markers.

    results_md: the results.md written, linked relative to the updated file (e.g. docs/benchmarks.md)."""
    link = "bench/results.md" if results_md is None else os.path.relpath(
        Path(results_md).resolve(), readme.resolve().parent)
    text = readme.read_text()
    pattern = re.compile(re.escape(TABLE_START) + r".*?" + re.escape(TABLE_END), re.DOTALL)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: readme_block(results, link), text, count=1))
    return True
