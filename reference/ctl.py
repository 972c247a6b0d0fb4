"""``kvcheck ctl``: an etcdctl-shaped command line for the reference store.

Why: a person should be able to use a kvcheck cluster the way they use etcd, with the same
command shapes and flags (put, get --prefix --rev --limit --keys-only --count-only --sort-by
--order --consistency, del, txn, watch, lease, compaction, member, move-leader, endpoint,
snapshot, alarm), ``-w json`` for scripts and ``-w table`` for people. How: every command
opens one ``reference.client.Client`` (endpoints from ``--endpoints`` or a cluster
directory's cluster.json via ``--data-dir``, TLS files likewise) and prints etcdctl's
"simple" format, JSON (bytes base64-encoded, as etcdctl does) or, for get, member list,
endpoint status, endpoint hashkv and lease list, a bordered table as etcdctl's.

Global flags go before or after the subcommand, as etcdctl's do (``kvcheck ctl get foo -w
json`` and ``kvcheck ctl -w json get foo``): ``add_global_options`` copies each of them onto
every subcommand that has no option of that name itself (``snapshot restore --data-dir`` is
restore's own), every copy records what it was given in the click context's shared ``meta``
(the one given last on the line wins), and a command builds its ``CtlContext`` from them only
when it runs. Lease and member ids are printed and parsed in
hex, as etcdctl does. ``snapshot save`` writes the leader's applied state with a sha256
trailer; ``snapshot restore`` turns it into data directories for a new cluster that
``kvcheck cluster start`` then runs.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import re
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import msgpack
import trio

from kvcheck.exitcodes import ExitCode, MalformedInput, MissingInput, UsageError
from kvcheck.reference.client import Client, ClientError, Indeterminate, open_client
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.kv.requests import prefix_end

T = TypeVar("T")
SNAPSHOT_MAGIC = b"KVCKSNAPSHOT1\n"


@dataclass
class CtlContext:
    endpoints: list[str]
    fmt: str  # simple | json | table
    timeout: float  # --command-timeout: one command, retries included
    ssl_context: Any
    cluster_dir: Path | None
    dial_timeout: float = 2.0  # --dial-timeout: one connection attempt


def _bytes_to_json(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return base64.b64encode(obj).decode()
    if isinstance(obj, dict):
        return {k: _bytes_to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_bytes_to_json(v) for v in obj]
    return obj


def emit_json(obj: Any) -> None:
    if isinstance(obj, kvr.Message):
        obj = obj.to_wire()
    click.echo(json.dumps(_bytes_to_json(obj), sort_keys=True))


def emit(ctx: CtlContext, body: Any, text: str) -> None:
    """The answer: ``body`` as JSON with ``-w json``, else the one-line ``text``."""
    if ctx.fmt == "json":
        emit_json(body)
    else:
        click.echo(text)


def render_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """etcdctl's table: a bordered grid, headers centred, numbers right-aligned, text left."""
    cells = [["" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for v in row]
             for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(values: Sequence[str], aligns: Sequence[str]) -> str:
        return "| " + " | ".join(f"{v:{a}{w}}" for v, a, w in zip(values, aligns, widths, strict=True)) + " |"

    out = [rule, line(header, ["^"] * len(header)), rule]
    for raw, row in zip(rows, cells, strict=True):
        aligns = [">" if isinstance(v, int) and not isinstance(v, bool) else "<" for v in raw]
        out.append(line(row, aligns))
    out.append(rule)
    return "\n".join(out)


def emit_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    click.echo(render_table(header, rows))


def human_bytes(n: int) -> str:
    """Sizes as etcdctl's table prints them (decimal units: 25 kB, 1.2 MB)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def run_client(ctx: CtlContext, fn: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_client(ctx.endpoints, timeout=ctx.timeout, dial_timeout=ctx.dial_timeout,
                               ssl_context=ctx.ssl_context) as client:
            return await fn(client)

    try:
        return trio.run(main)
    except Indeterminate as exc:
        click.echo(f"Error: the outcome is unknown (the request may or may not have been applied): {exc}", err=True)
        raise SystemExit(ExitCode.UNKNOWN) from None
    except ClientError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID) from None


def _text(b: bytes) -> str:
    return b.decode("utf-8", errors="backslashreplace")


def _arg_bytes(s: str) -> bytes:
    return s.encode("utf-8", errors="surrogateescape")



def parse_hex_id(s: str, what: str) -> int:
    try:
        return int(s, 16)
    except ValueError:
        raise UsageError(f"bad {what} id {s!r}: expected a hexadecimal id") from None


class Duration(click.ParamType):
    """etcdctl's durations: 5s, 500ms, 1m, or a bare number of seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        from kvcheck.reference.server import parse_duration

        try:
            return parse_duration(str(value))
        except argparse.ArgumentTypeError as exc:
            self.fail(str(exc), param, ctx)


_GLOBALS = "kvcheck.ctl.globals"  # ctx.meta key: global flag name -> value given
_CONTEXT = "kvcheck.ctl.context"  # ctx.meta key: the CtlContext built from them
DEFAULT_DIAL_TIMEOUT = 2.0
DEFAULT_COMMAND_TIMEOUT = 5.0
FORMATS = ("simple", "json", "table")
# Commands with etcdctl's table output (-w table); the others refuse it.
TABLE_COMMANDS = frozenset({"get", "member list", "endpoint status", "endpoint hashkv", "lease list"})


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None and param.name is not None:
        ctx.meta.setdefault(_GLOBALS, {})[param.name.removeprefix("ctl_")] = value


# Global flag -> the name its value is kept under (ctl_*: a subcommand's own parameters, such
# as put's KEY argument beside --key, must not share a name with one).
def global_options() -> list[click.Option]:
    """Fresh copies of the global flags (a click Option belongs to one command)."""
    common: dict[str, Any] = {"default": None, "expose_value": False, "callback": _remember}
    path = click.Path(path_type=Path)
    return [
        click.Option(["--endpoints", "ctl_endpoints"], help="Comma-separated HOST:PORT client endpoints.", **common),
        click.Option(["--data-dir", "ctl_data_dir"], type=path,
                     help="A `kvcheck cluster` directory: endpoints and TLS from its cluster.json.", **common),
        click.Option(["-w", "--write-out", "ctl_fmt"], type=click.Choice(FORMATS),
                     help="Output format: simple (default), json, or table (get, member list, "
                          "endpoint status, endpoint hashkv, lease list).", **common),
        click.Option(["--dial-timeout", "ctl_dial_timeout"], type=Duration(),
                     help=f"Timeout to connect to an endpoint [{DEFAULT_DIAL_TIMEOUT:g}s].", **common),
        click.Option(["--command-timeout", "ctl_command_timeout"], type=Duration(),
                     help=f"Timeout of one command, retries included [{DEFAULT_COMMAND_TIMEOUT:g}s].", **common),
        click.Option(["--cacert", "ctl_cacert"], type=path, help="CA bundle to verify the members' certificates.", **common),
        click.Option(["--cert", "ctl_cert"], type=path, help="Client certificate.", **common),
        click.Option(["--key", "ctl_key"], type=path, help="Client certificate's key.", **common),
    ]


def add_global_options(command: click.Command) -> None:
    """Put the global flags on ``command`` and every subcommand below it, except where a
    command has an option of the same name itself."""
    taken = {opt for p in command.params for opt in getattr(p, "opts", [])}
    command.params.extend(o for o in global_options() if not set(o.opts) & taken)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_global_options(sub)


def _command_path(click_ctx: click.Context) -> str:
    """'member list' for ``kvcheck ctl member list`` (the names below ``ctl``)."""
    names: list[str] = []
    c: click.Context | None = click_ctx
    while c is not None and c.command is not ctl:
        names.append(c.info_name or "")
        c = c.parent
    return " ".join(reversed(names))


def output_format() -> str:
    """The -w format given (before or after the subcommand); simple by default."""
    fmt: str = click.get_current_context().meta.get(_GLOBALS, {}).get("fmt", "simple")
    return fmt


def ctl_context() -> CtlContext:
    """The running command's CtlContext, from the global flags given anywhere on the line."""
    from kvcheck.reference.tls import client_context_from_flags

    click_ctx = click.get_current_context()
    cached: CtlContext | None = click_ctx.meta.get(_CONTEXT)
    if cached is not None:
        return cached
    given: dict[str, Any] = click_ctx.meta.get(_GLOBALS, {})
    fmt = output_format()
    if fmt == "table" and _command_path(click_ctx) not in TABLE_COMMANDS:
        raise UsageError(f"-w table is not available for `{_command_path(click_ctx)}` (it is for "
                         f"{', '.join(sorted(TABLE_COMMANDS))}); use -w simple or -w json")
    data_dir: Path | None = given.get("data_dir")
    ssl_context = None
    eps: list[str] = []
    if data_dir is not None:
        from kvcheck.reference.cluster import ClusterInfo, client_ssl

        info = ClusterInfo.load(data_dir.resolve())
        eps = info.endpoints()
        ssl_context = client_ssl(info)
    if given.get("endpoints"):
        eps = [e.strip() for e in given["endpoints"].split(",") if e.strip()]
    cacert, cert, key = given.get("cacert"), given.get("cert"), given.get("key")
    if cacert or cert or key:
        ssl_context = client_context_from_flags(cacert, cert, key)
    ctx = CtlContext(eps or ["127.0.0.1:2379"], fmt, given.get("command_timeout", DEFAULT_COMMAND_TIMEOUT),
                     ssl_context, data_dir, given.get("dial_timeout", DEFAULT_DIAL_TIMEOUT))
    click_ctx.meta[_CONTEXT] = ctx
    return ctx


F = TypeVar("F", bound=Callable[..., Any])


def pass_ctl(f: F) -> F:
    """Call ``f`` with the CtlContext as its first argument (built when the command runs)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        return f(ctl_context(), *args, **kwargs)

    return cast(F, functools.update_wrapper(run, f))


@click.group("ctl")
def ctl() -> None:
    """etcdctl-shaped client for the kvcheck reference store.

    The global flags (--endpoints, --data-dir, -w/--write-out, --dial-timeout,
    --command-timeout, --cacert, --cert, --key) go before or after the subcommand.

    Exit codes: 0 done, 1 the request failed (certainly not applied), 2 outcome unknown (a
    write that may or may not have been applied), 64 usage error, 66 missing input.
    """


# -- put / get / del ------------------------------------------------------------------------------


@ctl.command("put")
@click.argument("key")
@click.argument("value", required=False)
@click.option("--lease", default="0", help="Lease id (hex) to attach.")
@click.option("--prev-kv", is_flag=True)
@click.option("--ignore-value", is_flag=True)
@click.option("--ignore-lease", is_flag=True)
@pass_ctl
def put_cmd(ctx: CtlContext, key: str, value: str | None, lease: str, prev_kv: bool,
            ignore_value: bool, ignore_lease: bool) -> int:
    """Put KEY VALUE (VALUE from stdin when omitted)."""
    if value is None and not ignore_value:
        value = sys.stdin.read()
    req = kvr.PutRequest(key=_arg_bytes(key), value=_arg_bytes(value or ""), lease=parse_hex_id(lease, "lease"),
                         prev_kv=prev_kv, ignore_value=ignore_value, ignore_lease=ignore_lease)

    async def go(c: Client) -> kvr.PutResponse:
        return kvr.PutResponse.from_wire(await c.call("put", req.to_wire(), write=True))

    resp = run_client(ctx, go)
    if ctx.fmt == "json":
        emit_json(resp)
    else:
        click.echo("OK")
        if resp.prev_kv is not None:
            click.echo(_text(resp.prev_kv.key))
            click.echo(_text(resp.prev_kv.value))
    return 0


SORT_TARGETS = {"KEY": kvr.SortTarget.KEY, "VERSION": kvr.SortTarget.VERSION, "CREATE": kvr.SortTarget.CREATE,
                "MODIFY": kvr.SortTarget.MOD, "VALUE": kvr.SortTarget.VALUE}


def _range_end(key: bytes, range_end: str | None, prefix: bool, from_key: bool) -> bytes:
    if sum(bool(x) for x in (range_end, prefix, from_key)) > 1:
        raise UsageError("use only one of RANGE_END, --prefix and --from-key")
    if prefix:
        return prefix_end(key)
    if from_key:
        return b"\0"
    return _arg_bytes(range_end) if range_end else b""


@ctl.command("get")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True)
@click.option("--from-key", is_flag=True)
@click.option("--rev", type=int, default=0)
@click.option("--limit", type=int, default=0)
@click.option("--keys-only", is_flag=True)
@click.option("--count-only", is_flag=True)
@click.option("--print-value-only", is_flag=True)
@click.option("--sort-by", type=click.Choice(list(SORT_TARGETS), case_sensitive=False), default=None)
@click.option("--order", type=click.Choice(["ASCEND", "DESCEND"], case_sensitive=False), default=None)
@click.option("--consistency", type=click.Choice(["l", "s"]), default="l", show_default=True)
@pass_ctl
def get_cmd(ctx: CtlContext, key: str, range_end: str | None, prefix: bool, from_key: bool, rev: int,
            limit: int, keys_only: bool, count_only: bool, print_value_only: bool, sort_by: str | None,
            order: str | None, consistency: str) -> int:
    """Get KEY [RANGE_END]."""
    k = _arg_bytes(key)
    sort_order = kvr.SortOrder.NONE
    if order is not None:
        sort_order = kvr.SortOrder.ASCEND if order.upper() == "ASCEND" else kvr.SortOrder.DESCEND
    elif sort_by is not None:
        sort_order = kvr.SortOrder.ASCEND
    req = kvr.RangeRequest(
        key=k, range_end=_range_end(k, range_end, prefix, from_key), revision=rev, limit=limit,
        keys_only=keys_only, count_only=count_only, serializable=consistency == "s",
        sort_order=sort_order, sort_target=SORT_TARGETS[sort_by.upper()] if sort_by else kvr.SortTarget.KEY,
    )
    resp = run_client(ctx, lambda c: c.range(req))
    if ctx.fmt == "json":
        emit_json(resp)
        return 0
    if ctx.fmt == "table":
        _get_table(resp, keys_only=keys_only, count_only=count_only, value_only=print_value_only)
        return 0
    if count_only:
        click.echo(str(resp.count))
        return 0
    for kv in resp.kvs:
        if not print_value_only:
            click.echo(_text(kv.key))
        if not keys_only:
            click.echo(_text(kv.value))
    return 0


def _get_table(resp: kvr.RangeResponse, *, keys_only: bool, count_only: bool, value_only: bool) -> None:
    if count_only:
        emit_table(["COUNT"], [[resp.count]])
        return
    columns = [("KEY", lambda kv: _text(kv.key)), ("VALUE", lambda kv: _text(kv.value)),
               ("CREATE REVISION", lambda kv: kv.create_revision), ("MOD REVISION", lambda kv: kv.mod_revision),
               ("VERSION", lambda kv: kv.version), ("LEASE", lambda kv: f"{kv.lease:x}" if kv.lease else "")]
    if keys_only:
        columns = [c for c in columns if c[0] != "VALUE"]
    if value_only:
        columns = [c for c in columns if c[0] == "VALUE"]
    emit_table([name for name, _ in columns], [[get(kv) for _, get in columns] for kv in resp.kvs])


@ctl.command("del")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True)
@click.option("--from-key", is_flag=True)
@click.option("--prev-kv", is_flag=True)
@pass_ctl
def del_cmd(ctx: CtlContext, key: str, range_end: str | None, prefix: bool, from_key: bool, prev_kv: bool) -> int:
    """Delete KEY [RANGE_END]."""
    k = _arg_bytes(key)
    resp = run_client(ctx, lambda c: c.delete(k, range_end=_range_end(k, range_end, prefix, from_key), prev_kv=prev_kv))
    if ctx.fmt == "json":
        emit_json(resp)
        return 0
    click.echo(str(resp.deleted))
    for kv in resp.prev_kvs:
        click.echo(_text(kv.key))
        click.echo(_text(kv.value))
    return 0


# -- txn -------------------------------------------------------------------------------------------

_CMP_RE = re.compile(r'^\s*(value|version|create|mod|lease)\("((?:[^"\\]|\\.)*)"\)\s*(=|!=|<|>)\s*"?((?:[^"\\]|\\.)*?)"?\s*$')
_CMP_TARGETS = {"value": kvr.CompareTarget.VALUE, "version": kvr.CompareTarget.VERSION,
                "create": kvr.CompareTarget.CREATE, "mod": kvr.CompareTarget.MOD, "lease": kvr.CompareTarget.LEASE}
_CMP_RESULTS = {"=": kvr.CompareResult.EQUAL, "!=": kvr.CompareResult.NOT_EQUAL,
                "<": kvr.CompareResult.LESS, ">": kvr.CompareResult.GREATER}


def _unescape(s: str) -> bytes:
    return _arg_bytes(s.encode("utf-8", errors="surrogateescape").decode("unicode_escape"))


def parse_compare(line: str) -> kvr.Compare:
    """etcdctl's compare syntax: ``mod("key") > "0"``, ``value("k") = "v"``, ..."""
    m = _CMP_RE.match(line)
    if m is None:
        raise UsageError(f"bad compare {line!r}: expected e.g. value(\"key\") = \"v\" or mod(\"key\") > \"0\"")
    target_name, key, op, operand = m.groups()
    target = _CMP_TARGETS[target_name]
    cmp: dict[str, Any] = {"result": _CMP_RESULTS[op], "target": target, "key": _unescape(key)}
    if target is kvr.CompareTarget.VALUE:
        cmp["value"] = _unescape(operand)
    else:
        try:
            number = int(operand, 16) if target is kvr.CompareTarget.LEASE else int(operand)
        except ValueError:
            raise UsageError(f"bad compare {line!r}: {target_name} needs an integer") from None
        field = {kvr.CompareTarget.VERSION: "version", kvr.CompareTarget.CREATE: "create_revision",
                 kvr.CompareTarget.MOD: "mod_revision", kvr.CompareTarget.LEASE: "lease"}[target]
        cmp[field] = number
    return kvr.Compare(**cmp)


def parse_op(line: str) -> kvr.PutRequest | kvr.RangeRequest | kvr.DeleteRangeRequest:
    """etcdctl's txn request syntax: ``put KEY VALUE``, ``get KEY [END] [--prefix]``, ``del KEY ...``."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"bad txn operation {line!r}: {exc}") from None
    if not words:
        raise UsageError("empty txn operation")
    verb, args = words[0], words[1:]
    flags = {a for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    if verb == "put" and len(args) == 2:
        return kvr.PutRequest(key=_arg_bytes(args[0]), value=_arg_bytes(args[1]), prev_kv="--prev-kv" in flags)
    if verb in ("get", "del") and 1 <= len(args) <= 2:
        key = _arg_bytes(args[0])
        end = _range_end(key, args[1] if len(args) == 2 else None, "--prefix" in flags, "--from-key" in flags)
        if verb == "get":
            return kvr.RangeRequest(key=key, range_end=end)
        return kvr.DeleteRangeRequest(key=key, range_end=end, prev_kv="--prev-kv" in flags)
    raise UsageError(f"bad txn operation {line!r}: expected put KEY VALUE, get KEY [END], del KEY [END]")


def parse_txn(text: str) -> kvr.TxnRequest:
    """Three blocks separated by blank lines: compares, success requests, failure requests."""
    blocks: list[list[str]] = [[]]
    for raw in text.splitlines():
        if not raw.strip():
            if len(blocks) < 3:
                blocks.append([])
            continue
        blocks[-1].append(raw)
    while len(blocks) < 3:
        blocks.append([])
    return kvr.TxnRequest(compare=[parse_compare(line) for line in blocks[0]],
                          success=[parse_op(line) for line in blocks[1]],
                          failure=[parse_op(line) for line in blocks[2]])


def _print_response_op(resp: Any) -> None:
    if isinstance(resp, kvr.PutResponse):
        click.echo("OK")
    elif isinstance(resp, kvr.DeleteRangeResponse):
        click.echo(str(resp.deleted))
    elif isinstance(resp, kvr.RangeResponse):
        for kv in resp.kvs:
            click.echo(_text(kv.key))
            click.echo(_text(kv.value))


@ctl.command("txn")
@click.option("-i", "--interactive", is_flag=True, help="Prompt for compares, success and failure requests.")
@pass_ctl
def txn_cmd(ctx: CtlContext, interactive: bool) -> int:
    """Txn from stdin: compares, blank line, success requests, blank line, failure requests."""
    if interactive:
        parts = []
        for title in ("compares", "success requests (get, put, del)", "failure requests (get, put, del)"):
            click.echo(f"{title}:", err=True)
            lines = []
            for raw in sys.stdin:
                if not raw.strip():
                    break
                lines.append(raw.rstrip("\n"))
            parts.append("\n".join(lines))
        text = "\n\n".join(parts)
    else:
        text = sys.stdin.read()
    req = parse_txn(text)
    resp = run_client(ctx, lambda c: c.txn(req.compare, req.success, req.failure))
    if ctx.fmt == "json":
        emit_json(resp)
        return 0
    click.echo("SUCCESS" if resp.succeeded else "FAILURE")
    for r in resp.responses:
        click.echo("")
        _print_response_op(r)
    return 0


# -- watch -----------------------------------------------------------------------------------------


@ctl.command("watch")
@click.argument("key")
@click.argument("range_end", required=False)
@click.option("--prefix", is_flag=True)
@click.option("--rev", type=int, default=0)
@click.option("--prev-kv", is_flag=True)
@click.option("--progress-notify", is_flag=True)
@click.option("--max-events", type=int, default=0, help="Exit after this many events (0: run until interrupted).")
@pass_ctl
def watch_cmd(ctx: CtlContext, key: str, range_end: str | None, prefix: bool, rev: int, prev_kv: bool,
              progress_notify: bool, max_events: int) -> int:
    """Watch KEY [RANGE_END] and print events as they come."""
    k = _arg_bytes(key)
    end = _range_end(k, range_end, prefix, False)

    async def go(c: Client) -> int:
        seen = 0
        async with c.watch(k, range_end=end, start_revision=rev, prev_kv=prev_kv,
                           progress_notify=progress_notify) as stream:
            async for resp in stream:
                if ctx.fmt == "json":
                    emit_json(resp)
                elif resp.canceled:
                    click.echo(f"watch canceled: {resp.cancel_reason} (compact revision {resp.compact_revision})", err=True)
                for ev in resp.events:
                    seen += 1
                    if ctx.fmt != "json":
                        click.echo("PUT" if ev.type is kvr.EventType.PUT else "DELETE")
                        if prev_kv and ev.prev_kv is not None:
                            click.echo(_text(ev.prev_kv.key))
                            click.echo(_text(ev.prev_kv.value))
                        click.echo(_text(ev.kv.key))
                        click.echo(_text(ev.kv.value))
                    sys.stdout.flush()
                if resp.canceled or (max_events and seen >= max_events):
                    break
        return seen

    run_client(ctx, go)
    return 0


# -- leases ----------------------------------------------------------------------------------------


@ctl.group("lease")
def lease_group() -> None:
    """Lease grant, revoke, keep-alive, timetolive, list."""


@lease_group.command("grant")
@click.argument("ttl", type=int)
@pass_ctl
def lease_grant_cmd(ctx: CtlContext, ttl: int) -> int:
    resp = run_client(ctx, lambda c: c.lease_grant(ttl))
    if ctx.fmt == "json":
        emit_json(resp)
    else:
        click.echo(f"lease {resp.id:x} granted with TTL({resp.ttl}s)")
    return 0


@lease_group.command("revoke")
@click.argument("lease_id")
@pass_ctl
def lease_revoke_cmd(ctx: CtlContext, lease_id: str) -> int:
    lid = parse_hex_id(lease_id, "lease")
    resp = run_client(ctx, lambda c: c.lease_revoke(lid))
    if ctx.fmt == "json":
        emit_json(resp)
    else:
        click.echo(f"lease {lid:x} revoked")
    return 0


@lease_group.command("keep-alive")
@click.argument("lease_id")
@click.option("--once", is_flag=True, help="Renew once and exit.")
@pass_ctl
def lease_keepalive_cmd(ctx: CtlContext, lease_id: str, once: bool) -> int:
    lid = parse_hex_id(lease_id, "lease")

    async def go(c: Client) -> int:
        while True:
            ttl = await c.lease_keepalive(lid)
            if ctx.fmt == "json":
                emit_json({"id": lid, "ttl": ttl})
            elif ttl <= 0:
                click.echo(f"lease {lid:x} expired or revoked.")
            else:
                click.echo(f"lease {lid:x} keepalived with TTL({ttl})")
            if once or ttl <= 0:
                return ttl
            await trio.sleep(max(ttl / 3, 0.5))

    ttl = run_client(ctx, go)
    return 0 if ttl > 0 else 1


@lease_group.command("timetolive")
@click.argument("lease_id")
@click.option("--keys", is_flag=True)
@pass_ctl
def lease_ttl_cmd(ctx: CtlContext, lease_id: str, keys: bool) -> int:
    lid = parse_hex_id(lease_id, "lease")
    resp = run_client(ctx, lambda c: c.lease_time_to_live(lid, keys))
    if ctx.fmt == "json":
        emit_json(resp)
    elif resp.ttl == -1:
        click.echo(f"lease {lid:x} already expired")
    else:
        line = f"lease {lid:x} granted with TTL({resp.granted_ttl}s), remaining({resp.ttl}s)"
        if keys:
            line += ", attached keys(" + ", ".join(_text(k) for k in resp.keys) + ")"
        click.echo(line)
    return 0


@lease_group.command("list")
@pass_ctl
def lease_list_cmd(ctx: CtlContext) -> int:
    if ctx.fmt == "table":
        async def with_ttls(c: Client) -> list[kvr.LeaseTimeToLiveResponse]:
            listed = await c.lease_leases()
            return [await c.lease_time_to_live(lease.id, True) for lease in listed.leases]

        rows = [[f"{r.id:x}", r.granted_ttl, r.ttl if r.ttl >= 0 else "expired",
                 ", ".join(_text(k) for k in r.keys)] for r in run_client(ctx, with_ttls)]
        emit_table(["ID", "GRANTED TTL", "REMAINING TTL", "ATTACHED KEYS"], rows)
        return 0
    resp = run_client(ctx, lambda c: c.lease_leases())
    if ctx.fmt == "json":
        emit_json(resp)
    else:
        click.echo(f"found {len(resp.leases)} leases")
        for lease in resp.leases:
            click.echo(f"{lease.id:x}")
    return 0


# -- compaction / alarms ---------------------------------------------------------------------------


@ctl.command("compaction")
@click.argument("revision", type=int)
@click.option("--physical", is_flag=True)
@pass_ctl
def compaction_cmd(ctx: CtlContext, revision: int, physical: bool) -> int:
    """Discard the key history before REVISION."""
    resp = run_client(ctx, lambda c: c.compact(revision, physical))
    if ctx.fmt == "json":
        emit_json(resp)
    else:
        click.echo(f"compacted revision {revision}")
    return 0


@ctl.group("alarm")
def alarm_group() -> None:
    """Alarm list and disarm."""


@alarm_group.command("list")
@pass_ctl
def alarm_list_cmd(ctx: CtlContext) -> int:
    resp = run_client(ctx, lambda c: c.alarm(kvr.AlarmRequest(action=kvr.AlarmAction.GET)))
    if ctx.fmt == "json":
        emit_json(resp)
    for a in resp.alarms if ctx.fmt != "json" else ():
        click.echo(f"memberID:{a.member_id:x} alarm:{kvr.AlarmType(a.alarm).name}")
    return 0


@alarm_group.command("disarm")
@pass_ctl
def alarm_disarm_cmd(ctx: CtlContext) -> int:
    async def go(c: Client) -> list[kvr.AlarmMember]:
        listed = await c.alarm(kvr.AlarmRequest(action=kvr.AlarmAction.GET))
        for a in listed.alarms:
            await c.alarm(kvr.AlarmRequest(action=kvr.AlarmAction.DEACTIVATE, member_id=a.member_id, alarm=a.alarm))
        return listed.alarms

    disarmed = run_client(ctx, go)
    if ctx.fmt == "json":
        emit_json({"alarms": [a.to_wire() for a in disarmed]})
    for a in disarmed if ctx.fmt != "json" else ():
        click.echo(f"memberID:{a.member_id:x} alarm:{kvr.AlarmType(a.alarm).name}")
    return 0


# -- members and leadership ------------------------------------------------------------------------


@ctl.group("member")
def member_group() -> None:
    """Member list, add, remove, promote."""


def _print_members(ctx: CtlContext, body: dict[str, Any]) -> None:
    if ctx.fmt == "json":
        emit_json(body)
        return
    if ctx.fmt == "table":
        emit_table(["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"],
                   [[f"{m['id']:x}", "learner" if m["learner"] else "started", m["name"], m["peer"],
                     m["client"], m["learner"]] for m in body["members"]])
        return
    for m in body["members"]:
        status = "learner" if m["learner"] else "started"
        click.echo(f"{m['id']:x}, {status}, {m['name']}, {m['peer']}, {m['client']}, {str(m['learner']).lower()}")


@member_group.command("list")
@pass_ctl
def member_list_cmd(ctx: CtlContext) -> int:
    async def go(c: Client) -> dict[str, Any]:
        body: dict[str, Any] = await c.call("member_list", {}, write=False)
        return body

    _print_members(ctx, run_client(ctx, go))
    return 0


def _one_url(urls: str) -> str:
    first = urls.split(",")[0].strip()
    return first.split("://", 1)[-1].rstrip("/")


@member_group.command("add")
@click.argument("name")
@click.option("--peer-urls", required=True, help="The new member's peer address (HOST:PORT or URL).")
@click.option("--client-urls", default="", help="The new member's client address (kvcheck addition).")
@click.option("--learner", is_flag=True)
@pass_ctl
def member_add_cmd(ctx: CtlContext, name: str, peer_urls: str, client_urls: str, learner: bool) -> int:
    peer, client = _one_url(peer_urls), _one_url(client_urls) if client_urls else ""
    body = run_client(ctx, lambda c: c.member_add(name, peer, client, learner))
    if ctx.fmt == "json":
        emit_json(body)
    else:
        m = body["member"]
        click.echo(f"Member {m['id']:x} added to cluster")
        click.echo(f"start it with: python -m kvcheck.reference.server --id {m['id']} --name {name} "
                   f"--listen-peer {peer} --listen-client {client or 'HOST:PORT'} --join --data-dir DIR "
                   + " ".join(f"--member {x['id']},{x['name']},{x['peer']},{x['client']}" for x in body["members"]))
    return 0


@member_group.command("remove")
@click.argument("member_id")
@pass_ctl
def member_remove_cmd(ctx: CtlContext, member_id: str) -> int:
    mid = parse_hex_id(member_id, "member")
    body = run_client(ctx, lambda c: c.member_remove(mid))
    emit(ctx, body, f"Member {mid:x} removed from cluster")
    return 0


@member_group.command("promote")
@click.argument("member_id")
@pass_ctl
def member_promote_cmd(ctx: CtlContext, member_id: str) -> int:
    mid = parse_hex_id(member_id, "member")
    body = run_client(ctx, lambda c: c.member_promote(mid))
    emit(ctx, body, f"Member {mid:x} promoted in cluster")
    return 0


@ctl.command("move-leader")
@click.argument("member_id")
@pass_ctl
def move_leader_cmd(ctx: CtlContext, member_id: str) -> int:
    """Transfer leadership to MEMBER_ID (hex)."""
    mid = parse_hex_id(member_id, "member")
    body = run_client(ctx, lambda c: c.move_leader(mid))
    emit(ctx, body, f"Leadership transferred to {mid:x}")
    return 0


# -- endpoints -------------------------------------------------------------------------------------


@ctl.group("endpoint")
def endpoint_group() -> None:
    """Endpoint status, health, hashkv."""


async def _per_endpoint(ctx: CtlContext, c: Client, fn: Callable[[str], Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ep in ctx.endpoints:
        try:
            row = await fn(ep)
            row["endpoint"] = ep
        except ClientError as exc:
            row = {"endpoint": ep, "error": str(exc)}
        out.append(row)
    return out


@endpoint_group.command("status")
@pass_ctl
def endpoint_status_cmd(ctx: CtlContext) -> int:
    rows = run_client(ctx, lambda c: _per_endpoint(ctx, c, lambda ep: c.status(ep, timeout=ctx.timeout)))
    if ctx.fmt == "json":
        emit_json(rows)
    elif ctx.fmt == "table":
        emit_table(["ENDPOINT", "ID", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX",
                    "REVISION", "DB SIZE", "ERRORS"],
                   [[r["endpoint"], "", "", "", "", "", "", "", "", r["error"]] if "error" in r else
                    [r["endpoint"], f"{r['id']:x}", r["leader"] == r["id"], r["is_learner"], r["term"],
                     r["raft_index"], r["applied"], r["revision"], human_bytes(r["db_size"]), ""] for r in rows])
    else:
        for r in rows:
            if "error" in r:
                click.echo(f"{r['endpoint']}, error: {r['error']}")
            else:
                click.echo(f"{r['endpoint']}, {r['id']:x}, leader {r['leader']:x}, term {r['term']}, "
                           f"raft index {r['raft_index']}, applied {r['applied']}, revision {r['revision']}, "
                           f"learner {str(r['is_learner']).lower()}")
    return 0 if all("error" not in r for r in rows) else 1


@endpoint_group.command("health")
@pass_ctl
def endpoint_health_cmd(ctx: CtlContext) -> int:
    async def check(c: Client, ep: str) -> dict[str, Any]:
        started = trio.current_time()
        await c.call("range", kvr.RangeRequest(key=b"health").to_wire(), write=False, endpoint=ep)
        return {"health": True, "took": f"{(trio.current_time() - started) * 1000:.3f}ms"}

    rows = run_client(ctx, lambda c: _per_endpoint(ctx, c, lambda ep: check(c, ep)))
    if ctx.fmt == "json":
        emit_json(rows)
    else:
        for r in rows:
            if "error" in r:
                click.echo(f"{r['endpoint']} is unhealthy: failed to commit proposal: {r['error']}")
            else:
                click.echo(f"{r['endpoint']} is healthy: successfully committed proposal: took = {r['took']}")
    return 0 if all("error" not in r for r in rows) else 1


@endpoint_group.command("hashkv")
@click.option("--rev", type=int, default=0)
@pass_ctl
def endpoint_hashkv_cmd(ctx: CtlContext, rev: int) -> int:
    rows = run_client(ctx, lambda c: _per_endpoint(ctx, c, lambda ep: c.hash_kv(ep, rev)))
    if ctx.fmt == "json":
        emit_json(rows)
    elif ctx.fmt == "table":
        emit_table(["ENDPOINT", "HASH", "HASH REVISION", "COMPACT REVISION", "ERRORS"],
                   [[r["endpoint"], "", "", "", r["error"]] if "error" in r else
                    [r["endpoint"], r.get("hash", 0), r.get("hash_revision", 0), r.get("compact_revision", 0), ""] for r in rows])
    else:
        for r in rows:
            if "error" in r:
                click.echo(f"{r['endpoint']}, error: {r['error']}")
            else:
                click.echo(f"{r['endpoint']}, {r.get('hash', 0)}, {r.get('hash_revision', 0)}")
    return 0 if all("error" not in r for r in rows) else 1


# -- snapshots -------------------------------------------------------------------------------------


@ctl.group("snapshot")
def snapshot_group() -> None:
    """Snapshot save (from a live cluster) and restore (into new data directories)."""


def write_snapshot_file(path: Path, doc: dict[str, Any]) -> None:
    payload: bytes = msgpack.packb(doc, use_bin_type=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(SNAPSHOT_MAGIC + payload + hashlib.sha256(payload).digest())
    tmp.replace(path)


def read_snapshot_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MissingInput(f"{path}: no such snapshot file")
    raw = path.read_bytes()
    if not raw.startswith(SNAPSHOT_MAGIC) or len(raw) < len(SNAPSHOT_MAGIC) + 32:
        raise MalformedInput(str(path), None, "not a kvcheck snapshot file (bad magic)")
    payload, digest = raw[len(SNAPSHOT_MAGIC):-32], raw[-32:]
    if hashlib.sha256(payload).digest() != digest:
        raise MalformedInput(str(path), None, "snapshot checksum mismatch (file corrupt or truncated)")
    doc = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if not isinstance(doc, dict) or doc.get("format") != "kvcheck-snapshot/1":
        raise MalformedInput(str(path), None, "unknown snapshot format")
    return doc


@snapshot_group.command("save")
@click.argument("file", type=click.Path(path_type=Path))
@pass_ctl
def snapshot_save_cmd(ctx: CtlContext, file: Path) -> int:
    """Save the leader's applied state to FILE."""

    async def go(c: Client) -> dict[str, Any]:
        await c.get(b"snapshot-leader-probe")  # find the leader: its applied state is the newest
        body: dict[str, Any] = await c.call("snapshot", {}, write=False, timeout=max(ctx.timeout, 30))
        return body

    doc = run_client(ctx, go)
    write_snapshot_file(file, doc)
    if ctx.fmt == "json":
        emit_json({"file": str(file), "index": doc["index"], "term": doc["term"], "revision": doc["revision"]})
    else:
        click.echo(f"Snapshot saved at {file} (raft index {doc['index']}, revision {doc['revision']})")
    return 0


def restore_snapshot(file: Path, data_dir: Path, members: int) -> dict[str, Any]:
    """Make ``data_dir`` a cluster directory whose members start from the snapshot in ``file``."""
    from kvcheck.reference.disk import encode_conf_state
    from kvcheck.reference.raft import ConfState
    from kvcheck.reference.storage import DataDir, OsFileSystem

    doc = read_snapshot_file(file)
    if members < 1:
        raise UsageError(f"--nodes must be at least 1, got {members}")
    data_dir = data_dir.resolve()
    if (data_dir / "cluster.json").exists() or (data_dir / "restored.json").exists():
        raise UsageError(f"{data_dir} already holds a cluster; restore into a new directory")
    state = msgpack.unpackb(doc["data"], raw=False, strict_map_key=False)
    # A new cluster: its own membership (from `cluster start`), none of the old one's.
    state["members"], state["removed"] = [], []
    data: bytes = msgpack.packb(state, use_bin_type=True)
    index, term = int(doc["index"]), max(1, int(doc["term"]))
    conf = encode_conf_state(ConfState(voters=tuple(range(1, members + 1))))
    for i in range(1, members + 1):
        path = data_dir / f"node{i}" / "data"
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            raise UsageError(f"{path} is not empty")
        dd = DataDir(OsFileSystem(path), "")
        dd.save_snapshot(index, term, conf, data)
        dd.save((term, 0, index), [])
        dd.sync()
        dd.close()
    (data_dir / "restored.json").write_text(json.dumps(
        {"members": members, "from": str(file), "index": index, "revision": doc["revision"]}) + "\n")
    return {"members": members, "index": index, "revision": doc["revision"], "data_dir": str(data_dir)}


@snapshot_group.command("restore")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--data-dir", "restore_dir", type=click.Path(path_type=Path), required=True,
              help="New cluster directory to create (then: kvcheck cluster start --data-dir DIR).")
@click.option("--nodes", default=3, show_default=True, help="Members of the new cluster.")
def snapshot_restore_cmd(file: Path, restore_dir: Path, nodes: int) -> int:
    """Restore FILE into data directories for a new cluster (no cluster is contacted)."""
    fmt = output_format()
    if fmt == "table":
        raise UsageError("-w table is not available for `snapshot restore`; use -w simple or -w json")
    result = restore_snapshot(file, restore_dir, nodes)
    if fmt == "json":
        emit_json(result)
    else:
        click.echo(f"Restored snapshot (revision {result['revision']}) into {result['data_dir']} for "
                   f"{nodes} members; start it with: kvcheck cluster start --data-dir {result['data_dir']} --nodes {nodes}")
    return 0


add_global_options(ctl)  # last: every subcommand is defined by now
