"""Pin a run's history as a regression case: ``python -m kvcheck.histories.pin RUN_DIR NAME``,
or ``python -m kvcheck.histories.pin --from-regress STORE/regress/<time>`` to shrink and pin
the failing run of every switch a ``kvcheck regress`` run caught.

Copies RUN_DIR's history.jsonl and config.json to ``histories/pinned/NAME/`` and writes
expected.json beside them: the verdict and the anomaly classes (``checker:kind``) its
results.json records, plus where it came from. tests/test_histories.py re-checks every pinned
history with ``kvcheck check`` and fails when the verdict or the anomaly class changes, so a
checker change that loses a detection (or a false alarm on a clean history) fails CI.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

PINNED = Path(__file__).resolve().parent / "pinned"


def expectation(run_dir: Path, note: str = "") -> dict[str, Any]:
    """expected.json for a checked run directory."""
    from kvcheck.workloads.regress import anomalies_of, checkers_verdict

    results = json.loads((run_dir / "results.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    valid = checkers_verdict(results)
    verdict = "valid" if valid is True else "invalid" if valid is False else "unknown"
    return {"verdict": verdict,
            "anomalies": sorted({f"{a['checker']}:{a['kind']}" for a in anomalies_of(results)}),
            "workload": config.get("workload"), "bugs": config.get("bugs", []), "seed": config.get("seed"),
            "note": note}


def pin(run_dir: Path, name: str, *, note: str = "", root: Path = PINNED) -> Path:
    for f in ("history.jsonl", "config.json", "results.json"):
        if not (run_dir / f).is_file():
            raise SystemExit(f"{run_dir / f}: missing (pin a checked kvcheck run directory)")
    dest = root / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("history.jsonl", "config.json"):
        shutil.copyfile(run_dir / f, dest / f)
    (dest / "expected.json").write_text(json.dumps(expectation(run_dir, note), indent=1) + "\n")
    return dest


def pin_caught_switches(regress_dir: Path, *, root: Path = PINNED, max_runs: int = 80) -> list[Path]:
    """Shrink the failing run of every switch a ``kvcheck regress`` run caught and pin it as
    ``bug-<switch>`` (replacing an older pin of that switch)."""
    from kvcheck.workloads.shrink import render, shrink_run

    doc = json.loads((regress_dir / "regress.json").read_text())
    pinned = []
    for row in doc["bugs"]["rows"]:
        if not row["caught"] or not row["report"]:
            continue
        failing = (regress_dir / row["report"]).parent
        result = shrink_run(failing, max_runs=max_runs)
        print(render(result))
        note = (f"kvcheck shrink of {row['bug']}'s first catching run in kvcheck regress "
                f"(seed {row['first_seed']}, {row['workload']}, faults {row['faults']}): {result.anomaly}")
        pinned.append(pin(result.run_dir, f"bug-{row['bug']}", note=note, root=root))
    return pinned


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path, nargs="?", help="a checked kvcheck run directory")
    ap.add_argument("name", nargs="?", help="directory name under histories/pinned/ (e.g. bug-local_reads)")
    ap.add_argument("--note", default="", help="where it came from (the bug, the fix's commit)")
    ap.add_argument("--from-regress", type=Path, metavar="DIR",
                    help="instead: shrink and pin every switch caught by the kvcheck regress run in DIR "
                         "(STORE/regress/<time>) as bug-<switch>")
    args = ap.parse_args(argv)
    if args.from_regress is not None:
        for dest in pin_caught_switches(args.from_regress):
            print(f"pinned {dest}: {(dest / 'expected.json').read_text().strip()}")
        return 0
    if args.run_dir is None or args.name is None:
        ap.error("give RUN_DIR and NAME, or --from-regress DIR")
    dest = pin(args.run_dir, args.name, note=args.note)
    print(f"pinned {args.run_dir} as {dest}: {(dest / 'expected.json').read_text().strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
