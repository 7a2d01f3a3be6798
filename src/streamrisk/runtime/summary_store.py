"""The worker's local copy of the merchant summaries topic, in RocksDB (rocksdict): what a bounded
merchant view (core/merchant_view.py) reads on a cache miss.

The copy is rebuilt at every start, as the in-memory view was: the broadcast reader reads the compacted
topic from the beginning, so the directory is emptied when the store opens and nothing it held can be
stale. Writes skip RocksDB's write-ahead log for the same reason: a crash loses nothing that is not
read again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from rocksdict import Options, Rdict, WriteOptions

from ..core.topic_names import consumer_group
from ..settings import Settings


class RocksSummaryStore:
    """Merchant id -> raw summary, on local disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # Small memtables: a summary is written once per interval per busy merchant, and read far more.
        options.set_write_buffer_size(16 * 2**20)
        self._db = Rdict(str(path), options)
        writes = WriteOptions()
        writes.disable_wal = True
        self._db.set_write_options(writes)

    def get(self, merchant_id: str) -> bytes | None:
        return self._db.get(merchant_id.encode())

    def put(self, merchant_id: str, value: bytes) -> None:
        self._db[merchant_id.encode()] = value

    def delete(self, merchant_id: str) -> None:
        del self._db[merchant_id.encode()]

    def keys(self) -> Iterator[str]:
        return (k.decode() for k in self._db.keys())  # noqa: SIM118 (an Rdict iterates otherwise)

    def close(self) -> None:
        self._db.close()


def summary_store_path(settings: Settings) -> Path:
    """One directory per worker under the data directory (workers may share a machine and its data
    directory): named by its static member id, else by its web port."""
    me = settings.group_instance_id or f"port-{settings.web_port}"
    return settings.data_dir / consumer_group(settings) / f"merchant-summaries-{me}"
