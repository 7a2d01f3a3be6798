"""Two stock Faust apps for scripts/bench_pipeline.py, written to a temp dir and run as `python app.py
worker`: a do-nothing agent (decode each event) and a naive agent (decode, Table update, `await send`
per event). Each writes its progress, "count first_wall last_wall", to a file the benchmark polls.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamrisk.procs import free_port

_SOURCE = '''
import time
import faust
import orjson

N = {n!r}
PROGRESS = {progress!r}
app = faust.App(
    {app_id!r}, broker="kafka://{bootstrap}", store="memory://", datadir={datadir!r},
    topic_partitions={partitions!r}, web_enabled=False, consumer_auto_offset_reset="earliest",
)
raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
source = app.topic(*{topics!r}, **raw)
out = app.topic({out_topic!r}, partitions={partitions!r}, **raw)
totals = app.Table("totals", default=int, partitions={partitions!r})
seen = {{"count": 0, "first": 0.0}}


def progress():
    seen["count"] += 1
    if seen["count"] == 1:
        seen["first"] = time.time()
    if seen["count"] % 500 == 0 or seen["count"] >= N:
        with open(PROGRESS, "w") as fh:
            fh.write(f"{{seen['count']}} {{seen['first']}} {{time.time()}}")


@app.agent(source)
async def run(stream):
    async for key, value in stream.items():
        event = orjson.loads(value)
        if {naive!r}:
            totals[event["user_id"]] += round(event["amount"] * 100)
            await out.send(key=key, value=value)
        progress()


if __name__ == "__main__":
    app.main()
'''


def write_app(
    work: Path, *, naive: bool, bootstrap: str, app_id: str, topics: list[str], out_topic: str, n: int,
    partitions: int = 4,
) -> tuple[list[str], Path]:
    """Write the app; return its command line and its progress file."""
    work.mkdir(parents=True, exist_ok=True)
    progress = work / "progress"
    path = work / "app.py"
    path.write_text(_SOURCE.format(
        n=n, progress=str(progress), app_id=app_id, bootstrap=bootstrap, datadir=str(work / "data"),
        topics=tuple(topics), out_topic=out_topic, naive=naive, partitions=partitions,
    ))
    # Faust's worker binds its web port even with web_enabled=False; its default, 6066, is ours too.
    web_port = str(free_port())
    return [sys.executable, str(path), "worker", "-l", "warn", "--web-port", web_port], progress


def read_progress(progress: Path) -> tuple[int, float, float]:
    """(events counted, wall time of the first, wall time of the last write); zeros before the first."""
    try:
        count, first, last = progress.read_text().split()
        return int(count), float(first), float(last)
    except (OSError, ValueError):
        return 0, 0.0, 0.0
