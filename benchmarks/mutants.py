"""General detection power, measured on source mutations of the store: a proxy for issue 17's
held-out set of 16 mutants (plausible Raft, storage and KV mistakes, different from every bug
switch), which is judged by the harness's GENERIC runs, not by per-switch exposures.

    python benchmarks/mutants.py [--only NAME[,NAME]] [--seeds N] [-j N] [--full]
        [--swarm-seeds N] [--first-seed N] [--list] [--no-sanity] [--out FILE.json]
        [--swarm-only] [--swarm-first N] [--workloads W[,W]]

Each ``Mutant`` names a file of the store (under reference/), an exact original snippet that
must occur exactly once in it (the script stops with an error otherwise, so a source edit that
breaks a mutant is noticed), its replacement, and the plausible mistake it stands for. The
mutants were written before any was measured, spread as the held-out set probably is: Raft,
storage, KV, watch and lease. None is one of reference/bugs.py's switches.

How a mutant is run: the project's folders are copied into a temporary tree laid out as the
installed package (``kvcheck/``, ``kvcheck/reference/``, ... as setup.py maps them), the
mutation is applied to the copy (the worktree is never edited), and a subprocess runs with
that tree first on PYTHONPATH, so ``import kvcheck`` is the copy (the strict editable install
comes later on sys.path). The subprocess first checks that the mutated module it imports is
the copy and holds the replacement, then runs the quick clean matrix of ``kvcheck regress``
(every workload x fault mix incl. swarm, ``--quick``: 2 seeds per cell, 20 s simulated) with
the same Scheduler and worker pool, and stops at the first run a black-box checker finds
invalid (``--full``: run the whole matrix). ``--swarm-seeds N`` adds N ``kvcheck run
--swarm`` seeds per workload (all fault kinds) after the matrix. Internal invariant findings
of the store are reported beside each row and never count as a catch. The unmutated copy
runs first (the sanity row: it must stay valid).

Detection rate (not only a first catch): ``--swarm-only`` skips the matrix and runs only the
``--swarm-seeds`` seeds (from ``--swarm-first``, default 1000 + ``--first-seed``; of the
``--workloads`` named, default every workload), and with ``--full`` every one of them runs:
each row then reports how many seeds caught the mutant (``rate``: invalid runs / runs, and
``caught_seeds``: workload and seed of each), the figure to compare harness versions by.

Prints a table: mutant, caught, by which workload / fault mix / seed and checker anomaly, runs,
wall seconds, internal findings; and the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The installed package's layout (setup.py's PARTS): import name -> folder of the project.
PARTS = {
    "kvcheck": "kvcheck",
    "kvcheck/checker": "checker",
    "kvcheck/reference": "reference",
    "kvcheck/workloads": "workloads",
    "kvcheck/histories": "histories",
    "kvcheck/serve": "serve",
}


@dataclass(frozen=True)
class Mutant:
    name: str
    area: str  # raft | storage | kv | watch | lease | node
    file: str  # path under the project root, e.g. reference/raft/raft.py
    original: str  # must occur exactly once in the file
    replacement: str
    description: str

    @property
    def module(self) -> str:
        """The import name of the mutated file (kvcheck.reference.raft.raft)."""
        rel = Path(self.file).with_suffix("")
        top, *rest = rel.parts
        return ".".join(["kvcheck", top, *rest])


MUTANTS: list[Mutant] = [
    # --- Raft -------------------------------------------------------------------------------
    Mutant(
        "uptodate_index_first", "raft", "reference/raft/log.py",
        "        return term > last_term or (term == last_term and last_index >= self.last_index())",
        "        return last_index > self.last_index() or (last_index == self.last_index() and term >= last_term)",
        "vote check compares log length before last term (a longer log of an older term wins votes)"),
    Mutant(
        "vote_not_recorded", "raft", "reference/raft/raft.py",
        "            if m.type is MT.VOTE:\n                self.election_elapsed = 0\n                self.vote = m.from_",
        "            if m.type is MT.VOTE:\n                self.election_elapsed = 0",
        "a granted vote is sent but not recorded (the member may vote again in the same term)"),
    Mutant(
        "vote_kept_on_new_term", "raft", "reference/raft/raft.py",
        "        if term != self.term:\n            self.term = term\n            self.vote = NONE",
        "        if term != self.term:\n            self.term = term",
        "moving to a new term forgets to reset the vote (the old term's vote carries over)"),
    Mutant(
        "commit_quorum_off_by_one", "raft", "reference/raft/raft.py",
        "        mci = matches[self.quorum() - 1]",
        "        mci = matches[self.quorum() - 2]",
        "commit index taken one replica short of a quorum (sorted matches indexed off by one)"),
    Mutant(
        "read_index_quorum_off_by_one", "raft", "reference/raft/raft.py",
        "        if sum(1 for nid in self.voters if req.acks.get(nid)) < self.quorum():",
        "        if sum(1 for nid in self.voters if req.acks.get(nid)) < self.quorum() - 1:",
        "ReadIndex confirms leadership with one heartbeat ack fewer than a quorum"),
    Mutant(
        "leader_ignores_higher_term_response", "raft", "reference/raft/raft.py",
        "            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):\n                self.become_follower(m.term, m.from_)\n"
        "            else:\n                self.become_follower(m.term, NONE)",
        "            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):\n                self.become_follower(m.term, m.from_)\n"
        "            elif m.type in (MT.APP_RESP, MT.HEARTBEAT_RESP) and self.role is Role.LEADER:\n"
        "                return  # (mutant) a response is only an answer to us\n"
        "            else:\n                self.become_follower(m.term, NONE)",
        "a leader ignores a higher term in append/heartbeat responses instead of stepping down"),
    Mutant(
        "stale_append_acked_to_end", "raft", "reference/raft/raft.py",
        "        if m.index < self.log.committed:\n"
        "            self.send(Message(MT.APP_RESP, m.from_, self.id, self.term, index=self.log.committed))",
        "        if m.index < self.log.committed:\n"
        "            self.send(Message(MT.APP_RESP, m.from_, self.id, self.term, index=max(self.log.committed, m.index + len(m.entries))))",
        "a follower answers an append below its commit by acknowledging the message's last index unchecked"),
    Mutant(
        "conflict_search_skips_first", "raft", "reference/raft/log.py",
        "        for e in ents:\n            if not self.match_term(e.index, e.term):",
        "        for e in ents[1:]:\n            if not self.match_term(e.index, e.term):",
        "conflict search starts at the second entry (off by one: a conflicting first entry is kept)"),
    # --- storage ----------------------------------------------------------------------------
    Mutant(
        "wal_replay_skips_last", "storage", "reference/storage/raftlog.py",
        "        for record in records:\n            state.apply(record, paths[record.seq])",
        "        for record in records[:-1]:\n            state.apply(record, paths[record.seq])",
        "WAL replay loop stops one record early (the last record is never replayed)"),
    Mutant(
        "hard_state_saved_on_term_change_only", "storage", "reference/storage/raftlog.py",
        "        if hs_frame is not None and hard_state != self._state.hard_state:",
        "        if hs_frame is not None and (self._state.hard_state is None or hard_state[0] != self._state.hard_state[0]):",
        "the hard state is rewritten only when the term changes (a vote in the same term is never saved)"),
    Mutant(
        "snapshot_meta_current_term", "storage", "reference/raft/storage.py",
        "        snap = Snapshot(SnapshotMeta(index, self.term(index), conf_state), data)",
        "        snap = Snapshot(SnapshotMeta(index, self._hard_state.term, conf_state), data)",
        "a snapshot's metadata records the current term instead of the term of its last entry"),
    Mutant(
        "compaction_off_by_one", "storage", "reference/raft/storage.py",
        "        self._ents = [dummy, *self._ents[index - offset + 1 :]]",
        "        self._ents = [dummy, *self._ents[index - offset + 2 :]]",
        "log compaction drops one entry past the compaction index"),
    # --- KV ---------------------------------------------------------------------------------
    Mutant(
        "delete_not_in_batch", "kv", "reference/kv/mvcc.py",
        "        hist.append(tomb)\n        batch.append(tomb)",
        "        hist.append(tomb)",
        "a delete's tombstone is stored but not added to the write batch (no new revision, no event)"),
    Mutant(
        "range_ignores_compaction", "kv", "reference/kv/mvcc.py",
        "        if revision < self.compact_revision:\n            raise ErrCompacted()\n        return revision",
        "        return revision",
        "a read at a compacted revision is served from what compaction left instead of failing"),
    Mutant(
        "txn_compare_mod_uses_create", "kv", "reference/kv/machine.py",
        '    CompareTarget.MOD: "mod_revision", CompareTarget.VALUE: "value", CompareTarget.LEASE: "lease",',
        '    CompareTarget.MOD: "create_revision", CompareTarget.VALUE: "value", CompareTarget.LEASE: "lease",',
        "a txn compare on mod_revision reads create_revision (copy-paste in the field table)"),
    Mutant(
        "prev_kv_is_new_version", "watch", "reference/kv/mvcc.py",
        "        i = bisect_left(hist, kv.mod_revision, key=_mod_rev)\n        if i == 0:\n            return None\n        prev = hist[i - 1]",
        "        i = bisect_right(hist, kv.mod_revision, key=_mod_rev)\n        if i == 0:\n            return None\n        prev = hist[i - 1]",
        "a watch event's prev_kv is looked up with bisect_right (it is the new version itself)"),
    Mutant(
        "watch_from_key_excludes_key", "watch", "reference/kv/watch.py",
        "                elif end == b\"\\0\":\n                    if k < key:\n                        continue",
        "                elif end == b\"\\0\":\n                    if k <= key:\n                        continue",
        "a watch from a key onwards (range_end \\0) drops events of the start key itself"),
    Mutant(
        "watch_resync_skips_catch_up", "watch", "reference/kv/watch.py",
        "            else:\n                self._catch_up(w)\n\n\n__all__",
        "            else:\n                w.next_rev = max(w.next_rev, store.revision + 1)\n\n\n__all__",
        "after a snapshot install a watch jumps to the snapshot's revision instead of catching up"),
    Mutant(
        "put_keeps_old_lease_attachment", "lease", "reference/kv/machine.py",
        "            old = self._leases.get(prev.lease)\n            if old is not None:\n                old.keys.pop(key, None)",
        "            old = self._leases.get(prev.lease)",
        "a put that moves a key off its lease leaves it attached (revoking the old lease deletes it)"),
    Mutant(
        "keepalive_extends_from_expiry", "lease", "reference/kv/machine.py",
        "            return 0\n        lease.expiry = now + lease.ttl\n        return lease.ttl",
        "            return 0\n        lease.expiry = self._running(lease, now) + lease.ttl\n        return lease.ttl",
        "a keepalive adds the TTL to the old expiry instead of to now (a lease outlives its TTL)"),
    # --- node (the driver between Raft and KV) ----------------------------------------------
    Mutant(
        "proposal_matched_by_index", "node", "reference/node.py",
        "                if term == entry.term:\n                    self.metrics.proposals_committed += 1",
        "                if True:  # (mutant) matched by index only\n                    self.metrics.proposals_committed += 1",
        "a proposal's waiter is answered by whatever entry is applied at its index (term not compared)"),
    Mutant(
        "read_joins_inflight_round", "node", "reference/node.py",
        "        self._read_batch.append(waiter)\n        self._kick()",
        "        inflight = next(reversed(self._reads_inflight.values()), None)\n"
        "        (self._read_batch if inflight is None else inflight).append(waiter)\n        self._kick()",
        "a linearizable read joins a ReadIndex round already in flight (begun before it arrived)"),
    Mutant(
        "keepalive_without_barrier", "lease", "reference/node.py",
        "    async def lease_keepalive(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:\n"
        "        await self._leader_barrier()",
        "    async def lease_keepalive(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:\n"
        "        self._leader_side()",
        "a new leader answers keepalives before applying what is committed (a revoked lease renewed)"),
    # --- a second set (mut3), written before any of it was measured ---------------------------
    # KV
    Mutant(
        "range_more_off_by_one", "kv", "reference/kv/machine.py",
        "        elif req.limit and len(kvs) > req.limit:",
        "        elif req.limit and len(kvs) >= req.limit:",
        "a range with a limit reports more=true when exactly limit keys match (>= for >)"),
    Mutant(
        "range_end_inclusive", "kv", "reference/kv/mvcc.py",
        "        hi = bisect_left(keys, range_end, lo)",
        "        hi = bisect_right(keys, range_end, lo)",
        "a range scan includes the key equal to range_end (ranges and delete-ranges take [key, end])"),
    Mutant(
        "recreate_continues_version", "kv", "reference/kv/mvcc.py",
        "            prev = hist[-1]\n            if not prev.version:\n                prev = None",
        "            prev = next((kv for kv in reversed(hist) if kv.version), None)",
        "a put after a delete takes the last live version as previous (version and create_revision continue)"),
    Mutant(
        "compact_drops_floor_version", "kv", "reference/kv/mvcc.py",
        "            elif i > 0 and hist[i - 1].version:",
        "            elif i > 0 and hist[i - 1].version and i == len(hist):",
        "compaction keeps the live version before the floor only for keys not written since (reads at the floor lose it)"),
    # storage
    Mutant(
        "wal_replay_overwrite_keeps_tail", "storage", "reference/storage/raftlog.py",
        "            del self.entries[index - first :]\n",
        "            if index <= self.last_index:\n"
        "                self.entries[index - first] = entry  # (mutant) overwrite in place, keep the tail\n"
        "                return\n",
        "a WAL entry that overwrites an earlier index replaces that entry only (the stale tail after it survives)"),
    Mutant(
        "snapshot_rename_not_synced", "storage", "reference/storage/snapshot.py",
        "        self.fs.rename(tmp, final)\n        self.fs.sync_dir(self.directory)\n",
        "        self.fs.rename(tmp, final)\n",
        "a snapshot file is renamed into place without syncing the directory (a crash may lose the file)"),
    # Raft
    Mutant(
        "commit_counts_learners", "raft", "reference/raft/raft.py",
        "        matches = sorted((self.prs[nid].match for nid in self.voters), reverse=True)",
        "        matches = sorted((pr.match for pr in self.prs.values()), reverse=True)",
        "the commit index is computed over every progress, learners included (a learner's ack counts)"),
    Mutant(
        "leader_conf_change_before_noop", "raft", "reference/raft/raft.py",
        "        self.log.append([Entry(self.term, self.log.last_index() + 1)])\n"
        "        self.pending_conf_index = self.log.last_index()\n",
        "        self.log.append([Entry(self.term, self.log.last_index() + 1)])\n",
        "a new leader may propose a conf change before its first entry (and an older term's change) is applied"),
    # watch and lease
    Mutant(
        "prev_kv_missing_on_delete", "watch", "reference/kv/watch.py",
        "                prev = None\n                if w.prev_kv:\n",
        "                prev = None\n                if w.prev_kv and kv.version:\n",
        "a live watch with prev_kv attaches the previous value to PUT events only (DELETE events lack it)"),
    Mutant(
        "snapshot_loses_lease_keys", "lease", "reference/kv/machine.py",
        "            for key in store.keys_in(b\"\\0\", b\"\\0\"):\n                kv = store.get(key)\n"
        "                if kv is not None and kv.lease:\n                    leases[kv.lease].keys[key] = None\n",
        "",
        "restoring from a snapshot rebuilds leases without their attached keys (a later revoke deletes nothing)"),
    # node
    Mutant(
        "snapshot_fails_proposals_definitely", "node", "reference/node.py",
        "                waiter.fail(WireError(ErrorCode.TIMEOUT, \"member restored from a snapshot; outcome unknown\"))",
        "                waiter.fail(self.not_leader(\"member restored from a snapshot\"))",
        "proposals covered by an installed snapshot are failed as definite not-leader errors (they may have applied)"),
    Mutant(
        "apply_error_resolved_as_response", "node", "reference/node.py",
        "                    if isinstance(outcome, WireError):\n                        waiter.fail(outcome)",
        "                    if isinstance(outcome, kvr.KVError):\n                        waiter.fail(outcome)",
        "a proposal whose apply failed is answered as a success (the type check looks for KVError, not WireError)"),
]


class MutantError(Exception):
    """A mutant's snippet does not occur exactly once (the source changed)."""


