"""``kvcheck serve``: start the web UI (runs of a store; keys of a live cluster).

How: one ``trio.run`` holds a nursery with Hypercorn's trio server for the Starlette app, the
cluster browser's client and status loop (when a cluster is given) and the re-check jobs.
It prints the URL it serves once the socket is bound (``--port 0`` picks a free port) and
stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import signal
import webbrowser
from pathlib import Path

import click
import trio

from kvcheck.exitcodes import UsageError


@click.command("serve")
@click.option("--store", "store", type=click.Path(file_okay=False, path_type=Path), default=Path("store"),
              show_default=True, help="The run store to show (as `kvcheck run --store`).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--open", "open_browser", is_flag=True, help="Open the UI in a web browser.")
@click.option("--data-dir", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="A `kvcheck cluster` directory whose keys to browse.")
@click.option("--endpoints", default=None, help="Comma-separated HOST:PORT endpoints whose keys to browse.")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--etcd", "etcd", is_flag=True,
              help="The --endpoints are real etcd members (v3 JSON gateway, plain HTTP).")
@click.option("--allow-writes", is_flag=True, help="Let the key browser put and delete keys.")
def serve_command(store: Path, host: str, port: int, open_browser: bool, data_dir: Path | None,
                  endpoints: str | None, cacert: Path | None, cert: Path | None, key: Path | None,
                  etcd: bool, allow_writes: bool) -> int:
    """Serve a web UI over a run store and, with --data-dir or --endpoints, a live cluster.

    Runs: every run of the store, sortable and filterable, each with its report, files,
    replay command and a re-check button; compare two runs; plots across a sweep. Keys: a
    key tree by '/' prefix with values, revisions, past values and live updates; put and
    delete only with --allow-writes. With --etcd the --endpoints are a real etcd cluster.
    """
    from kvcheck.serve.keys import ClusterSource

    source: ClusterSource | None = None
    ssl_context = None
    if etcd:
        if data_dir is not None or not endpoints:
            raise UsageError("--etcd needs --endpoints HOST:PORT,... of etcd members (not --data-dir)")
        if cacert or cert or key:
            raise UsageError("--etcd talks to etcd's JSON gateway over plain HTTP; TLS flags are not supported with it")
    if cacert or cert or key:
        from kvcheck.reference.tls import client_context_from_flags

        ssl_context = client_context_from_flags(cacert, cert, key)
    if data_dir is not None or endpoints:
        eps = [e.strip() for e in (endpoints or "").split(",") if e.strip()]
        if data_dir is not None:
            from kvcheck.reference.cluster import ClusterInfo

            ClusterInfo.load(data_dir.resolve())  # a missing or broken cluster.json: say so now
        if etcd:
            from kvcheck.reference.client import parse_endpoint

            for e in eps:
                try:
                    parse_endpoint(e)
                except ValueError as exc:
                    raise UsageError(f"--endpoints: {exc}") from None
        source = ClusterSource(endpoints=eps, data_dir=data_dir.resolve() if data_dir else None,
                               ssl_context=ssl_context, etcd=etcd)
    store.mkdir(parents=True, exist_ok=True)
    trio.run(_serve, store, host, port, open_browser, source, allow_writes)
    return 0


async def _serve(store: Path, host: str, port: int, open_browser: bool, source: object,
                 allow_writes: bool) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    from kvcheck.serve.app import ServeState, create_app
    from kvcheck.serve.keys import ClusterBrowser, ClusterSource
    from kvcheck.serve.store import RunIndex

    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = trio.Event()

    async def on_signals() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                stop.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(on_signals)
        browser = None
        if isinstance(source, ClusterSource):
            browser = ClusterBrowser(source)
            await nursery.start(browser.run)
        state = ServeState(RunIndex(store, background=True), browser, allow_writes, nursery)
        app = create_app(state)
        binds = await nursery.start(lambda task_status: serve(
            app, config, shutdown_trigger=stop.wait, task_status=task_status))  # type: ignore[arg-type]
        url = binds[0].rstrip("/") + "/"
        click.echo(f"kvcheck serve: {url} (store {state.index.root}"
                   + (f"; keys of {source.describe()}" if isinstance(source, ClusterSource) else "")
                   + ("; writes allowed" if allow_writes else "") + ")", err=False)
        import sys

        sys.stdout.flush()
        if open_browser:
            webbrowser.open(url)
        await stop.wait()
        nursery.cancel_scope.cancel()
