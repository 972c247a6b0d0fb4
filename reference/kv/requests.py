"""Request, response and error types of the key-value store, mirroring etcd v3's rpc.proto.

Why: the state machine, the server, the client and the log all speak these types, so they
live in one module with one wire form. Names follow etcd's protobufs in snake_case
(``RangeRequest.range_end``, ``Compare.create_revision``, ``WatchResponse.compact_revision``).

How: every message is a slotted dataclass with ``to_wire()`` (a plain dict of bytes, ints,
bools, lists and dicts that msgpack packs as is) and ``from_wire(d)``, which validates: an
unknown field, a missing required field, a wrong type or an out-of-range enum raises
``ErrBadRequest`` naming the message and the field. Missing optional fields take their
defaults, as in proto3. Keys and values are ``bytes``; revisions, versions, lease ids and
TTLs are int64.

A message that travels on its own (a client request, a response, a log entry) is tagged by
``to_tagged``/``from_tagged``: ``{"kind": "put", "body": {...}}``. A log entry is an
``Envelope``: the request plus its session identity ``(client_id, seq)``; ``encode_entry``
and ``decode_entry`` turn it into bytes (msgpack). ``client_id == 0`` means "no session":
the leader's own entries (``LeaseExpireRequest``) and anything that must not be deduplicated.

Errors are exceptions with a stable wire ``code`` (``error_to_wire``/``error_from_wire``);
their messages are etcd's, so clients and checkers can match either.

Objects handed out by the state machine (``KeyValue`` in particular) are shared with its
internal history: treat them as read-only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar, TypeVar, Union

import msgpack

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class KVError(Exception):
    """A typed error of the key-value API; ``code`` is what the server sends on the wire."""

    code: ClassVar[str] = "internal"
    default_message: ClassVar[str] = "etcdserver: internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KVError) and type(other) is type(self) and other.message == self.message

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ErrBadRequest(KVError):
    """Malformed request: the message names the field and what was wrong."""

    code = "bad_request"
    default_message = "etcdserver: bad request"


class ErrEmptyKey(KVError):
    code = "empty_key"
    default_message = "etcdserver: key is not provided"


class ErrKeyNotFound(KVError):
    """A put with ignore_value or ignore_lease on a key that does not exist."""

    code = "key_not_found"
    default_message = "etcdserver: key not found"


class ErrValueProvided(KVError):
    code = "value_provided"
    default_message = "etcdserver: value is provided"


class ErrLeaseProvided(KVError):
    code = "lease_provided"
    default_message = "etcdserver: lease is provided"


class ErrTooManyOps(KVError):
    code = "too_many_ops"
    default_message = "etcdserver: too many operations in txn request"


class ErrDuplicateKey(KVError):
    code = "duplicate_key"
    default_message = "etcdserver: duplicate key given in txn request"


class ErrCompacted(KVError):
    code = "compacted"
    default_message = "mvcc: required revision has been compacted"


class ErrFutureRev(KVError):
    code = "future_rev"
    default_message = "mvcc: required revision is a future revision"


class ErrNoSpace(KVError):
    code = "no_space"
    default_message = "etcdserver: mvcc: database space exceeded"


class ErrCorrupt(KVError):
    code = "corrupt"
    default_message = "etcdserver: corrupt cluster"


class ErrRequestTooLarge(KVError):
    code = "request_too_large"
    default_message = "etcdserver: request is too large"


class ErrLeaseNotFound(KVError):
    code = "lease_not_found"
    default_message = "etcdserver: requested lease not found"


class ErrLeaseExist(KVError):
    code = "lease_exist"
    default_message = "etcdserver: lease already exists"


class ErrLeaseTTLTooLarge(KVError):
    code = "lease_ttl_too_large"
    default_message = "etcdserver: too large lease TTL"


class ErrNotPrimary(KVError):
    """A leader-side lease operation (keepalive, time-to-live) asked of a non-leader."""

    code = "not_primary"
    default_message = "lease: not a primary lessor"


class ErrStaleSequence(KVError):
    """A retry whose stored outcome fell out of the session window: never applied twice."""

    code = "stale_sequence"
    default_message = "session: request sequence number is too old; its outcome is no longer stored"


class ErrWatchIDExists(KVError):
    code = "watch_id_exists"
    default_message = "mvcc: duplicate watch ID provided on the WatchStream"


ERRORS: dict[str, type[KVError]] = {
    cls.code: cls
    for cls in (
        KVError, ErrBadRequest, ErrEmptyKey, ErrKeyNotFound, ErrValueProvided, ErrLeaseProvided,
        ErrTooManyOps, ErrDuplicateKey, ErrCompacted, ErrFutureRev, ErrNoSpace, ErrCorrupt,
        ErrRequestTooLarge, ErrLeaseNotFound, ErrLeaseExist, ErrLeaseTTLTooLarge, ErrNotPrimary,
        ErrStaleSequence, ErrWatchIDExists,
    )
}


def error_to_wire(err: KVError) -> dict[str, Any]:
    return {"code": err.code, "message": err.message}


def error_from_wire(d: Any) -> KVError:
    if not isinstance(d, dict) or set(d) != {"code", "message"}:
        raise ErrBadRequest(f"error: expected a map with code and message, got {d!r}")
    cls = ERRORS.get(d["code"]) if isinstance(d["code"], str) else None
    if cls is None:
        raise ErrBadRequest(f"error: unknown error code {d['code']!r}")
    if not isinstance(d["message"], str):
        raise ErrBadRequest("error.message: must be a string")
    return cls(d["message"])


# --------------------------------------------------------------------------------------------
# Enums (values are etcd's protobuf numbers)
# --------------------------------------------------------------------------------------------


class SortOrder(IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


class FilterType(IntEnum):
    NOPUT = 0
    NODELETE = 1


class AlarmAction(IntEnum):
    GET = 0
    ACTIVATE = 1
    DEACTIVATE = 2


class AlarmType(IntEnum):
    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


# --------------------------------------------------------------------------------------------
# The wire codec: one field spec per message, shared to_wire/from_wire
# --------------------------------------------------------------------------------------------

Decoder = Callable[[Any, str], Any]
Encoder = Callable[[Any], Any]
M = TypeVar("M", bound="Message")


def _bad(where: str, problem: str) -> ErrBadRequest:
    return ErrBadRequest(f"{where}: {problem}")


def _dec_bytes(v: Any, where: str) -> bytes:
    if type(v) is bytes:
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v)
    raise _bad(where, f"must be bytes, got {type(v).__name__}")


def _dec_int(v: Any, where: str) -> int:
    if type(v) is not int:
        raise _bad(where, f"must be an integer, got {type(v).__name__}")
    if not INT64_MIN <= v <= INT64_MAX:
        raise _bad(where, f"{v} does not fit in int64")
    return v


def _dec_bool(v: Any, where: str) -> bool:
    if type(v) is not bool:
        raise _bad(where, f"must be a boolean, got {type(v).__name__}")
    return v


def _dec_str(v: Any, where: str) -> str:
    if type(v) is not str:
        raise _bad(where, f"must be a string, got {type(v).__name__}")
    return v


def _enum(cls: type[IntEnum]) -> Decoder:
    def dec(v: Any, where: str) -> IntEnum:
        if type(v) is not int:
            raise _bad(where, f"must be an integer {cls.__name__}, got {type(v).__name__}")
        try:
            return cls(v)
        except ValueError:
            allowed = ", ".join(f"{m.value} ({m.name})" for m in cls)
            raise _bad(where, f"{v} is not a {cls.__name__}; allowed: {allowed}") from None

    return dec


def _msg(cls_name: str) -> Decoder:
    def dec(v: Any, where: str) -> Message:
        return MESSAGES_BY_NAME[cls_name]._decode(v, where)

    return dec


def _opt(dec: Decoder) -> Decoder:
    def opt(v: Any, where: str) -> Any:
        return None if v is None else dec(v, where)

    return opt


def _list(dec: Decoder) -> Decoder:
    def lst(v: Any, where: str) -> list[Any]:
        if type(v) is not list and type(v) is not tuple:
            raise _bad(where, f"must be a list, got {type(v).__name__}")
        try:  # item paths ("where[3]") are built only when an item is bad
            return [dec(x, where) for x in v]
        except ErrBadRequest:
            for i, x in enumerate(v):
                dec(x, f"{where}[{i}]")  # decoding is pure: this raises again, with the path
            raise

    return lst


def _enc_msg(v: Message) -> Any:
    return v.to_wire()


def _enc_opt_msg(v: Message | None) -> Any:
    return None if v is None else v.to_wire()


def _enc_list_msg(v: list[Any]) -> Any:
    return [x.to_wire() for x in v]


def _enc_id(v: Any) -> Any:
    return v


def _enc_enum(v: IntEnum) -> int:
    return int(v)


def _enc_list(v: list[Any]) -> list[Any]:
    return list(v)


@dataclass(frozen=True, slots=True)
class Spec:
    """How one field travels: its decoder and encoder, and for the compiled fast path its kind
    ("bytes", "int", "bool", "str", "enum" with the enum class, or "other": call dec/enc)."""

    dec: Decoder
    enc: Encoder
    kind: str = "other"
    enum: type[IntEnum] | None = None


BYTES = Spec(_dec_bytes, _enc_id, "bytes")
INT = Spec(_dec_int, _enc_id, "int")
BOOL = Spec(_dec_bool, _enc_id, "bool")
STR = Spec(_dec_str, _enc_id, "str")


def ENUM(cls: type[IntEnum]) -> Spec:
    return Spec(_enum(cls), _enc_enum, "enum", cls)


def MSG(name: str) -> Spec:
    return Spec(_msg(name), _enc_msg)


def OPT_MSG(name: str) -> Spec:
    return Spec(_opt(_msg(name)), _enc_opt_msg)


def LIST_MSG(name: str) -> Spec:
    return Spec(_list(_msg(name)), _enc_list_msg)


LIST_INT = Spec(_list(_dec_int), _enc_list)
LIST_BYTES = Spec(_list(_dec_bytes), _enc_list)
LIST_ENUM_FILTER = Spec(_list(_enum(FilterType)), lambda v: [int(x) for x in v])


class Message:
    """Base of every wire message: a field spec (WIRE) drives to_wire and from_wire.

    ``_register`` compiles, per message class, a decoder and an encoder with the field checks
    written out inline (the apply path decodes every committed entry); the generic decoders
    above produce the error messages.
    """

    __slots__ = ()
    KIND: ClassVar[str] = ""
    WIRE: ClassVar[tuple[tuple[str, Spec], ...]] = ()
    _decode: ClassVar[Callable[[Any, str], Any]]

    def to_wire(self) -> dict[str, Any]:  # replaced per class by _register
        return {name: spec.enc(getattr(self, name)) for name, spec in self.WIRE}

    @classmethod
    def from_wire(cls: type[M], d: Any) -> M:
        return cls._decode(d, cls.__name__)

    @classmethod
    def _from_wire(cls: type[M], d: Any, where: str) -> M:
        return cls._decode(d, where)


MESSAGES_BY_NAME: dict[str, type[Message]] = {}
MESSAGES_BY_KIND: dict[str, type[Message]] = {}
_MISSING = object()
_INT_CHECK = f"type(v) is int and {INT64_MIN} <= v <= {INT64_MAX}"


def _unknown_field(cls: type[Message], d: dict[Any, Any], where: str) -> ErrBadRequest:
    known = {name for name, _ in cls.WIRE}
    name = next(k for k in d if k not in known)
    return _bad(where, f"unknown field {name!r} (known: {', '.join(n for n, _ in cls.WIRE) or 'none'})")


def _compile(cls: type[Message]) -> None:
    """Write cls._decode and cls.to_wire out as straight-line code for cls's fields."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [name for name, _ in cls.WIRE]
    if names != [f.name for f in fields]:
        raise TypeError(f"{cls.__name__}: WIRE {names} must list the dataclass fields in order")
    ns: dict[str, Any] = {"cls": cls, "_M": _MISSING, "_bad": _bad, "_unknown": _unknown_field,
                          "FIELDS": frozenset(names)}
    dec = ["def _decode(d, where):",
           "    if type(d) is not dict:",
           "        raise _bad(where, 'must be a map, got ' + type(d).__name__)",
           "    if not d.keys() <= FIELDS:",
           "        raise _unknown(cls, d, where)",
           "    get = d.get"]
    enc = []
    for f, (name, spec) in zip(fields, cls.WIRE, strict=True):
        ns[f"DEC_{name}"] = spec.dec
        ns[f"ENC_{name}"] = spec.enc
        slow = f"DEC_{name}(v, where + '.{name}')"
        if spec.kind == "bytes":
            check = f"v if type(v) is bytes else {slow}"
        elif spec.kind == "int":
            check = f"v if {_INT_CHECK} else {slow}"
        elif spec.kind in ("bool", "str"):
            check = f"v if type(v) is {spec.kind} else {slow}"
        elif spec.kind == "enum":
            assert spec.enum is not None
            ns[f"E_{name}"] = {m.value: m for m in spec.enum}
            check = f"E_{name}[v] if type(v) is int and v in E_{name} else {slow}"
        else:
            check = slow
        if f.default is not dataclasses.MISSING:
            ns[f"D_{name}"] = f.default
            missing = f"a_{name} = D_{name}"
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"F_{name}"] = f.default_factory
            missing = f"a_{name} = F_{name}()"
        else:
            missing = f"raise _bad(where, 'missing required field(s) {name}')"
        dec += [f"    v = get({name!r}, _M)",
                "    if v is _M:",
                f"        {missing}",
                "    else:",
                f"        a_{name} = {check}"]
        value = f"self.{name}"
        if spec.kind == "enum":
            value = f"int(self.{name})"
        elif spec.kind == "other":
            value = f"ENC_{name}(self.{name})"
        # proto3 style: a field at its default is left out (smaller entries, faster decoding)
        if f.default is not dataclasses.MISSING:
            test = f"self.{name}" if not f.default and f.default is not None else None
            if f.default is None:
                test = f"self.{name} is not None"
            elif f.default:
                test = f"self.{name} != D_{name}"
        elif f.default_factory is list:
            test = f"self.{name}"
        else:
            test = None  # required, or a nested message: always sent
        if test is None:
            enc.append(f"    d[{name!r}] = {value}")
        else:
            enc.append(f"    if {test}:\n        d[{name!r}] = {value}")
    dec.append(f"    obj = cls({', '.join('a_' + n for n in names)})")
    if hasattr(cls, "_check"):
        dec.append("    obj._check(where)")
    dec.append("    return obj")
    src = "\n".join([*dec, "", "def to_wire(self):", "    d = {}", *enc, "    return d", ""])
    exec(compile(src, f"<wire codec of {cls.__name__}>", "exec"), ns)
    cls._decode = staticmethod(ns["_decode"])
    cls.to_wire = ns["to_wire"]  # type: ignore[method-assign]