def check_mutant(m: Mutant, root: Path = ROOT) -> str:
    """The file's text, after checking that the original occurs exactly once."""
    text = (root / m.file).read_text()
    n = text.count(m.original)
    if n != 1:
        raise MutantError(f"mutant {m.name}: its original snippet occurs {n} times in {m.file} (must be once)")
    if m.original == m.replacement:
        raise MutantError(f"mutant {m.name}: replacement equals the original")
    return text


def build_tree(dest: Path, mutant: Mutant | None, root: Path = ROOT) -> Path:
    """A copy of the package at ``dest`` (laid out as installed), with ``mutant`` applied.
    Returns the directory to put first on PYTHONPATH."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info", ".*")
    for target, folder in PARTS.items():
        if target == "kvcheck":
            shutil.copytree(root / folder, dest / target, ignore=ignore)
    for target, folder in PARTS.items():
        if target != "kvcheck":
            shutil.copytree(root / folder, dest / target, ignore=ignore)
    if mutant is not None:
        text = check_mutant(mutant, root)
        rel = Path(mutant.file)
        out = dest / "kvcheck" / rel
        out.write_text(text.replace(mutant.original, mutant.replacement, 1))
    return dest


def verify_import(mutant: Mutant | None, tree: Path) -> None:
    """In this (child) process: kvcheck and the mutated module come from ``tree`` and the
    mutated module's source holds the replacement."""
    import importlib

    import kvcheck

    if not Path(kvcheck.__file__ or "").resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"kvcheck imported from {kvcheck.__file__}, not from the mutated copy {tree}")
    if mutant is None:
        return
    mod = importlib.import_module(mutant.module)
    path = Path(mod.__file__ or "")
    if not path.resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{mutant.module} imported from {path}, not from the mutated copy {tree}")
    if mutant.replacement not in path.read_text():
        raise SystemExit(f"{mutant.module} at {path} does not hold the mutation")


