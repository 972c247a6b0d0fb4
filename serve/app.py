"""The ``kvcheck serve`` web application: Starlette routes, Jinja2 templates, JSON APIs.

Why: one place to look at every run of a store and inside a live cluster. How: pages are
server-rendered templates whose tables and trees are filled by small scripts from JSON
endpoints (/api/runs, /api/keys/...), so the list refreshes itself (new runs appear without a
restart) and the key view follows a watch (server-sent events on /api/keys/watch). Runs are
named by their directory relative to the store; every path from a URL goes through
``RunIndex.resolve_run``/``run_file``, which answer None (404 here) for anything outside the
store. Re-checks run ``kvcheck check RUN_DIR`` as a child process in the server's nursery and
report their output while they run. Writes to a cluster are refused with 403 unless the
server was started with ``--allow-writes``.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jinja2
import trio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from kvcheck.reference.client import ClientError
from kvcheck.serve import plots
from kvcheck.serve.keys import ClusterBrowser, kv_json
from kvcheck.serve.store import RunIndex, RunRow, checker_anomalies, verdict_name

HERE = Path(__file__).parent
VIEW_LIMIT = 2 * 1024 * 1024  # bytes of a file shown inline; the rest is a download away
TEXT_TYPES = {".json": "application/json", ".jsonl": "text/plain", ".log": "text/plain",
              ".txt": "text/plain", ".edn": "text/plain", ".html": "text/html", ".dot": "text/plain",
              ".svg": "image/svg+xml"}


@dataclass
class RecheckJob:
    run_id: str
    started: float
    state: str = "running"  # running, done, failed
    output: list[str] = field(default_factory=list)
    exit_code: int | None = None
    finished: float | None = None

    def to_json(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.time()
        verdicts = {0: "valid", 1: "invalid", 2: "unknown"}
        return {"run": self.run_id, "state": self.state, "elapsed": round(end - self.started, 1),
                "output": self.output[-200:], "exit_code": self.exit_code,
                "verdict": verdicts.get(self.exit_code) if self.exit_code is not None else None}


@dataclass
class ServeState:
    index: RunIndex
    browser: ClusterBrowser | None
    allow_writes: bool
    nursery: trio.Nursery
    jobs: dict[str, RecheckJob] = field(default_factory=dict)


def kvcheck_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "kvcheck", *args]


def not_found(what: str = "not found") -> PlainTextResponse:
    return PlainTextResponse(what, status_code=404)


def cross_site(request: Request) -> Response | None:
    """A 403 for a state-changing request another web site could have made: the UI's own
    requests come from its own origin, and writes carry a JSON content type (which a plain
    cross-site form cannot send without the browser asking first, and this server never
    allows it)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and origin.split("://", 1)[-1] != host:
        return JSONResponse({"error": f"cross-site request from {origin} refused"}, status_code=403)
    if request.url.path.startswith("/api/keys/") and \
            request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "writes must be sent as application/json"}, status_code=403)
    return None


