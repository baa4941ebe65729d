"""Shared values for the journal tests: markets, a small engine config, seeded command loads,
deterministic batch sizes, and clean (journal-free) replays to compare against.

The load is ``benchmarks.workload``'s ``core`` mix (prefill then stream): real orders,
cancels, amends and fills. ``batch_size_after(seq)`` is the size of the batch a writer
appends after sequence number ``seq``; the crash driver and the tests both use it, so a test
knows exactly which batch was in flight when a driver was killed.
"""

from __future__ import annotations

import numpy as np

from benchmarks import workload
from engine.commands import COMMAND_DTYPE
from engine.engine import Engine
from engine.spec import EngineConfig

SPECS = list(workload.MARKETS)
CONFIG = EngineConfig(max_orders=1 << 13, max_accounts=1 << 6)
MAX_BATCH = 48


def load(n_stream: int, seed: int = 7) -> np.ndarray:
    """Prefill + ``n_stream`` stream commands of the core mix, one contiguous record array."""
    wl = workload.build(workload.CORE, n_stream, seed=seed)
    return np.ascontiguousarray(np.concatenate([wl.prefill, wl.stream]))


def batch_size_after(seq: int) -> int:
    """Records in the batch appended after sequence number ``seq`` (1..MAX_BATCH)."""
    return 1 + (seq * 2654435761 + 12345) % MAX_BATCH


def batches(commands: np.ndarray, start_seq: int = 0):
    """``(first index, records)`` slices of ``commands`` following ``batch_size_after``."""
    seq = start_seq
    while seq < len(commands):
        n = batch_size_after(seq)
        yield seq, commands[seq : seq + n]
        seq += n


def clean_hash(commands: np.ndarray, upto: int) -> str:
    """``state_hash()`` of a fresh engine after the first ``upto`` commands (one apply; the
    load has no BATCH records, so apply boundaries do not matter)."""
    engine = Engine(SPECS, CONFIG)
    if upto:
        engine.apply(np.ascontiguousarray(commands[:upto]))
    return engine.state_hash()


def journal_records(journal, after_seq: int = 0) -> np.ndarray:
    """Every command the journal holds after ``after_seq``, as one record array."""
    parts = [np.frombuffer(rec.records, dtype=COMMAND_DTYPE) for rec in journal.batches(after_seq)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=COMMAND_DTYPE)


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))
