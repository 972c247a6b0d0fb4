"""The key browser's side of ``kvcheck serve``: one client to a live cluster, shared by every
page, and the queries the pages make.

Why: etcdkeeper shows a cluster as a tree of ``/``-separated keys with their values and
metadata; kvcheck users want the same over the reference store, read-only unless asked. How:
``ClusterBrowser`` holds one ``reference.client.Client`` (it fails over between members and
reconnects by itself) and a task refreshing the cluster status every couple of seconds; a
cluster that does not answer is shown with its error and retried, and the server keeps
serving. ``children`` lists one level of the tree lazily: a keys-only range over the prefix
with a limit, grouped by the next ``/`` segment, and continued past each sub-folder (so a
folder with a million keys under one child costs one request per child, not a million keys).
``key_history`` replays the key's changes through a watch from the compaction revision (the
store's MVCC history is exactly what a watch from an old revision delivers). Keys travel in
URLs as hex so binary keys work.

Real etcd (``--endpoints ... --etcd``): the browser holds a ``workloads.etcd.client.EtcdClient``
instead (the same KV methods and response types, over etcd's JSON gateway). Only the cluster
calls differ, so ``ReferenceAdmin`` and ``EtcdAdmin`` turn each store's member list and
per-member status into the one row shape the page shows; etcd's maintenance status has no
role (derived here: the member whose id is the leader's) and no compaction revision (left
empty).
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from kvcheck.reference.client import Client, ClientError, open_client
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.kv.requests import prefix_end
from kvcheck.reference.wire import ErrorCode

if TYPE_CHECKING:
    from kvcheck.workloads.etcd.client import EtcdClient

STATUS_INTERVAL = 2.0
LIST_LIMIT = 200  # children per folder listing
HISTORY_LIMIT = 100  # past versions shown per key


def key_text(key: bytes) -> str:
    return key.decode("utf-8", errors="backslashreplace")


def value_views(value: bytes) -> dict[str, Any]:
    """The value as text (when it is UTF-8), pretty JSON (when it parses) and hex."""
    out: dict[str, Any] = {"hex": value.hex(" "), "size": len(value), "text": None, "json": None}
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        out["kind"] = "binary"
        return out
    out["text"] = text
    out["kind"] = "text"
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"') or stripped in ("true", "false", "null") or _is_number(stripped):
        try:
            out["json"] = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            out["kind"] = "json"
        except ValueError:
            pass
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def kv_json(kv: kvr.KeyValue, *, with_value: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"key": kv.key.hex(), "name": key_text(kv.key),
                           "create_revision": kv.create_revision, "mod_revision": kv.mod_revision,
                           "version": kv.version, "lease": f"{kv.lease:x}" if kv.lease else ""}
    if with_value:
        out["value"] = value_views(kv.value)
    return out


@dataclass
class ClusterSource:
    """Where the cluster is: endpoints, or a ``kvcheck cluster`` directory, plus TLS."""

    endpoints: list[str] = field(default_factory=list)
    data_dir: Path | None = None
    ssl_context: ssl.SSLContext | None = None
    etcd: bool = False  # the endpoints are real etcd members (JSON gateway, plain HTTP)

    def describe(self) -> str:
        if self.data_dir is not None:
            return f"cluster directory {self.data_dir}"
        return ("etcd endpoints " if self.etcd else "endpoints ") + ",".join(self.endpoints)


class ReferenceAdmin:
    """Member list and status of a reference cluster, as the page's rows."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def members(self) -> list[dict[str, Any]]:
        return [{"id": f"{m.get('id', 0):x}", "name": m.get("name", ""), "client": m.get("client", ""),
                 "learner": bool(m.get("learner"))} for m in await self.client.member_list()]

    async def status(self, endpoint: str, timeout: float) -> dict[str, Any]:
        st = await self.client.status(endpoint, timeout=timeout)
        return {"role": st.get("role"), "leader": f"{st.get('leader', 0):x}", "term": st.get("term"),
                "revision": st.get("revision"), "compact_revision": st.get("compact_revision"),
                "raft_index": st.get("raft_index"), "applied": st.get("applied"),
                "db_size": st.get("db_size")}


