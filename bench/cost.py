"""Cost per million predictions, from what this bench run measured (issue 23 item 5).

Arithmetic, not a measurement on AWS (there is no account here). Inputs, each measured in the run:
the handler's in-process end-to-end p50 and p99 for one image/png request (inference section), the
serving process's peak RSS after the first prediction (cold-start section) and the largest RSS growth
of one hostile input (hostile section). Assumptions, stated in the table's notes:

- Lambda gives a function CPU in proportion to its memory, one full vCPU at 1,769 MB (AWS documentation);
  the handler runs LiteRT on one thread at these sizes, so below 1,769 MB a request takes 1769 / memory
  times as long, and above it no less.
- A Lambda vCPU is LAMBDA_SLOWDOWN times slower than one core of this machine (the batch estimate's
  assumption, bench/batch.py: one constant for both).
- arm64 runs the request in the same time as x86 (not measured: this machine is x86_64). Its price per
  GB-second is 20 % lower, so its cost is a bound that holds only if that assumption does.
- The memory must hold the process after its first prediction plus the worst hostile request, with
  MEMORY_HEADROOM on top; a size whose p99 exceeds the function's timeout is out.
"""

from __future__ import annotations

from .batch import LAMBDA_GB_S, LAMBDA_REQUEST, LAMBDA_SLOWDOWN

#: Published Lambda prices (USD, us-east-1, first tier): per GB-second for x86 (bench/batch.py) and arm64.
LAMBDA_GB_S_ARM = 0.0000133334
#: API Gateway REST API, per million requests (first 333 million a month); billed apart from the function.
API_GATEWAY_PER_MILLION = 3.50
#: One full vCPU (AWS Lambda documentation: "at 1,769 MB, a function has the equivalent of one vCPU").
FULL_VCPU_MB = 1769
#: Memory sizes the table prices (MB).
SIZES_MB = (512, 768, 1024, 1280, 1536, 1769, 2048, 3008)
#: Share of memory kept free above the measured need.
MEMORY_HEADROOM = 0.25
#: Costs within this share of the cheapest count as tied; the fastest tied size is recommended. Below one vCPU
#: every size costs the same per CPU-second; what differs is Lambda's 1 ms billing step, up to ~3 % of a
#: request of some 30 ms, which would otherwise pick a size by rounding.
TIE = 0.03


def _request_ms(local_ms: float, memory_mb: int) -> float:
    return local_ms * LAMBDA_SLOWDOWN * max(1.0, FULL_VCPU_MB / memory_mb)


