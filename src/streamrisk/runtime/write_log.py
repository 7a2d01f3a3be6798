"""A state store's writes on their way to the changelog and, exactly-once, what they overwrote.

Both stores (app.FaustKV over memory, rocks.RocksKV over RocksDB) write a key at once and queue its
changelog record here; the worker takes the queue once per batch and produces it in that batch's
transaction (runner.py).

Exactly-once also keeps an undo log. The worker processes the next batch while the previous batch's
transaction commits, so up to two transactions' writes are open at once: one epoch per transaction,
each key's value before the epoch first wrote it. `take` seals the current epoch with the records it
hands out, `committed` drops the oldest epoch when its transaction commits, and `roll_back` undoes
every open epoch, newest first, when one aborts: the batches after an aborted one were processed on
top of its state, and are read again with it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

Record = tuple[int, bytes, bytes | None]  # (changelog partition, key, value; None: a tombstone)
# key -> (changelog partition, value before the epoch wrote it; None: the key did not exist)
Epoch = dict[bytes, tuple[int, bytes | None]]
# Puts a key's value back (None: deletes it).
Restore = Callable[[bytes, int, bytes | None], None]


class WriteLog:
    __slots__ = ("_sealed", "pending", "undo")

    def __init__(self) -> None:
        self.pending: list[Record] = []
        # The current epoch (writes not yet taken), read by the stores' put and delete; None: no undo
        # log (at-least-once).
        self.undo: Epoch | None = None
        self._sealed: deque[Epoch] = deque()  # taken, their transactions not committed; oldest first

    def keep_undo(self) -> None:
        """Exactly-once: from now on, note what each write overwrites."""
        self.undo = {}

    def take(self) -> list[Record]:
        """The records written since the last call, for one transaction (their epoch is sealed)."""
        pending, self.pending = self.pending, []
        if self.undo is not None:
            self._sealed.append(self.undo)  # also when empty: one epoch per transaction
            self.undo = {}
        return pending

    def committed(self) -> None:
        """The oldest open transaction committed: its writes are the state to return to."""
        if self._sealed:
            self._sealed.popleft()

    def roll_back(self, restore: Restore) -> int:
        """A transaction aborted: put back every key the open epochs wrote (newest first, so a key
        written in several ends with its value before the oldest), forget the writes not yet taken.
        Returns the keys undone."""
        self.pending = []
        if self.undo is None:
            return 0
        epochs = [*self._sealed, self.undo]
        self._sealed.clear()
        self.undo = {}
        undone = 0
        for epoch in reversed(epochs):
            for key, (partition, before) in epoch.items():
                restore(key, partition, before)
            undone += len(epoch)
        return undone

    @property
    def open_transactions(self) -> int:
        """Epochs taken whose transactions have not committed yet."""
        return len(self._sealed)