def _register(cls: type[M]) -> type[M]:
    _compile(cls)
    MESSAGES_BY_NAME[cls.__name__] = cls
    if cls.KIND:
        assert cls.KIND not in MESSAGES_BY_KIND, cls.KIND
        MESSAGES_BY_KIND[cls.KIND] = cls
    return cls


def to_tagged(msg: Message) -> dict[str, Any]:
    """A standalone message on the wire: ``{"kind": msg.KIND, "body": msg.to_wire()}``."""
    if not msg.KIND:
        raise TypeError(f"{type(msg).__name__} is not a standalone message")
    return {"kind": msg.KIND, "body": msg.to_wire()}


def from_tagged(d: Any, allowed: tuple[type[Message], ...] | None = None) -> Message:
    """Decode a tagged message; ``allowed`` restricts the kinds accepted (else any)."""
    if type(d) is not dict or len(d) != 2 or "kind" not in d or "body" not in d:
        raise ErrBadRequest(f"message: expected a map with kind and body, got {d!r:.200}")
    kind = d["kind"]
    cls = MESSAGES_BY_KIND.get(kind) if type(kind) is str else None
    if cls is None or (allowed is not None and cls not in allowed):
        kinds = sorted(c.KIND for c in (allowed or tuple(MESSAGES_BY_KIND.values())))
        raise ErrBadRequest(f"message: unknown kind {kind!r} (expected one of {', '.join(kinds)})")
    return cls._decode(d["body"], cls.__name__)


