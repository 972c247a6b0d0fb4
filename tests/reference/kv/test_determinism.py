"""The state machine is deterministic: the same entries give byte-identical snapshots, responses
and watch streams in processes with different hash seeds (no iteration over hashed sets leaks)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r"""
import hashlib
from kvcheck.reference.kv import KVStateMachine, encode_entry
from kvcheck.reference.kv.requests import *

m = KVStateMachine(min_lease_ttl=2)
m.promote(0.0)
out = hashlib.sha256()
m.create_watch(WatchCreateRequest(b"\0", b"\0", prev_kv=True))
reqs = [LeaseGrantRequest(5), LeaseGrantRequest(7, id=40)]
for i in range(60):
    k = b"k%d" % (i * 7 % 13)
    reqs.append(PutRequest(k, b"v%d" % i, lease=1 if i % 5 == 0 else 0))
    if i % 9 == 0:
        reqs.append(DeleteRangeRequest(b"k1", b"k5", prev_kv=True))
    if i % 11 == 0:
        reqs.append(TxnRequest([Compare(CompareResult.GREATER, CompareTarget.VERSION, k)],
                               [PutRequest(b"t%d" % i, b"x"), DeleteRangeRequest(b"k2", b"k3")],
                               [RangeRequest(b"k", b"l")]))
    if i == 30:
        reqs.append(CompactionRequest(20))
for index, req in enumerate(reqs, 1):
    try:
        resp = m.apply(index, encode_entry(Envelope(1, index, req)), float(index))
        out.update(encode_message(resp))
    except KVError as err:
        out.update(err.code.encode())
    for wid, w in m.take_watch_responses():
        out.update(encode_message(w))
expired = m.expired_leases(1000.0)
m.apply(len(reqs) + 1, encode_entry(Envelope(0, 0, LeaseExpireRequest(expired))))
out.update(m.snapshot())
out.update(repr(m.hash_kv()).encode())
print(out.hexdigest())
"""


def run(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip()


def test_same_entries_same_bytes_under_different_hash_seeds() -> None:
    first, second = run("1"), run("2")
    assert len(first) == 64 and first == second
