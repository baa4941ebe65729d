"""A child process for the kill -9 test: a sequencer over a real journal and nonce log that
submits orders with nonces in concurrent bursts and prints ``ack <seq> <nonce>`` (flushed)
the moment each acknowledgement returns, until it is killed.

Usage: python sequencer_crash_driver.py DATA_DIR
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_sequencer import CONFIG, SETUP, SPECS, T0, order  # noqa: E402

from api.nonce_log import NonceLog  # noqa: E402
from api.sequencer import Sequencer  # noqa: E402
from engine.journal import JournaledEngine  # noqa: E402


async def main(data_dir: str) -> None:
    journaled = JournaledEngine.open(os.path.join(data_dir, "journal"), SPECS, CONFIG)
    seq = Sequencer(journaled, clock_ns=lambda: T0, tick_interval_s=None, nonce_log=NonceLog.open(data_dir))
    await seq.start()
    await seq.submit_many(SETUP)
    print("ready", flush=True)
    nonce = 0

    async def one(i: int, n: int) -> None:
        ack = await seq.submit(order(i), nonce=("crash", n))
        sys.stdout.write(f"ack {ack.seq} {n}\n")
        sys.stdout.flush()

    i = 0
    while True:
        burst = []
        for _ in range(1 + i % 17):
            nonce += 1
            burst.append(one(i, nonce))
            i += 1
        await asyncio.gather(*burst)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
