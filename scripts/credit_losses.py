"""Credit losses of a scenario recording, adaptive beside static, in all and per scenario: the load
test's tables (loadgen/losses.py) for a recording written by scripts/scenario_recording.py, whose labels
lie beside it (`X.labels.jsonl`). The adaptive side is the deployment's policy (STREAMRISK_CREDIT_POLICY,
else the shipped one), the static side credit/static_policy.yaml, both with the shipped ruleset.

Run: .venv/bin/python scripts/credit_losses.py demo.jsonl
     STREAMRISK_CREDIT_POLICY=capped.yaml .venv/bin/python scripts/credit_losses.py demo.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from streamrisk.loadgen.labels import Label
from streamrisk.loadgen.losses import credit_losses
from streamrisk.settings import Settings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recording", type=Path, help="a recording of scenario_recording.py (labels beside it)")
    args = ap.parse_args()
    sent = []
    with args.recording.open("rb") as fh:
        for line in fh:
            r = orjson.loads(line)
            sent.append((r["topic"], r["key"], r["value"]))
    with args.recording.with_suffix(".labels.jsonl").open("rb") as fh:
        labels = [Label(**orjson.loads(line)) for line in fh if line.strip()]
    text, _ = credit_losses(sent, labels, Settings.from_env())
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