class EtcdAdmin:
    """Member list (/v3/cluster/member/list) and status (/v3/maintenance/status) of real
    etcd, as the page's rows: the same columns, with what etcd gives."""

    def __init__(self, client: EtcdClient) -> None:
        self.client = client

    async def members(self) -> list[dict[str, Any]]:
        rows = []
        for m in await self.client.member_list():
            urls = m.get("client_urls") or []
            rows.append({"id": f"{m.get('id', 0):x}", "name": m.get("name", ""),
                         "client": urls[0].split("://", 1)[-1].rstrip("/") if urls else "",
                         "learner": bool(m.get("is_learner"))})
        return rows

    async def status(self, endpoint: str, timeout: float) -> dict[str, Any]:
        st = await self.client.status(endpoint, timeout=timeout)
        leader = int(st.get("leader") or 0)
        role = "no leader" if not leader else "leader" if leader == st.get("member_id") else "follower"
        return {"role": role, "leader": f"{leader:x}", "term": st.get("raft_term"),
                "revision": st.get("revision"), "compact_revision": None,  # not in etcd's status
                "raft_index": st.get("raft_index"), "applied": st.get("raft_applied_index"),
                "db_size": st.get("db_size"), "version": st.get("version")}


class ClusterBrowser:
    def __init__(self, source: ClusterSource, *, timeout: float = 3.0) -> None:
        self.source = source
        self.timeout = timeout
        self.client: Client | EtcdClient | None = None
        self.admin: ReferenceAdmin | EtcdAdmin | None = None
        self.status: dict[str, Any] = {"state": "connecting", "error": None, "members": [],
                                       "updated": None, "attempts": 0}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the client open and refresh the status until cancelled."""
        endpoints = self.source.endpoints
        ssl_context = self.source.ssl_context
        if self.source.etcd:
            from kvcheck.workloads.etcd.client import EtcdClient

            etcd = EtcdClient(endpoints, timeout=self.timeout)
            try:
                self.client = etcd
                self.admin = EtcdAdmin(etcd)
                task_status.started()
                await self._status_loop()
            finally:
                with trio.CancelScope(shield=True):
                    await etcd.aclose()
            return
        if self.source.data_dir is not None:
            from kvcheck.reference.cluster import ClusterInfo, client_ssl

            info = ClusterInfo.load(self.source.data_dir)
            endpoints = endpoints or info.endpoints()
            ssl_context = ssl_context or client_ssl(info)
        async with open_client(endpoints, timeout=self.timeout, ssl_context=ssl_context) as client:
            self.client = client
            self.admin = ReferenceAdmin(client)
            task_status.started()
            await self._status_loop()

    async def _status_loop(self) -> None:
        while True:
            try:
                await self.refresh_status()
            except Exception as exc:  # e.g. a reply this client cannot decode: show it, go on
                self.status.update(state="error", error=f"{type(exc).__name__}: {exc}", updated=time.time())
            await trio.sleep(STATUS_INTERVAL)

    async def refresh_status(self) -> None:
        assert self.admin is not None
        admin = self.admin
        self.status["attempts"] += 1
        try:
            members = await admin.members()
        except ClientError as exc:
            self.status.update(state="unreachable", error=f"{exc} (retrying every {STATUS_INTERVAL:g} s)",
                               updated=time.time())
            return
        rows: list[dict[str, Any]] = []

        async def one(row: dict[str, Any]) -> None:
            endpoint = row["client"]
            if endpoint:
                try:
                    row.update(await admin.status(endpoint, timeout=min(self.timeout, 1.5)))
                except ClientError as exc:
                    row["error"] = str(exc)
            rows.append(row)

        async with trio.open_nursery() as nursery:
            for m in members:
                nursery.start_soon(one, m)
        rows.sort(key=lambda r: r["name"])
        self.status.update(state="ok", error=None, members=rows, updated=time.time())

    def _client(self) -> Client | EtcdClient:
        if self.client is None:
            raise ClientError(ErrorCode.UNAVAILABLE, "not connected yet")
        return self.client

    async def children(self, prefix: bytes) -> dict[str, Any]:
        """One level of the tree under ``prefix`` ("" or ending with "/")."""
        client = self._client()
        end = prefix_end(prefix)
        start = prefix or b"\0"  # the empty prefix: every key, etcd's ("\0", "\0")
        dirs: list[dict[str, Any]] = []
        keys: list[dict[str, Any]] = []
        more = False
        revision = 0
        seen_dirs: set[bytes] = set()
        while True:
            if len(dirs) + len(keys) >= LIST_LIMIT:
                more = True
                break
            resp = await client.get(start, range_end=end, keys_only=True, limit=LIST_LIMIT)
            revision = resp.header.revision
            if not resp.kvs:
                break
            last_dir: bytes | None = None
            for kv in resp.kvs:
                rest = kv.key[len(prefix):]
                slash = rest.find(b"/")
                if slash < 0:
                    keys.append(kv_json(kv, with_value=False))
                    last_dir = None
                    continue
                sub = prefix + rest[:slash + 1]
                last_dir = sub
                if sub not in seen_dirs:
                    seen_dirs.add(sub)
                    dirs.append({"prefix": sub.hex(), "name": key_text(rest[:slash + 1])})
            if not resp.more:
                break
            # continue after the batch; past the whole sub-folder when it ended in one
            start = prefix_end(last_dir) if last_dir is not None else resp.kvs[-1].key + b"\0"
            if end != b"\0" and start >= end:
                break
        return {"prefix": prefix.hex(), "name": key_text(prefix), "dirs": dirs, "keys": keys,
                "more": more, "revision": revision}

    async def key(self, key: bytes) -> dict[str, Any] | None:
        client = self._client()
        resp = await client.get(key)
        if not resp.kvs:
            return None
        out = kv_json(resp.kvs[0])
        out["revision"] = resp.header.revision
        out["history"], out["history_note"] = await self.key_history(key, resp.kvs[0].mod_revision)
        return out

    async def key_history(self, key: bytes, upto: int) -> tuple[list[dict[str, Any]], str]:
        """The key's changes before ``upto`` (its current mod revision), newest first, from a
        watch replaying the store's history since the compaction revision."""
        client = self._client()
        start = 1
        events: list[dict[str, Any]] = []
        note = ""
        for _ in range(2):
            events.clear()
            canceled_at = 0
            with trio.move_on_after(self.timeout) as scope:
                async with client.watch(key, start_revision=start) as stream:
                    async for resp in stream:
                        if resp.canceled:
                            canceled_at = resp.compact_revision
                            break
                        done = False
                        for ev in resp.events:
                            if ev.kv.mod_revision >= upto:
                                done = True
                                break
                            if ev.type == kvr.EventType.DELETE:
                                events.append({"type": "delete", "mod_revision": ev.kv.mod_revision})
                            else:
                                events.append({"type": "put", **kv_json(ev.kv)})
                        if done:
                            break
            if scope.cancelled_caught:
                note = "the history did not arrive in time; showing what did"
                break
            if canceled_at:
                start = canceled_at
                note = f"history before the compaction revision {canceled_at} is gone"
                continue
            break
        events.reverse()
        if len(events) > HISTORY_LIMIT:
            note = (note + "; " if note else "") + f"showing the last {HISTORY_LIMIT} of {len(events)} changes"
            events = events[:HISTORY_LIMIT]
        return events, note

    async def put(self, key: bytes, value: bytes) -> int:
        resp = await self._client().put(key, value)
        return resp.header.revision

    async def delete(self, key: bytes) -> int:
        resp = await self._client().delete(key)
        return resp.deleted

    @contextlib.asynccontextmanager
    async def watch(self, prefix: bytes) -> AsyncIterator[AsyncIterator[kvr.WatchResponse]]:
        async with self._client().watch(prefix or b"\0", range_end=prefix_end(prefix)) as stream:
            yield stream