# ---------------------------------------------------------------------------------------------
# The child: runs inside the subprocess whose PYTHONPATH starts with the mutated tree.


def child_main(args: argparse.Namespace) -> int:
    import concurrent.futures as cf
    import dataclasses

    tree = Path(args.tree)
    mutant = next((m for m in MUTANTS if m.name == args.child), None) if args.child != "-" else None
    verify_import(mutant, tree)
    from kvcheck.workloads.regress import QUICK, SeedTask, local_executor, make_plan, run_seed
    from kvcheck.workloads.regress import Scheduler as RegressScheduler
    from kvcheck.workloads.workload import RECIPE_UNSAFE_WORKLOADS, WORKLOADS

    budget = dataclasses.replace(QUICK, clean_seeds=args.seeds)
    plan = make_plan(budget, [], clean=True)
    plan.bugs = []
    plan.seed_base = args.first_seed
    plan.prune_valid = True
    store = Path(args.store)
    store.mkdir(parents=True, exist_ok=True)
    sched = RegressScheduler(plan, store)
    tasks: list[tuple[str, str, SeedTask]] = [
        (t.settings["workload"], t.row.split(" / ", 1)[1], t) for t in sched.clean_queue]
    # --swarm-seeds: more swarm seeds per workload, after the matrix's own (seeds past its range)
    if args.swarm_only:
        tasks = []
    swarm_workloads = [w for w in WORKLOADS if w not in RECIPE_UNSAFE_WORKLOADS]
    if args.workloads:
        swarm_workloads = [w for w in swarm_workloads if w in args.workloads.split(",")]
    first_swarm = 1000 + args.first_seed if args.swarm_first is None else args.swarm_first
    for s in range(args.swarm_seeds):
        for w in swarm_workloads:
            seed = first_swarm + s
            settings = dict(sched.clean_queue[0].settings) if sched.clean_queue else {}
            settings.update({"workload": w, "seed": seed})
            from kvcheck.workloads.nemesis import parse_faults

            settings["faults"] = parse_faults("all")
            tasks.append((w, "swarm+", SeedTask(f"swarm {w}", seed, settings, str(store), swarm=True,
                                                prune_valid=True)))
    executor = local_executor(args.jobs, budget.run_timeout)
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    caught: dict[str, Any] | None = None
    pending: dict[cf.Future[Any], tuple[str, str, SeedTask]] = {}
    queue = list(tasks)
    try:
        while queue or pending:
            while queue and len(pending) < args.jobs and (caught is None or args.full):
                w, f, task = queue.pop(0)
                pending[executor.submit(run_seed, task)] = (w, f, task)
            if not pending:
                break
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                w, f, task = pending.pop(fut)
                r = fut.result()
                row = {"workload": w, "faults": f, "seed": r.seed, "valid": r.valid, "anomalies": r.anomalies,
                       "findings": r.finding_count, "distinct_findings": r.findings[:5], "error": r.error,
                       "wall": r.wall_seconds, "run_dir": r.run_dir, "healthy": r.healthy}
                results.append(row)
                if r.valid is False and caught is None:
                    caught = row
            if caught is not None and not args.full:
                queue.clear()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    out = {"mutant": args.child, "caught": caught is not None, "by": caught, "runs": len(results),
           "planned": len(tasks), "wall": round(time.perf_counter() - t0, 1),
           "findings": sum(r["findings"] for r in results),
           "runs_with_findings": sum(r["findings"] > 0 for r in results),
           "errors": sum(r["error"] is not None for r in results),
           "unknown": sum(r["valid"] not in (True, False) for r in results),
           "invalid": sum(r["valid"] is False for r in results),
           "caught_seeds": sorted((r["workload"], r["seed"]) for r in results if r["valid"] is False),
           "distinct_findings": sorted({f for r in results for f in r["distinct_findings"]})[:5],
           "results": results}
    Path(args.result).write_text(json.dumps(out, default=str))
    return 0


