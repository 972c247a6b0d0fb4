"""The TCP transport's MsgApp coalescing keeps Raft's meaning (one ack covers the merged run)."""

from __future__ import annotations

from kvcheck.reference import raft
from kvcheck.reference.raft import Entry, Message, MessageType
from kvcheck.reference.server import coalesce_appends


def app(to: int, index: int, log_term: int, entries: list[tuple[int, int]], commit: int, term: int = 2) -> Message:
    return Message(MessageType.APP, to=to, from_=1, term=term, log_term=log_term, index=index,
                   entries=tuple(Entry(t, i, data=b"x") for i, t in entries), commit=commit)


def test_contiguous_appends_to_one_peer_merge() -> None:
    merged = coalesce_appends([app(2, 5, 1, [(6, 2)], 5), app(2, 6, 2, [(7, 2)], 6), app(2, 7, 2, [(8, 2)], 6)])
    assert len(merged) == 1
    m = merged[0]
    assert (m.index, m.log_term, m.commit) == (5, 1, 6)
    assert [e.index for e in m.entries] == [6, 7, 8]


def test_non_contiguous_other_peers_and_other_types_stay_apart_in_order() -> None:
    hb = Message(MessageType.HEARTBEAT, to=2, from_=1, term=2, commit=5)
    batch = [
        app(2, 5, 1, [(6, 2)], 5),
        app(3, 5, 1, [(6, 2)], 5),  # another peer
        app(2, 7, 2, [(8, 2)], 5),  # a gap: index 7 does not follow entry 6
        hb,
        app(2, 8, 2, [(9, 3)], 5, term=3),  # another term
        app(2, 9, 3, [], 5, term=3),  # empty append (a probe / commit update)
    ]
    assert coalesce_appends(batch) == batch
    assert raft.NONE == 0