def create_app(state: ServeState) -> Starlette:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
    templates = Jinja2Templates(env=env)
    templates.env.globals["allow_writes"] = state.allow_writes
    templates.env.globals["store_root"] = str(state.index.root)
    templates.env.filters["tojson_attr"] = lambda v: json.dumps(v)

    async def rows() -> list[RunRow]:
        return await run_in_threadpool(state.index.rows)

    async def row_of(run_id: str) -> RunRow | None:
        return await run_in_threadpool(state.index.row, run_id)

    # -- runs ------------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        return RedirectResponse("/runs")

    async def runs_page(request: Request) -> Response:
        return templates.TemplateResponse(request, "runs.html", {"title": "runs"})

    async def api_runs(request: Request) -> Response:
        started = time.perf_counter()
        listed = await rows()
        names = sorted({n for r in listed for n in r.checkers})
        return JSONResponse({"store": str(state.index.root), "checkers": names,
                             "runs": [r.to_json() for r in listed],
                             "seconds": round(time.perf_counter() - started, 4)})

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        row = await row_of(run_id)
        if row is None:
            return not_found(f"no run {run_id!r} in the store")
        run_dir = state.index.root / run_id
        checkers = []
        results_checkers = row.results.get("checkers")
        if isinstance(results_checkers, dict):
            for name, res in results_checkers.items():
                if isinstance(res, dict):
                    checkers.append({"name": name, "verdict": verdict_name(res.get("valid")),
                                     "anomalies": checker_anomalies(name, res),
                                     "unknown_cause": res.get("unknown_cause")})
        files = state.index.files(run_id)
        replay = "kvcheck replay " + shlex.quote(str(run_dir))
        check = "kvcheck check " + shlex.quote(str(run_dir))
        return templates.TemplateResponse(request, "run.html", {
            "title": run_id, "row": row, "checkers": checkers, "files": files, "replay": replay,
            "check": check, "has_report": any(n == "report.html" for n, _ in files),
            "config_text": json.dumps(row.config, indent=2)})

    async def store_file(request: Request) -> Response:
        path = request.path_params["path"]
        run_id, _, name = path.rpartition("/")
        file = state.index.run_file(run_id, name)
        if file is None:
            return not_found()
        media = TEXT_TYPES.get(file.suffix, "application/octet-stream")
        if request.query_params.get("download"):
            return FileResponse(file, media_type=media, filename=file.name)
        return FileResponse(file, media_type=media)

    async def view_file(request: Request) -> Response:
        path = request.path_params["path"]
        run_id, _, name = path.rpartition("/")
        file = state.index.run_file(run_id, name)
        if file is None:
            return not_found()
        size = file.stat().st_size
        with file.open("rb") as fh:
            data = fh.read(VIEW_LIMIT)
        return templates.TemplateResponse(request, "view.html", {
            "title": f"{run_id}/{name}", "run_id": run_id, "name": name, "size": size,
            "text": data.decode("utf-8", errors="replace"), "truncated": size > VIEW_LIMIT})

    async def recheck_status(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        if state.index.resolve_run(run_id) is None:
            return not_found()
        job = state.jobs.get(run_id)
        return JSONResponse(job.to_json() if job else {"run": run_id, "state": "idle"})

    async def recheck_start(request: Request) -> Response:
        refused = cross_site(request)
        if refused is not None:
            return refused
        run_id = request.path_params["run_id"]
        run_dir = state.index.resolve_run(run_id)
        if run_dir is None:
            return not_found()
        job = state.jobs.get(run_id)
        if job is not None and job.state == "running":
            return JSONResponse(job.to_json(), status_code=409)
        job = RecheckJob(run_id, time.time())
        state.jobs[run_id] = job
        state.nursery.start_soon(run_recheck, job, run_dir)
        return JSONResponse(job.to_json(), status_code=202)

    async def compare_page(request: Request) -> Response:
        a_id, b_id = request.query_params.get("a", ""), request.query_params.get("b", "")
        a, b = await row_of(a_id), await row_of(b_id)
        if a is None or b is None:
            return not_found("compare needs two runs of the store: /compare?a=RUN&b=RUN")
        return templates.TemplateResponse(request, "compare.html", {
            "title": "compare", "a": a, "b": b, **compare_tables(a, b)})

    async def plots_page(request: Request) -> Response:
        listed = await rows()
        under = request.query_params.get("under", "").strip("/")
        if under:
            listed = [r for r in listed if r.id == under or r.id.startswith(under + "/")]
        folders = sorted({r.id.rpartition("/")[0] for r in await rows() if "/" in r.id})
        return templates.TemplateResponse(request, "plots.html", {
            "title": "plots", "under": under, "folders": folders, "count": len(listed),
            "verdicts": plots.verdict_grid(listed), "throughput": plots.throughput_by_fault(listed),
            "latency": plots.latency_by_fault(listed)})

    # -- keys ------------------------------------------------------------------------------

    def browser_or_error() -> ClusterBrowser | JSONResponse:
        if state.browser is None:
            return JSONResponse({"error": "no cluster: start kvcheck serve with --data-dir DIR or "
                                          "--endpoints HOST:PORT"}, status_code=503)
        return state.browser

    def hex_param(request: Request, name: str) -> bytes | None:
        try:
            return bytes.fromhex(request.query_params.get(name, ""))
        except ValueError:
            return None

    async def keys_page(request: Request) -> Response:
        source = state.browser.source.describe() if state.browser else None
        return templates.TemplateResponse(request, "keys.html", {"title": "keys", "source": source})

    async def api_cluster(request: Request) -> Response:
        if state.browser is None:
            return JSONResponse({"state": "none", "error": "no cluster configured (start kvcheck serve "
                                 "with --data-dir DIR or --endpoints HOST:PORT)", "members": []})
        return JSONResponse({**state.browser.status, "source": state.browser.source.describe(),
                             "allow_writes": state.allow_writes})

    async def api_children(request: Request) -> Response:
        browser = browser_or_error()
        if isinstance(browser, JSONResponse):
            return browser
        prefix = hex_param(request, "prefix")
        if prefix is None:
            return JSONResponse({"error": "prefix must be hex"}, status_code=400)
        try:
            return JSONResponse(await browser.children(prefix))
        except ClientError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    async def api_key(request: Request) -> Response:
        browser = browser_or_error()
        if isinstance(browser, JSONResponse):
            return browser
        key = hex_param(request, "key")
        if not key:
            return JSONResponse({"error": "key must be non-empty hex"}, status_code=400)
        try:
            found = await browser.key(key)
        except ClientError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        if found is None:
            return JSONResponse({"error": "no such key", "key": key.hex()}, status_code=404)
        return JSONResponse(found)

    async def api_watch(request: Request) -> Response:
        browser = browser_or_error()
        if isinstance(browser, JSONResponse):
            return browser
        prefix = hex_param(request, "prefix")
        if prefix is None:
            return JSONResponse({"error": "prefix must be hex"}, status_code=400)

        async def events() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            try:
                async with browser.watch(prefix) as stream:
                    async for resp in stream:
                        if resp.created:
                            yield f"event: created\ndata: {json.dumps({'revision': resp.header.revision})}\n\n"
                        for ev in resp.events:
                            body = {"type": "delete" if ev.type.name == "DELETE" else "put",
                                    **kv_json(ev.kv, with_value=False)}
                            yield f"data: {json.dumps(body)}\n\n"
                        if resp.canceled:
                            yield f"event: canceled\ndata: {json.dumps({'reason': resp.cancel_reason})}\n\n"
                            return
            except ClientError as exc:
                yield f"event: error\ndata: {json.dumps({'error': str(exc)})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def write_body(request: Request) -> tuple[ClusterBrowser, dict[str, Any]] | Response:
        if not state.allow_writes:
            return JSONResponse({"error": "writes are disabled: start kvcheck serve with --allow-writes"},
                                status_code=403)
        refused = cross_site(request)
        if refused is not None:
            return refused
        browser = browser_or_error()
        if isinstance(browser, JSONResponse):
            return browser
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        return browser, body

    def body_key(body: dict[str, Any]) -> bytes | None:
        if isinstance(body.get("key_hex"), str):
            try:
                return bytes.fromhex(body["key_hex"]) or None
            except ValueError:
                return None
        if isinstance(body.get("key"), str) and body["key"]:
            return str(body["key"]).encode()
        return None

    async def api_put(request: Request) -> Response:
        got = await write_body(request)
        if isinstance(got, Response):
            return got
        browser, body = got
        key = body_key(body)
        value = body.get("value")
        if key is None or not isinstance(value, str):
            return JSONResponse({"error": "put needs key (or key_hex) and value"}, status_code=400)
        try:
            revision = await browser.put(key, value.encode())
        except ClientError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"ok": True, "key": key.hex(), "revision": revision})

    async def api_delete(request: Request) -> Response:
        got = await write_body(request)
        if isinstance(got, Response):
            return got
        browser, body = got
        key = body_key(body)
        if key is None:
            return JSONResponse({"error": "delete needs key (or key_hex)"}, status_code=400)
        try:
            deleted = await browser.delete(key)
        except ClientError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"ok": True, "key": key.hex(), "deleted": deleted})

    routes = [
        Route("/", home),
        Route("/runs", runs_page),
        Route("/api/runs", api_runs),
        Route("/run/{run_id:path}", run_page),
        Route("/store/{path:path}", store_file),
        Route("/view/{path:path}", view_file),
        Route("/api/recheck/{run_id:path}", recheck_status, methods=["GET"]),
        Route("/api/recheck/{run_id:path}", recheck_start, methods=["POST"]),
        Route("/compare", compare_page),
        Route("/plots", plots_page),
        Route("/keys", keys_page),
        Route("/api/cluster", api_cluster),
        Route("/api/keys/children", api_children),
        Route("/api/keys/key", api_key),
        Route("/api/keys/watch", api_watch),
        Route("/api/keys/put", api_put, methods=["POST"]),
        Route("/api/keys/delete", api_delete, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static"), follow_symlink=True), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.serve = state
    return app


async def run_recheck(job: RecheckJob, run_dir: Path) -> None:
    """``kvcheck check RUN_DIR`` as a child process, its output collected line by line."""
    cmd = kvcheck_command("check", str(run_dir))
    job.output.append("$ kvcheck check " + shlex.quote(str(run_dir)))
    try:
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(partial(trio.run_process, cmd, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, check=False))
            buffer = b""
            assert proc.stdout is not None
            async for chunk in proc.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                job.output.extend(line.decode("utf-8", errors="replace") for line in lines)
            if buffer:
                job.output.append(buffer.decode("utf-8", errors="replace"))
        job.exit_code = proc.returncode
        job.state = "done"
    except OSError as exc:
        job.output.append(f"cannot start kvcheck check: {exc}")
        job.state = "failed"
    finally:
        job.finished = time.time()


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = json.dumps(value)


def compare_tables(a: RunRow, b: RunRow) -> dict[str, Any]:
    """The compare page's tables: config (flattened; differing rows first), verdicts, op
    counts and latency percentiles, side by side."""
    ca: dict[str, str] = {}
    cb: dict[str, str] = {}
    _flatten("", {k: v for k, v in a.config.items() if k != "schedule"}, ca)
    _flatten("", {k: v for k, v in b.config.items() if k != "schedule"}, cb)
    ca["schedule"] = json.dumps(a.config.get("schedule"))
    cb["schedule"] = json.dumps(b.config.get("schedule"))
    config = [(k, ca.get(k, "—"), cb.get(k, "—"), ca.get(k) != cb.get(k)) for k in sorted(set(ca) | set(cb))]
    config.sort(key=lambda r: not r[3])

    def summary(r: RunRow) -> dict[str, Any]:
        run = r.results.get("run") if isinstance(r.results.get("run"), dict) else {}
        s = run.get("summary") if isinstance(run, dict) else None
        return s if isinstance(s, dict) else {}

    sa, sb = summary(a), summary(b)
    ops = []
    for f in sorted(set(sa.get("ops") or {}) | set(sb.get("ops") or {})):
        for t in ("ok", "fail", "info"):
            va = ((sa.get("ops") or {}).get(f) or {}).get(t)
            vb = ((sb.get("ops") or {}).get(f) or {}).get(t)
            ops.append((f"{f} {t}", va, vb, va != vb))
    latency = []
    for f in sorted(set(sa.get("latency_ms") or {}) | set(sb.get("latency_ms") or {})):
        for p in ("p50", "p95", "p99", "max"):
            va = ((sa.get("latency_ms") or {}).get(f) or {}).get(p)
            vb = ((sb.get("latency_ms") or {}).get(f) or {}).get(p)
            latency.append((f"{f} {p}", va, vb, va != vb))
    verdicts: list[tuple[str, Any, Any, bool]] = [("verdict", a.verdict, b.verdict, a.verdict != b.verdict)]
    for name in sorted(set(a.checkers) | set(b.checkers)):
        va, vb = a.checkers.get(name, "—"), b.checkers.get(name, "—")
        verdicts.append((name, va, vb, va != vb))
    verdicts.append(("anomalies", a.anomalies, b.anomalies, a.anomalies != b.anomalies))
    ra, rb = plots.ops_per_second(a), plots.ops_per_second(b)
    figures = [("ops", a.ops, b.ops, a.ops != b.ops),
               ("ok ops/s", f"{ra:.1f}" if ra is not None else "—", f"{rb:.1f}" if rb is not None else "—",
                ra != rb),
               ("simulated s", a.sim_seconds, b.sim_seconds, a.sim_seconds != b.sim_seconds),
               ("wall s", a.wall_seconds, b.wall_seconds, a.wall_seconds != b.wall_seconds)]
    return {"config": config, "ops_table": ops, "latency": latency, "verdicts": verdicts, "figures": figures}