# --------------------------------------------------------------------------------------------
# Key-value data
# --------------------------------------------------------------------------------------------


@_register
@dataclass(slots=True)
class KeyValue(Message):
    """One version of a key. A deletion (tombstone) has version 0 and create_revision 0."""

    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0

    WIRE = (("key", BYTES), ("create_revision", INT), ("mod_revision", INT), ("version", INT),
            ("value", BYTES), ("lease", INT))


@_register
@dataclass(slots=True)
class ResponseHeader(Message):
    """revision: the store revision the response reflects; the server fills in the rest."""

    revision: int = 0
    raft_term: int = 0
    member_id: int = 0
    cluster_id: int = 0

    WIRE = (("revision", INT), ("raft_term", INT), ("member_id", INT), ("cluster_id", INT))


# --------------------------------------------------------------------------------------------
# KV requests and responses
# --------------------------------------------------------------------------------------------


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for every key starting with ``prefix``: the prefix with its last byte
    below 0xff incremented and the 0xff bytes after it dropped (``b"\\0"``, every key, for an
    empty or all-0xff prefix)."""
    k = bytearray(prefix)
    while k:
        if k[-1] < 0xFF:
            k[-1] += 1
            return bytes(k)
        k.pop()
    return b"\0"


@_register
@dataclass(slots=True)
class RangeRequest(Message):
    """Read keys in [key, range_end): empty range_end is the single key; b"\\0" is every key >= key.

    limit truncates (``more`` says so, ``count`` stays the total); revision 0 reads the current
    revision; serializable lets a member answer from its local state (no ReadIndex).
    """

    KIND = "range"
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0

    WIRE = (("key", BYTES), ("range_end", BYTES), ("limit", INT), ("revision", INT),
            ("sort_order", ENUM(SortOrder)), ("sort_target", ENUM(SortTarget)),
            ("serializable", BOOL), ("keys_only", BOOL), ("count_only", BOOL),
            ("min_mod_revision", INT), ("max_mod_revision", INT),
            ("min_create_revision", INT), ("max_create_revision", INT))


@_register
@dataclass(slots=True)
class RangeResponse(Message):
    KIND = "range_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    kvs: list[KeyValue] = field(default_factory=list)
    more: bool = False
    count: int = 0

    WIRE = (("header", MSG("ResponseHeader")), ("kvs", LIST_MSG("KeyValue")), ("more", BOOL),
            ("count", INT))


@_register
@dataclass(slots=True)
class PutRequest(Message):
    KIND = "put"
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False

    WIRE = (("key", BYTES), ("value", BYTES), ("lease", INT), ("prev_kv", BOOL),
            ("ignore_value", BOOL), ("ignore_lease", BOOL))


@_register
@dataclass(slots=True)
class PutResponse(Message):
    KIND = "put_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    prev_kv: KeyValue | None = None

    WIRE = (("header", MSG("ResponseHeader")), ("prev_kv", OPT_MSG("KeyValue")))


@_register
@dataclass(slots=True)
class DeleteRangeRequest(Message):
    KIND = "delete_range"
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False

    WIRE = (("key", BYTES), ("range_end", BYTES), ("prev_kv", BOOL))


@_register
@dataclass(slots=True)
class DeleteRangeResponse(Message):
    KIND = "delete_range_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    deleted: int = 0
    prev_kvs: list[KeyValue] = field(default_factory=list)

    WIRE = (("header", MSG("ResponseHeader")), ("deleted", INT), ("prev_kvs", LIST_MSG("KeyValue")))


@_register
@dataclass(slots=True)
class Compare(Message):
    """One txn guard: ``<target of key(s)> <result> <the target's field>``.

    Only the field named by ``target`` is compared (version, create_revision, mod_revision,
    value or lease); the others must stay at their defaults. With range_end the compare must
    hold for every key in the range. A missing key compares with zero values, except that a
    VALUE compare on a missing key (or an empty range) is false, as in etcd.
    """

    result: CompareResult
    target: CompareTarget
    key: bytes
    range_end: bytes = b""
    version: int = 0
    create_revision: int = 0
    mod_revision: int = 0
    value: bytes = b""
    lease: int = 0

    WIRE = (("result", ENUM(CompareResult)), ("target", ENUM(CompareTarget)), ("key", BYTES),
            ("range_end", BYTES), ("version", INT), ("create_revision", INT),
            ("mod_revision", INT), ("value", BYTES), ("lease", INT))

    _TARGET_FIELD: ClassVar[dict[int, str]] = {
        CompareTarget.VERSION: "version", CompareTarget.CREATE: "create_revision",
        CompareTarget.MOD: "mod_revision", CompareTarget.VALUE: "value",
        CompareTarget.LEASE: "lease",
    }

    def _check(self, where: str) -> None:
        set_ = [name for name, v in (("version", self.version), ("create_revision", self.create_revision),
                                     ("mod_revision", self.mod_revision), ("value", self.value),
                                     ("lease", self.lease)) if v]
        if set_ and (len(set_) > 1 or set_[0] != self._TARGET_FIELD[self.target]):
            own = self._TARGET_FIELD[self.target]
            other = next(name for name in set_ if name != own)
            raise _bad(where, f"target is {CompareTarget(self.target).name} but {other} is set")


RequestOp = Union["RangeRequest", "PutRequest", "DeleteRangeRequest", "TxnRequest"]
ResponseOp = Union["RangeResponse", "PutResponse", "DeleteRangeResponse", "TxnResponse"]

_OP_KEYS: dict[str, str] = {
    "request_range": "RangeRequest", "request_put": "PutRequest",
    "request_delete_range": "DeleteRangeRequest", "request_txn": "TxnRequest",
}
_OP_KEY_OF: dict[str, str] = {v: k for k, v in _OP_KEYS.items()}
_RESP_KEYS: dict[str, str] = {
    "response_range": "RangeResponse", "response_put": "PutResponse",
    "response_delete_range": "DeleteRangeResponse", "response_txn": "TxnResponse",
}
_RESP_KEY_OF: dict[str, str] = {v: k for k, v in _RESP_KEYS.items()}


def _oneof(keys: dict[str, str], what: str) -> Decoder:
    def dec(v: Any, where: str) -> Message:
        if type(v) is not dict or len(v) != 1:
            raise _bad(where, f"must be a map with exactly one of {', '.join(keys)}")
        ((k, body),) = v.items()
        name = keys.get(k)
        if name is None:
            raise _bad(where, f"unknown {what} {k!r} (expected one of {', '.join(keys)})")
        return MESSAGES_BY_NAME[name]._decode(body, where + "." + k)

    return dec


def _enc_ops(key_of: dict[str, str]) -> Encoder:
    def enc(v: list[Message]) -> list[dict[str, Any]]:
        return [{key_of[type(op).__name__]: op.to_wire()} for op in v]

    return enc


REQUEST_OPS = Spec(_list(_oneof(_OP_KEYS, "request op")), _enc_ops(_OP_KEY_OF))
RESPONSE_OPS = Spec(_list(_oneof(_RESP_KEYS, "response op")), _enc_ops(_RESP_KEY_OF))


@_register
@dataclass(slots=True)
class TxnRequest(Message):
    """If every compare holds, run ``success`` else ``failure``: one revision if anything is written."""

    KIND = "txn"
    compare: list[Compare] = field(default_factory=list)
    success: list[RequestOp] = field(default_factory=list)
    failure: list[RequestOp] = field(default_factory=list)

    WIRE = (("compare", LIST_MSG("Compare")), ("success", REQUEST_OPS), ("failure", REQUEST_OPS))


@_register
@dataclass(slots=True)
class TxnResponse(Message):
    KIND = "txn_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    succeeded: bool = False
    responses: list[ResponseOp] = field(default_factory=list)

    WIRE = (("header", MSG("ResponseHeader")), ("succeeded", BOOL), ("responses", RESPONSE_OPS))


@_register
@dataclass(slots=True)
class CompactionRequest(Message):
    """Discard history before ``revision`` (ranges below it then answer ErrCompacted).

    ``physical`` asks to wait for the compaction to reach disk; the state machine compacts
    synchronously, so it is accepted and has no further effect.
    """

    KIND = "compaction"
    revision: int
    physical: bool = False

    WIRE = (("revision", INT), ("physical", BOOL))


@_register
@dataclass(slots=True)
class CompactionResponse(Message):
    KIND = "compaction_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)

    WIRE = (("header", MSG("ResponseHeader")),)


@_register
@dataclass(slots=True)
class HashKVRequest(Message):
    """Hash of all key versions up to ``revision`` (0: current), to compare members."""

    KIND = "hash_kv"
    revision: int = 0

    WIRE = (("revision", INT),)


@_register
@dataclass(slots=True)
class HashKVResponse(Message):
    KIND = "hash_kv_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    hash: int = 0
    compact_revision: int = 0
    hash_revision: int = 0

    WIRE = (("header", MSG("ResponseHeader")), ("hash", INT), ("compact_revision", INT),
            ("hash_revision", INT))


# --------------------------------------------------------------------------------------------
# Leases
# --------------------------------------------------------------------------------------------


@_register
@dataclass(slots=True)
class LeaseGrantRequest(Message):
    """Grant a lease of ``ttl`` seconds (raised to the minimum TTL); id 0 lets the store choose."""

    KIND = "lease_grant"
    ttl: int
    id: int = 0

    WIRE = (("ttl", INT), ("id", INT))


@_register
@dataclass(slots=True)
class LeaseGrantResponse(Message):
    KIND = "lease_grant_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    id: int = 0
    ttl: int = 0

    WIRE = (("header", MSG("ResponseHeader")), ("id", INT), ("ttl", INT))


@_register
@dataclass(slots=True)
class LeaseRevokeRequest(Message):
    """Revoke a lease: every key attached to it is deleted, all at one revision."""

    KIND = "lease_revoke"
    id: int

    WIRE = (("id", INT),)


@_register
@dataclass(slots=True)
class LeaseRevokeResponse(Message):
    KIND = "lease_revoke_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)

    WIRE = (("header", MSG("ResponseHeader")),)


@_register
@dataclass(slots=True)
class LeaseExpireRequest(Message):
    """Internal entry the leader proposes for leases its clock saw expire.

    Each listed lease that still exists is revoked (its keys deleted at one revision per
    lease, in the order given); ids already gone are skipped, since an earlier leader may have
    proposed the same expiry.
    """

    KIND = "lease_expire"
    ids: list[int] = field(default_factory=list)

    WIRE = (("ids", LIST_INT),)


@_register
@dataclass(slots=True)
class LeaseExpireResponse(Message):
    KIND = "lease_expire_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    revoked: list[int] = field(default_factory=list)

    WIRE = (("header", MSG("ResponseHeader")), ("revoked", LIST_INT))


@_register
@dataclass(slots=True)
class LeaseKeepAliveRequest(Message):
    """Renew a lease (leader-side, not through the log)."""

    KIND = "lease_keepalive"
    id: int

    WIRE = (("id", INT),)


@_register
@dataclass(slots=True)
class LeaseKeepAliveResponse(Message):
    """ttl: the renewed TTL, or 0 when the lease is unknown or already expired."""

    KIND = "lease_keepalive_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    id: int = 0
    ttl: int = 0

    WIRE = (("header", MSG("ResponseHeader")), ("id", INT), ("ttl", INT))


@_register
@dataclass(slots=True)
class LeaseTimeToLiveRequest(Message):
    KIND = "lease_time_to_live"
    id: int
    keys: bool = False

    WIRE = (("id", INT), ("keys", BOOL))


@_register
@dataclass(slots=True)
class LeaseTimeToLiveResponse(Message):
    """ttl: whole seconds left (-1 when the lease does not exist); keys: attached keys, sorted."""

    KIND = "lease_time_to_live_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    id: int = 0
    ttl: int = 0
    granted_ttl: int = 0
    keys: list[bytes] = field(default_factory=list)

    WIRE = (("header", MSG("ResponseHeader")), ("id", INT), ("ttl", INT), ("granted_ttl", INT),
            ("keys", LIST_BYTES))


@_register
@dataclass(slots=True)
class LeaseLeasesRequest(Message):
    KIND = "lease_leases"

    WIRE = ()


@_register
@dataclass(slots=True)
class LeaseStatus(Message):
    id: int

    WIRE = (("id", INT),)


@_register
@dataclass(slots=True)
class LeaseLeasesResponse(Message):
    KIND = "lease_leases_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    leases: list[LeaseStatus] = field(default_factory=list)

    WIRE = (("header", MSG("ResponseHeader")), ("leases", LIST_MSG("LeaseStatus")))


# --------------------------------------------------------------------------------------------
# Alarms
# --------------------------------------------------------------------------------------------


@_register
@dataclass(slots=True)
class AlarmRequest(Message):
    """GET lists alarms; ACTIVATE/DEACTIVATE raise or clear ``alarm`` for ``member_id``.

    The NOSPACE alarm the state machine raises itself (quota exceeded) has member_id 0: every
    member applies the same entries, so it is a cluster-wide fact.
    """

    KIND = "alarm"
    action: AlarmAction = AlarmAction.GET
    member_id: int = 0
    alarm: AlarmType = AlarmType.NONE

    WIRE = (("action", ENUM(AlarmAction)), ("member_id", INT), ("alarm", ENUM(AlarmType)))


@_register
@dataclass(slots=True)
class AlarmMember(Message):
    member_id: int
    alarm: AlarmType

    WIRE = (("member_id", INT), ("alarm", ENUM(AlarmType)))


@_register
@dataclass(slots=True)
class AlarmResponse(Message):
    KIND = "alarm_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    alarms: list[AlarmMember] = field(default_factory=list)

    WIRE = (("header", MSG("ResponseHeader")), ("alarms", LIST_MSG("AlarmMember")))


# --------------------------------------------------------------------------------------------
# Watches
# --------------------------------------------------------------------------------------------


@_register
@dataclass(slots=True)
class WatchCreateRequest(Message):
    """Watch [key, range_end) from ``start_revision`` (0: the next revision).

    A start revision in the past catches up from history; one below the compacted revision
    is answered with created, then canceled with ``compact_revision``. ``filters`` drop PUT
    (NOPUT) or DELETE (NODELETE) events; ``prev_kv`` attaches the previous version to events;
    ``watch_id`` 0 lets the hub choose.
    """

    KIND = "watch_create"
    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    progress_notify: bool = False
    filters: list[FilterType] = field(default_factory=list)
    prev_kv: bool = False
    watch_id: int = 0

    WIRE = (("key", BYTES), ("range_end", BYTES), ("start_revision", INT),
            ("progress_notify", BOOL), ("filters", LIST_ENUM_FILTER), ("prev_kv", BOOL),
            ("watch_id", INT))


@_register
@dataclass(slots=True)
class WatchCancelRequest(Message):
    KIND = "watch_cancel"
    watch_id: int

    WIRE = (("watch_id", INT),)


@_register
@dataclass(slots=True)
class WatchProgressRequest(Message):
    KIND = "watch_progress"

    WIRE = ()


@_register
@dataclass(slots=True)
class Event(Message):
    """A change: PUT carries the new version; DELETE carries key and mod_revision only."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None

    WIRE = (("type", ENUM(EventType)), ("kv", MSG("KeyValue")), ("prev_kv", OPT_MSG("KeyValue")))


