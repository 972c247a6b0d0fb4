"""The register operations workloads need, over the store's client interface.

``KVRegisterClient`` turns read/write/cas of integer values into calls on any
``kvcheck.reference.client.KVClient`` (the TCP client of the reference store, the
simulation's in-process client, later real etcd): a linearizable ``get``, a ``put``, and the
client's ``cas`` transaction. The client's ``Failed`` becomes ``DefiniteFailure`` (recorded
``fail``) and its ``Indeterminate`` stays indeterminate (recorded ``info``).
"""

from __future__ import annotations

from kvcheck.reference.client import Failed, KVClient
from kvcheck.reference.client import Indeterminate as ClientIndeterminate
from kvcheck.workloads.client import DefiniteFailure, Indeterminate, decode_value, encode_value


class KVRegisterClient:
    """``RegisterClient`` over a ``KVClient``."""

    def __init__(self, kv: KVClient, *, serializable: bool = False) -> None:
        self.kv = kv
        self.served_by: int | None = None  # the member that answered the last call
        # serializable: reads are answered from the serving member's local state (the final
        # per-member reads, workloads.memberreads); revision: the last read's header revision.
        self.serializable = serializable
        self.revision: int | None = None

    def _served(self, header: object) -> None:
        self.served_by = getattr(header, "member_id", 0) or None

    async def read(self, key: str) -> int | str | None:
        self.served_by = None
        try:
            resp = await self.kv.get(key.encode(), serializable=self.serializable)
        except Failed as exc:
            raise DefiniteFailure(exc.code.value, exc.message) from None
        except ClientIndeterminate as exc:  # a read changes nothing: it did not happen
            raise DefiniteFailure(exc.code.value, exc.message) from None
        self._served(resp.header)
        self.revision = resp.header.revision or None
        if not resp.kvs:
            return None
        return decode_value(resp.kvs[0].value)

    async def write(self, key: str, value: int) -> None:
        self.served_by = None
        try:
            resp = await self.kv.put(key.encode(), encode_value(value))
        except Failed as exc:
            raise DefiniteFailure(exc.code.value, exc.message) from None
        except ClientIndeterminate as exc:
            raise Indeterminate(exc.code.value, exc.message) from None
        self._served(resp.header)

    async def cas(self, key: str, old: int, new: int) -> bool:
        self.served_by = None
        try:
            resp = await self.kv.cas(key.encode(), encode_value(old), encode_value(new))
        except Failed as exc:
            raise DefiniteFailure(exc.code.value, exc.message) from None
        except ClientIndeterminate as exc:
            raise Indeterminate(exc.code.value, exc.message) from None
        self._served(resp.header)
        return bool(resp.succeeded)

    async def close(self) -> None:
        await self.kv.aclose()
