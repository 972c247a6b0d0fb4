"""Applied puts/s and txns/s of the key-value state machine alone (no Raft, no disk).

Entries are encoded up front (the proposer does that), so the figures cover what a member
does per committed entry: decode the envelope, check the session, execute, record the
outcome, feed the watch hub. Usage: python benchmarks/kv_apply.py [--n N] [--keys K]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kvcheck.reference.kv import KVStateMachine
from kvcheck.reference.kv.requests import (
    Compare,
    CompareResult,
    CompareTarget,
    Envelope,
    LogRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
    WatchCreateRequest,
    encode_entry,
)


def entries(n: int, make: Callable[[int], LogRequest], clients: int = 8) -> list[bytes]:
    return [encode_entry(Envelope(1 + i % clients, 1 + i // clients, make(i))) for i in range(n)]


def run(label: str, data: list[bytes], machine: KVStateMachine | None = None) -> KVStateMachine:
    m = machine or KVStateMachine()
    start, cpu = time.perf_counter(), time.process_time()
    apply = m.apply
    for index, entry in enumerate(data, start=1 + m.applied_index):
        apply(index, entry)
        if index % 256 == 0:
            m.take_watch_responses()
    m.take_watch_responses()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    report(label, len(data), elapsed, cpu)
    return m


def report(label: str, n: int, elapsed: float, cpu: float) -> None:
    """Rate by wall clock and by this process's CPU time (the machine may be shared)."""
    print(f"{label:<44} {n / elapsed:>10,.0f} /s wall {n / cpu:>10,.0f} /s cpu   ({n} in {elapsed:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000, help="entries per figure")
    parser.add_argument("--keys", type=int, default=1_000, help="distinct keys")
    parser.add_argument("--wal-seconds", type=float, default=3.0,
                        help="time per WAL batch size (0: skip the WAL figures)")
    args = parser.parse_args()
    n, nkeys = args.n, args.keys
    value = b"v" * 100

    def key(i: int) -> bytes:
        return b"key/%06d" % (i % nkeys)

    puts = entries(n, lambda i: PutRequest(key(i), value))
    m = run("puts (100-byte values)", puts)
    run("puts, prev_kv", entries(n, lambda i: PutRequest(key(i), value, prev_kv=True)))

    watched = KVStateMachine()
    watched.create_watch(WatchCreateRequest(b"key/", b"key0", prev_kv=True))
    watched.create_watch(WatchCreateRequest(key(0)))
    run("puts, with a prefix watch and a key watch", puts, watched)

    # txns: compare-and-set on the value the previous round wrote (all succeed)
    def cas(i: int) -> TxnRequest:
        old = b"%d" % (i // nkeys - 1) if i >= nkeys else b""
        guard = (Compare(CompareResult.EQUAL, CompareTarget.VALUE, key(i), value=old) if old
                 else Compare(CompareResult.EQUAL, CompareTarget.VERSION, key(i), version=0))
        return TxnRequest([guard], [PutRequest(key(i), b"%d" % (i // nkeys))], [RangeRequest(key(i))])

    t = run("txns (compare value, put | range)", entries(n, cas))
    assert t.revision == n + 1, "every CAS should have succeeded"
    run("txns (4 puts each)", entries(n // 4, lambda i: TxnRequest(
        [], [PutRequest(key(4 * i + j), value) for j in range(4)])))

    reads = [RangeRequest(key(i)) for i in range(n)]
    start, cpu = time.perf_counter(), time.process_time()
    for r in reads:
        m.range(r)
    report("single-key ranges (read outside the log)", n, time.perf_counter() - start,
           time.process_time() - cpu)
    prefix = RangeRequest(b"key/", b"key0", limit=100)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(200):
        m.range(prefix)
    report(f"prefix ranges over {nkeys} keys, limit 100", 200, time.perf_counter() - start,
           time.process_time() - cpu)
    start, cpu = time.perf_counter(), time.process_time()
    snap = m.snapshot()
    KVStateMachine.restore(snap)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{'snapshot + restore after the puts':<44} {elapsed * 1000:>10,.1f} ms wall "
          f"{cpu * 1000:>8,.1f} ms cpu ({len(snap):,} bytes, {m.revision - 1} versions)")
    if args.wal_seconds > 0:
        # The WAL half of issue 4's figures: appends/s with an fsync per batch of 1, 16, 256.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import wal_append

        print()
        wal_append.main(["--seconds", str(args.wal_seconds), "--batches", "1,16,256"])


if __name__ == "__main__":
    main()
