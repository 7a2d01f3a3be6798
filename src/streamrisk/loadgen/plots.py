"""PNG plots of a load test report: latency over time, latency histogram, throughput, lag."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the four plots into `out_dir`; returns their paths."""
    s = report["series"]
    cfg = report["config"]
    where = f"{cfg['workers']} worker(s), {cfg['broker']}"
    paths = []

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(s["second"], s["p50_ms"], label="p50", lw=1.5)
    ax.plot(s["second"], s["p99_ms"], label="p99", lw=1.0)
    ax.set(xlabel="seconds into the run", ylabel="produce → decision (ms)",
           title=f"Latency over time ({where})")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    paths.append(_save(fig, out_dir / "latency_over_time.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    lat = report["latency_ms"]
    buckets = report.get("latency_histogram_ms", [])
    if buckets:
        xs, counts = zip(*buckets, strict=True)
        ax.bar(xs, counts, width=[x * 0.25 for x in xs], align="edge")
    for key, style in (("p50", "-"), ("p99", "--"), ("p99.9", ":")):
        if lat.get(key):
            ax.axvline(lat[key], color="k", ls=style, lw=1, label=f"{key} {lat[key]:.1f} ms")
    ax.set_xscale("log")
    ax.set(xlabel="produce → decision (ms, log)", ylabel="payments",
           title=f"Latency histogram (n={lat['n']:,})")
    ax.legend()
    paths.append(_save(fig, out_dir / "latency_histogram.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(s["second"], s["sent"], label="events sent /s", lw=1.5)
    ax.plot(s["second"], s.get("payments_sent", []) or [0] * len(s["second"]), label="payments sent /s",
            lw=1.0, ls="--")
    ax.plot(s["second"], s["decided"], label="payments decided /s", lw=1.5)
    ax.set(xlabel="seconds into the run", ylabel="per second", title=f"Throughput ({where})")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out_dir / "throughput.png"))

    fig, ax = plt.subplots(figsize=(8, 4))
    lag_t = [t for t, g in zip(s["lag_t"], s["group_lag"], strict=True) if g is not None]
    lag_v = [g for g in s["group_lag"] if g is not None]
    ax.plot(lag_t, lag_v, label="consumer group lag (records not committed)", lw=1.5)
    ax.plot(s["lag_t"], s["in_flight"], label="payments sent, not yet decided", lw=1.0)
    ax.set(xlabel="seconds into the run", ylabel="records", title=f"Lag ({where})")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(_save(fig, out_dir / "lag.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
