"""How long ``kvcheck serve`` takes to list a store of 1,000 runs.

Why: a sweep or a regress store holds hundreds to thousands of runs, and the run list must
stay fast (the goal: 1,000 runs listed in at most 1 s). How: a few real runs are made with
``kvcheck run`` on the sim target (short --time-limit, several workloads, faults and seeds,
one with --bug local_reads), then copied into 1,000 run directories (each copy's config.json
gets its own seed, so every row is distinct). A real ``kvcheck serve`` process is started
and /api/runs is fetched over HTTP: the first listing reads every config.json and results.json
(cold; the histories are read by a background thread, and the time until all are read is
printed too), the later ones only stat the files (warm, the cache by mtime);
then 10 runs' results.json are rewritten and the list fetched again (what a re-check or a
running sweep costs). Printed: seconds per listing, measured around the whole HTTP request.

With ``--browser`` (Debian's chromium and chromedriver, through Selenium) it also loads
/runs in headless chromium and prints the time from navigation start until the table holds
every run, and the page's own render time.

    python benchmarks/serve_list.py [--runs 1000] [--repeat 5] [--keep DIR] [--browser]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SOURCES = [("register", "partition", 1, []), ("register", "partition", 4, ["local_reads"]),
           ("kv", "kill", 2, []), ("register", "pause", 3, [])]


def make_store(root: Path, runs: int) -> Path:
    seeds = root / "seeds"
    for workload, faults, seed, bugs in SOURCES:
        cmd = [sys.executable, "-m", "kvcheck", "run", "--workload", workload, "--faults", faults,
               "--seed", str(seed), "--time-limit", "10", "--store", str(seeds), "--no-progress"]
        for b in bugs:
            cmd += ["--bug", b]
        subprocess.run(cmd, check=False, capture_output=True)
    sources = sorted(p.parent for p in seeds.glob("*/*/config.json"))
    store = root / "store"
    for i in range(runs):
        src = sources[i % len(sources)]
        dest = store / "sweep" / f"20261205T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}.{i % 1000:03d}Z"
        shutil.copytree(src, dest)
        config = json.loads((dest / "config.json").read_text())
        config["seed"] = 1000 + i
        (dest / "config.json").write_text(json.dumps(config))
    return store


def browser_figures(url: str, runs: int, repeat: int) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]:
        opts.add_argument(arg)
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=opts)
    try:
        loads, renders = [], []
        for _ in range(repeat):
            d.get(url + "/runs")
            while d.execute_script('return document.querySelectorAll("#runs tbody tr").length') < runs:
                time.sleep(0.01)
            loads.append(d.execute_script("return performance.now()") / 1000)
            renders.append(d.execute_script("const t = performance.now(); render(); return performance.now() - t") / 1000)
        print(f"chromium: navigation start to {runs} rows in the table, median of {repeat}: "
              f"{statistics.median(loads):.3f} s (min {min(loads):.3f}); the table's render alone "
              f"{statistics.median(renders):.3f} s")
    finally:
        d.quit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--browser", action="store_true", help="Also time the page in headless chromium.")
    ap.add_argument("--keep", type=Path, default=None,
                    help="Make the store in this directory (reused when it is already there).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvcheck-serve-bench-") as tmp:
        started = time.perf_counter()
        base = args.keep or Path(tmp)
        store = base / "store"
        if not store.is_dir():
            store = make_store(base, args.runs)
        print(f"store of {args.runs} runs ready in {time.perf_counter() - started:.1f} s")
        log = Path(tmp) / "serve.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "kvcheck", "serve", "--store", str(store),
                                     "--port", "0"], stdout=out, stderr=subprocess.STDOUT)
        try:
            url = None
            deadline = time.monotonic() + 30
            while url is None and time.monotonic() < deadline:
                m = re.search(r"kvcheck serve: (http://\S+?)/? ", log.read_text())
                url = m.group(1).rstrip("/") if m else None
                time.sleep(0.05)
            assert url, log.read_text()
            with httpx.Client(timeout=120) as client:
                def listing() -> tuple[float, dict]:
                    t = time.perf_counter()
                    body = client.get(url + "/api/runs").json()
                    return time.perf_counter() - t, body

                cold, body = listing()
                assert len(body["runs"]) == args.runs, len(body["runs"])
                print(f"cold listing (reads every config.json and results.json): {cold:.3f} s")
                t = time.perf_counter()
                while any(r["history_pending"] for r in body["runs"]):
                    time.sleep(1.0)
                    body = listing()[1]
                errors = sum(1 for r in body["runs"] if r["error"])
                print(f"every history read and checked in the background after {cold + time.perf_counter() - t:.1f} s"
                      f"  [{len(body['runs'])} runs, {errors} with errors]")
                warm = [listing()[0] for _ in range(args.repeat)]
                print(f"warm listing (cache by mtime), median of {args.repeat}: {statistics.median(warm):.3f} s"
                      f"  (min {min(warm):.3f}, max {max(warm):.3f})")
                for results in sorted(store.glob("sweep/*/results.json"))[:10]:
                    results.write_text(results.read_text())
                changed, _ = listing()
                print(f"listing after 10 results.json were rewritten: {changed:.3f} s")
                page = time.perf_counter()
                client.get(url + "/runs")
                print(f"the /runs page itself (HTML shell): {time.perf_counter() - page:.3f} s")
                print(f"goal: {args.runs} runs listed in <= 1 s (warm): "
                      + ("met" if statistics.median(warm) <= 1.0 else "NOT met"))
            if args.browser:
                browser_figures(url, args.runs, args.repeat)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