def _per_million(ms: float, memory_mb: int, gb_s_price: float) -> float:
    billed_s = -(-ms // 1) / 1000  # Lambda bills duration in 1 ms steps, rounded up
    return 1_000_000 * (memory_mb / 1024 * billed_s * gb_s_price + LAMBDA_REQUEST)


def table(results: dict, *, stack_memory_mb: int, timeout_s: float) -> dict:
    """The cost table from this run's results (or why it cannot be built)."""
    inf = (results.get("inference") or {}).get("ours_binary") or {}
    cold, hostile = results.get("cold_start") or {}, results.get("hostile") or {}
    p50, p99, rss = inf.get("p50_ms"), inf.get("p99_ms"), cold.get("peak_rss_mb_median")
    growth = hostile.get("max_peak_growth_mb")
    missing = [name for name, v in (("inference p50/p99", p50 and p99), ("cold-start peak RSS", rss),
                                    ("hostile peak growth", growth)) if not v]
    if missing:
        return {"available": False, "reason": "not measured in this run: " + ", ".join(missing)}
    need_mb = (rss + growth) * (1 + MEMORY_HEADROOM)
    rows = []
    for mb in SIZES_MB:
        ms50, ms99 = _request_ms(p50, mb), _request_ms(p99, mb)
        rows.append({"memory_mb": mb, "vcpu": round(min(mb, 10240) / FULL_VCPU_MB, 2),
                     "p50_ms": round(ms50, 1), "p99_ms": round(ms99, 1),
                     "fits": mb >= need_mb and ms99 / 1000 < timeout_s,
                     "x86_per_million_usd": round(_per_million(ms50, mb, LAMBDA_GB_S), 3),
                     "arm64_per_million_usd": round(_per_million(ms50, mb, LAMBDA_GB_S_ARM), 3)})
    fits = [r for r in rows if r["fits"]]
    cheapest = min(r["x86_per_million_usd"] for r in fits)
    tied = [r for r in fits if r["x86_per_million_usd"] <= cheapest * (1 + TIE)]
    best = min(tied, key=lambda r: (r["p50_ms"], r["memory_mb"]))
    stack = next((r for r in rows if r["memory_mb"] == stack_memory_mb), None)
    if stack is None:
        ms50 = _request_ms(p50, stack_memory_mb)
        stack = {"memory_mb": stack_memory_mb, "p50_ms": round(ms50, 1),
                 "x86_per_million_usd": round(_per_million(ms50, stack_memory_mb, LAMBDA_GB_S), 3)}
    return {
        "available": True, "rows": rows, "recommended_memory_mb": best["memory_mb"],
        "stack_memory_mb": stack_memory_mb, "stack_x86_per_million_usd": stack["x86_per_million_usd"],
        "recommended_x86_per_million_usd": best["x86_per_million_usd"],
        "recommended_arm64_per_million_usd": best["arm64_per_million_usd"],
        "api_gateway_per_million_usd": API_GATEWAY_PER_MILLION,
        "inputs": {"local_p50_ms": p50, "local_p99_ms": p99, "peak_rss_mb": rss, "hostile_growth_mb": growth,
                   "memory_needed_mb": round(need_mb), "timeout_s": timeout_s, "lambda_slowdown": LAMBDA_SLOWDOWN,
                   "prices": {"x86_gb_s": LAMBDA_GB_S, "arm64_gb_s": LAMBDA_GB_S_ARM,
                              "request": LAMBDA_REQUEST}},
    }


def markdown(cost: dict) -> list[str]:
    if not cost.get("available"):
        return ["## Cost per million predictions", "", f"Not available: {cost.get('reason')}.", ""]
    i = cost["inputs"]
    out = ["## Cost per million predictions (arithmetic from this run's measurements)", "",
           f"Inputs measured in this run: in-process p50 {i['local_p50_ms']} ms and p99 {i['local_p99_ms']} ms "
           f"(image/png, one thread), serving process peak RSS {i['peak_rss_mb']} MB after its first prediction, "
           f"worst hostile input +{i['hostile_growth_mb']} MB. Memory needed: ({i['peak_rss_mb']} + "
           f"{i['hostile_growth_mb']}) x {1 + MEMORY_HEADROOM:.2f} = {i['memory_needed_mb']} MB.", "",
           f"Per request on Lambda: local time x {i['lambda_slowdown']} (a Lambda vCPU against a core here, "
           f"assumed) x max(1, {FULL_VCPU_MB} / memory MB) (CPU share); cost = memory GB x billed seconds (1 ms "
           f"steps) x ${i['prices']['x86_gb_s']} (x86) or ${i['prices']['arm64_gb_s']} (arm64) per GB-s + "
           f"${i['prices']['request'] * 1e6:.2f} per million requests. arm64 assumes the x86 duration (not "
           "measured: this machine is x86_64).", "",
           "| memory MB | vCPU | p50 ms | p99 ms | fits (memory, timeout) | x86 $ / million | arm64 $ / million |",
           "|---|---|---|---|---|---|---|"]
    for r in cost["rows"]:
        mark = "**" if r["memory_mb"] == cost["recommended_memory_mb"] else ""
        out.append(f"| {mark}{r['memory_mb']}{mark} | {r['vcpu']} | {r['p50_ms']} | {r['p99_ms']} | "
                   f"{'yes' if r['fits'] else 'no'} | {mark}{r['x86_per_million_usd']}{mark} | "
                   f"{r['arm64_per_million_usd']} |")
    out += ["", f"Cheapest size that fits, fastest of those within {TIE:.0%} of the cheapest: "
            f"**{cost['recommended_memory_mb']} MB**, ${cost['recommended_x86_per_million_usd']} per million on x86, "
            f"${cost['recommended_arm64_per_million_usd']} on arm64; the stack's default "
            f"({cost['stack_memory_mb']} MB) costs ${cost['stack_x86_per_million_usd']}. API Gateway (REST) adds "
            f"${cost['api_gateway_per_million_usd']:.2f} per million requests whatever the function costs.", ""]
    return out