@_register
@dataclass(slots=True)
class WatchResponse(Message):
    """Events of one watch. header.revision: every event up to it has been sent on this watch.

    A response with no events and not created/canceled is a progress notification.
    """

    KIND = "watch_response"
    header: ResponseHeader = field(default_factory=ResponseHeader)
    watch_id: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: list[Event] = field(default_factory=list)

    WIRE = (("header", MSG("ResponseHeader")), ("watch_id", INT), ("created", BOOL),
            ("canceled", BOOL), ("compact_revision", INT), ("cancel_reason", STR),
            ("events", LIST_MSG("Event")))


# --------------------------------------------------------------------------------------------
# Log entries
# --------------------------------------------------------------------------------------------

# Requests that change state, so travel through the log (a RangeRequest may too: a read
# ordered by the log). The rest are answered by the leader or a member directly.
LOG_REQUESTS: tuple[type[Message], ...] = (
    RangeRequest, PutRequest, DeleteRangeRequest, TxnRequest, CompactionRequest,
    LeaseGrantRequest, LeaseRevokeRequest, LeaseExpireRequest, AlarmRequest,
)
CLIENT_REQUESTS: tuple[type[Message], ...] = (
    *LOG_REQUESTS, HashKVRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest,
    LeaseLeasesRequest, WatchCreateRequest, WatchCancelRequest, WatchProgressRequest,
)
LogRequest = (
    RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest | CompactionRequest
    | LeaseGrantRequest | LeaseRevokeRequest | LeaseExpireRequest | AlarmRequest
)