# ---------------------------------------------------------------------------------------------
# The parent


def run_mutant(mutant: Mutant | None, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    name = mutant.name if mutant is not None else "-"
    label = mutant.name if mutant is not None else "(unmutated)"
    base = work / (mutant.name if mutant is not None else "unmutated")
    tree = build_tree(base / "tree", mutant, args.source)
    result = base / "result.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--tree", str(tree),
           "--store", str(base / "store"), "--result", str(result), "--seeds", str(args.seeds),
           "--first-seed", str(args.first_seed), "-j", str(args.jobs), "--swarm-seeds", str(args.swarm_seeds)]
    if args.full:
        cmd.append("--full")
    if args.swarm_only:
        cmd.append("--swarm-only")
    if args.swarm_first is not None:
        cmd += ["--swarm-first", str(args.swarm_first)]
    if args.workloads:
        cmd += ["--workloads", args.workloads]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=base)
    if proc.returncode != 0 or not result.exists():
        return {"mutant": label, "caught": None, "error": (proc.stderr or proc.stdout).strip()[-800:],
                "wall": round(time.perf_counter() - t0, 1)}
    doc: dict[str, Any] = json.loads(result.read_text())
    doc["mutant"] = label
    return doc


def describe_catch(by: dict[str, Any] | None) -> str:
    if not by:
        return "-"
    kinds = ", ".join(dict.fromkeys(
        a["kind"] if str(a["kind"]).startswith(f"{a['checker']}:") else f"{a['checker']}:{a['kind']}"
        for a in by["anomalies"]))
    return f"{by['workload']} / {by['faults']} / seed {by['seed']}: {kinds or 'invalid'}"


