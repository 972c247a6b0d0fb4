"""Does etcd order a watch stream's progress responses with its events?

    python benchmarks/etcd_progress_order.py [--seconds 10] [--writers 8] [--every 0.003]

Why: etcd's API guarantees say a progress notification (the answer to a progress request,
``watch_id`` -1) means every event up to its header revision has been delivered. Before
3.4.25 / 3.5.8 (etcd-io/etcd#15220) etcd answers a progress request on the stream's control
channel with the store's revision at that moment, and its send loop picks between that
channel and the events' channel: a response can overtake events at or below its revision
(``A``: the guarantee broken) or be overtaken by events above it (``B``: the stream's
revisions go back). The watch checker reports both as ``watch:bookmarkable`` in watch and
kubernetes runs against etcd 3.4.23; this script shows them on one bare stream, outside the
harness and the checkers.

How: a 3-member cluster (``plain_cluster``), ``--writers`` tasks putting keys under ``p/``
as fast as they can, one watch of ``p/`` on member 1 and a progress request every
``--every`` seconds; prints each A as it comes and the counts at the end.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import trio

from kvcheck.reference.client import Failed
from kvcheck.workloads.etcd.client import EtcdClient
from kvcheck.workloads.etcd.cluster import plain_cluster


async def probe(endpoints: list[str], seconds: float, writers: int, every: float) -> None:
    writer_client = EtcdClient(endpoints, home=endpoints[0])
    watcher = EtcdClient(endpoints, home=endpoints[0])
    counts = {"progress": 0, "A": 0, "B": 0}
    last_event = progress = 0

    async def write(slot: int) -> None:
        i = 0
        while True:
            i += 1
            await writer_client.put(b"p/k%d" % (i % 5), b"%d-%d" % (slot, i))

    try:
        async with trio.open_nursery() as nursery:
            for slot in range(writers):
                nursery.start_soon(write, slot)
            async with watcher.watch(b"p/", range_end=b"p0", resume=False) as stream:
                created = await stream.__anext__()
                assert created.created, created

                async def ask() -> None:
                    while True:
                        await trio.sleep(every)
                        try:
                            await stream.request_progress()
                        except Failed:
                            return

                nursery.start_soon(ask)
                with trio.move_on_after(seconds):
                    async for resp in stream:
                        if resp.watch_id == -1:
                            counts["progress"] += 1
                            if resp.header.revision < last_event:
                                counts["B"] += 1
                            progress = max(progress, resp.header.revision)
                        for ev in resp.events:
                            if ev.kv.mod_revision <= progress:
                                counts["A"] += 1
                                print(f"A: the event at revision {ev.kv.mod_revision} came after a progress "
                                      f"response at {progress}", flush=True)
                            last_event = max(last_event, ev.kv.mod_revision)
            nursery.cancel_scope.cancel()
    finally:
        await writer_client.aclose()
        await watcher.aclose()
    print(f"{counts['progress']} progress responses, events up to revision {last_event}; "
          f"A (an event at or below an earlier progress revision): {counts['A']}; "
          f"B (a progress revision below an event already delivered): {counts['B']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--every", type=float, default=0.003, help="seconds between progress requests")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvcheck-progress-") as tmp, plain_cluster(Path(tmp), 3) as endpoints:
        trio.run(probe, endpoints, args.seconds, args.writers, args.every)


if __name__ == "__main__":
    main()