@dataclass(slots=True)
class Envelope:
    """What a log entry carries: a request and its session identity.

    ``(client_id, seq)`` identifies the request across retries: a retry of an applied
    request is answered from the session table and not applied again. ``client_id`` 0 means
    no session (internal entries).
    """

    client_id: int
    seq: int
    request: LogRequest

    def to_wire(self) -> list[Any]:
        """``[client_id, seq, kind, body]``: a list, the most compact form msgpack has."""
        req = self.request
        return [self.client_id, self.seq, req.KIND, req.to_wire()]

    @classmethod
    def from_wire(cls, d: Any) -> Envelope:
        if type(d) is not list or len(d) != 4:
            raise ErrBadRequest(f"Envelope: expected [client_id, seq, kind, body], got {d!r:.200}")
        client_id, seq, kind, body = d
        if type(client_id) is not int or type(seq) is not int or not (
                0 <= client_id <= INT64_MAX and 0 <= seq <= INT64_MAX):
            raise ErrBadRequest(f"Envelope: client_id and seq must be integers in [0, 2**63), "
                                f"got {client_id!r} and {seq!r}")
        cls_ = _LOG_KINDS.get(kind) if type(kind) is str else None
        if cls_ is None:
            raise ErrBadRequest(f"Envelope: {kind!r} is not a log request kind (expected one of "
                                f"{', '.join(sorted(_LOG_KINDS))})")
        return cls(client_id, seq, cls_._decode(body, cls_.__name__))


_LOG_KINDS: dict[str, type[Message]] = {c.KIND: c for c in LOG_REQUESTS}


def encode_entry(envelope: Envelope) -> bytes:
    """The bytes of a log entry (msgpack)."""
    return msgpack.packb(envelope.to_wire(), use_bin_type=True)


def decode_entry(data: bytes) -> Envelope:
    """Parse a log entry; malformed bytes raise ErrBadRequest saying what was wrong."""
    try:
        d = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise ErrBadRequest(f"log entry: not valid msgpack ({type(exc).__name__}: {exc})") from None
    return Envelope.from_wire(d)


def encode_message(msg: Message) -> bytes:
    """A standalone tagged message as msgpack bytes (client/server frames)."""
    return msgpack.packb(to_tagged(msg), use_bin_type=True)


def decode_message(data: bytes, allowed: tuple[type[Message], ...] | None = None) -> Message:
    try:
        d = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:
        raise ErrBadRequest(f"message: not valid msgpack ({type(exc).__name__}: {exc})") from None
    return from_tagged(d, allowed)