def render(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'mutant':38} {'area':8} {'caught':6} {'runs':>9} {'wall':>7} {'findings':>8}  caught by"]
    area = {m.name: m.area for m in MUTANTS}
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['mutant']:38} {area.get(r['mutant'], '-'):8} {'ERROR':6} {'':>9} {r['wall']:>6.0f}s "
                         f"{'':>8}  {r['error'].splitlines()[-1] if r['error'] else ''}")
            continue
        caught = "yes" if r["caught"] else "no"
        if r["mutant"] == "(unmutated)":
            caught = "INVALID" if r["caught"] else "valid"
        extra = f" ({r['errors']} errors)" if r.get("errors") else ""
        if r.get("caught_seeds") and r["runs"] > 1:
            extra += f"; rate {r['invalid']}/{r['runs']}: " + " ".join(f"{w}:{s}" for w, s in r["caught_seeds"])
        lines.append(f"{r['mutant']:38} {area.get(r['mutant'], '-'):8} {caught:6} "
                     f"{str(r['runs']) + '/' + str(r['planned']):>9} {r['wall']:>6.0f}s {r['runs_with_findings']:>8}  "
                     f"{describe_catch(r['by'])}{extra}")
    muts = [r for r in rows if r["mutant"] != "(unmutated)"]
    n = sum(bool(r.get("caught")) for r in muts)
    lines.append(f"caught {n} of {len(muts)} mutants from client histories")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--only", default="", help="comma-separated mutant names (default: all)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per clean (workload, fault mix) cell (--quick: 2)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--swarm-seeds", type=int, default=0, help="extra kvcheck run --swarm seeds per workload")
    p.add_argument("-j", "--jobs", type=int, default=2)
    p.add_argument("--full", action="store_true", help="run the whole matrix even after a catch")
    p.add_argument("--swarm-only", action="store_true",
                   help="skip the matrix: only the --swarm-seeds seeds (with --full: a detection rate)")
    p.add_argument("--swarm-first", type=int, default=None,
                   help="first --swarm-seeds seed (default 1000 + --first-seed)")
    p.add_argument("--workloads", default="", help="comma-separated workloads of the swarm seeds (default: all)")
    p.add_argument("--no-sanity", action="store_true", help="skip the unmutated row")
    p.add_argument("--list", action="store_true", help="list the mutants and check their snippets")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the temporary trees and run directories")
    p.add_argument("--source", type=Path, default=ROOT,
                   help="project tree to copy and mutate (default: this one; e.g. a `git archive` "
                        "export of an older commit, to measure the harness as it was)")
    # the child's own options (internal)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--tree", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is not None:
        return child_main(args)
    for m in MUTANTS:
        check_mutant(m, args.source)
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - {m.name for m in MUTANTS})
    if unknown:
        p.error(f"unknown mutant(s): {', '.join(unknown)}")
    chosen = [m for m in MUTANTS if not names or m.name in names]
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:38} {m.area:8} {m.file:32} {m.description}")
        print(f"{len(MUTANTS)} mutants; every snippet occurs exactly once")
        return 0
    work = Path(tempfile.mkdtemp(prefix="kvcheck-mutants-"))
    rows: list[dict[str, Any]] = []
    try:
        for m in ([None] if not args.no_sanity else []) + chosen:
            row = run_mutant(m, args, work)
            rows.append(row)
            print(render([row]).splitlines()[1], flush=True)
        print()
        print(render(rows))
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
