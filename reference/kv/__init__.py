"""The key-value state machine with etcd v3 semantics (MVCC, txn, leases, watches, sessions).

``KVStateMachine`` (machine.py) is what the node applies committed entries to; the request,
response and error types it speaks, and the log-entry codec, are in ``requests``.
"""

from kvcheck.reference.kv.machine import KVStateMachine, min_lease_ttl
from kvcheck.reference.kv.requests import Envelope, decode_entry, encode_entry

__all__ = ["Envelope", "KVStateMachine", "decode_entry", "encode_entry", "min_lease_ttl"]
