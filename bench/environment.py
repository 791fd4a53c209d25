"""What the machine was doing while we measured: CPU, cores, load, and other busy processes."""

from __future__ import annotations

import os
import platform
import sys
import time

import psutil


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def busy_processes(sample_s: float = 1.0, threshold: float = 10.0) -> list[dict]:
    """Other processes using more than ``threshold`` % of one core over a short sample."""
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "name", "cmdline"]) if p.pid != me]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(sample_s)
    busy = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= threshold:
            cmd = " ".join(p.info.get("cmdline") or [p.info.get("name") or "?"])
            busy.append({"pid": p.pid, "cpu_percent": round(pct, 1), "cmd": cmd[:120]})
    return sorted(busy, key=lambda d: -d["cpu_percent"])


def snapshot() -> dict:
    return {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "busy_processes": busy_processes(),
    }


def describe() -> dict:
    return {
        "cpu": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
