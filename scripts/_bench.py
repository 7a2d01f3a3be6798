"""What every benchmark script ends with: its checks as PASS/MISS lines and an exit code."""

from __future__ import annotations

import time


def report(checks: list[tuple[str, bool]], started: float) -> int:
    """Print each (label, ok) and the total time; 0 when every check passed, else 1."""
    for label, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if all(ok for _, ok in checks) else 1
