"""Datadriven interaction transcripts: scripted multi-node scenarios with expected output.

A transcript file (tests/reference/raft/testdata/*.txt) is a sequence of cases::

    # comments and blank lines are kept as they are
    command arg arg key=value
    ----
    output lines (up to the next blank line or the end of the file)

``run_file`` executes every command against one ``Cluster`` (kvcheck.reference.raft.testing)
and returns the file re-rendered with the actual outputs, so a test compares it with the
file and ``pytest --rewrite`` writes it back. Outputs never contain blank lines ("ok" stands
for nothing to say). After every command the cluster's safety properties are checked; any
invariant violation or safety violation is printed as a line starting with "!".

Commands (node ids are integers):
  add-nodes N [join] [election=10 heartbeat=1 pre-vote=true check-quorum=true inflight=256
               max-size=N seed=0 bugs=name,name]  (options only before the first node)
  campaign N | tick N [count] | tick-election N | tick-heartbeat N
  stabilize [N ...]          process Readies and deliver messages until quiet
  process-ready N ...        one Ready per node        deliver-msgs N ...  queued msgs to N
  drop-msgs [N ...]          drop queued messages (to N, or all)
  partition 1 2 / 3 | isolate N | heal
  propose N data | propose-conf-change N add|add-learner|remove ID
  read-index N ctx | transfer-leader N TO | compact N INDEX | crash N | restart N
  raft-state | raft-log N | status N | applied N | log-level none|info
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.raft.testing import Cluster, SafetyViolation
from kvcheck.reference.raft.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    InvariantViolation,
    MalformedMessage,
    Message,
    MessageType,
    RaftError,
    Ready,
    Role,
    SoftState,
)


class ScriptError(Exception):
    """A malformed transcript: names the file line and what was wrong."""


@dataclass
class Case:
    preamble: list[str]  # comment and blank lines before the command
    command: str
    line: int
    expected: list[str]


def parse(text: str, name: str = "<transcript>") -> tuple[list[Case], list[str]]:
    """Split a transcript into cases and the trailing lines after the last case."""
    lines = text.splitlines()
    cases: list[Case] = []
    pre: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            pre.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ScriptError(f"{name}:{i + 1}: command {line!r} is not followed by '----'")
        j = i + 2
        expected: list[str] = []
        while j < len(lines) and lines[j].strip():
            expected.append(lines[j])
            j += 1
        cases.append(Case(pre, line, i + 1, expected))
        pre = []
        i = j
    return cases, pre


def render(cases: list[Case], outputs: list[list[str]], trailer: list[str]) -> str:
    """The inverse of ``parse`` with new outputs: every other line is kept as it was."""
    out: list[str] = []
    for case, got in zip(cases, outputs, strict=True):
        if out and (not case.preamble or case.preamble[0].strip()):
            out.append("")  # a blank line must end the previous output
        out.extend(case.preamble)
        out.append(case.command)
        out.append("----")
        out.extend(got)
    out.extend(trailer)
    return "\n".join(out) + "\n"


def run_file(path: Path) -> tuple[str, str]:
    """(current file text, re-rendered text with actual outputs)."""
    text = path.read_text()
    cases, trailer = parse(text, str(path))
    interp = Interpreter()
    outputs = []
    for case in cases:
        try:
            outputs.append(interp.run(case.command))
        except ScriptError as exc:
            raise ScriptError(f"{path}:{case.line}: {exc}") from None
    return text, render(cases, outputs, trailer)


# --- formatting ---


def fmt_data(data: bytes) -> str:
    try:
        s = data.decode()
        if s.isprintable():
            return repr(s)
    except UnicodeDecodeError:
        pass
    return data.hex()


def fmt_entry(e: Entry) -> str:
    if e.type is EntryType.CONF_CHANGE:
        try:
            cc = ConfChange.decode(e.data)
            what = f"{cc.type.name.lower()} {cc.node_id}"
        except MalformedMessage:
            what = e.data.hex()
        return f"{e.term}/{e.index} conf-change {what}"
    return f"{e.term}/{e.index} {fmt_data(e.data)}"


def fmt_entries(ents: tuple[Entry, ...] | list[Entry]) -> str:
    return "[" + ", ".join(fmt_entry(e) for e in ents) + "]"


def fmt_msg(m: Message) -> str:
    t = m.type
    head = f"{m.from_}->{m.to} {t.name} term={m.term}"
    MT = MessageType
    parts: list[str] = []
    if t is MT.APP:
        parts = [f"log={m.log_term}/{m.index}", f"commit={m.commit}"]
        if m.entries:
            parts.append(f"entries={fmt_entries(m.entries)}")
    elif t is MT.APP_RESP:
        parts = [f"index={m.index}"]
        if m.reject:
            parts += ["reject", f"hint={m.log_term}/{m.reject_hint}"]
    elif t in (MT.VOTE, MT.PRE_VOTE):
        parts = [f"last={m.log_term}/{m.index}"]
        if m.context:
            parts.append(f"ctx={fmt_data(m.context)}")
    elif t in (MT.VOTE_RESP, MT.PRE_VOTE_RESP):
        parts = ["reject" if m.reject else "granted"]
    elif t is MT.SNAP and m.snapshot is not None:
        s = m.snapshot.meta
        parts = [f"snapshot={s.term}/{s.index} voters={list(s.conf_state.voters)} "
                 f"learners={list(s.conf_state.learners)}"]
    elif t is MT.HEARTBEAT:
        parts = [f"commit={m.commit}"]
        if m.context:
            parts.append(f"ctx={fmt_data(m.context)}")
    elif t in (MT.HEARTBEAT_RESP, MT.READ_INDEX):
        if m.context:
            parts.append(f"ctx={fmt_data(m.context)}")
    elif t is MT.READ_INDEX_RESP:
        parts = [f"index={m.index}", f"ctx={fmt_data(m.context)}"]
    return " ".join([head, *parts])


def fmt_soft(ss: SoftState) -> str:
    return f"{ss.role.name} lead={ss.leader}"


def _bool(name: str, value: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise ScriptError(f"{name} must be true or false, got {value!r}")


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ScriptError(f"{name} must be an integer, got {value!r}") from None


class Interpreter:
    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.verbose = True
        self.violations: list[str] = []
        self.last_soft: dict[int, SoftState] = {}

    def _record_violation(self, v: InvariantViolation) -> None:
        self.violations.append(f"! invariant violation: {v}")

    def c(self) -> Cluster:
        if self.cluster is None:
            raise ScriptError("no nodes yet: start with add-nodes")
        return self.cluster

    def run(self, command: str) -> list[str]:
        words = shlex.split(command)
        name, args = words[0], words[1:]
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ScriptError(f"unknown command {name!r}")
        try:
            out: list[str] = handler(args)
        except RaftError as exc:
            out = [f"error: {type(exc).__name__}: {exc}"]
        except SafetyViolation as exc:
            out = [f"! safety violation: {exc}"]
        except (KeyError, ValueError, RuntimeError) as exc:
            if isinstance(exc, ScriptError):
                raise
            out = [f"error: {type(exc).__name__}: {exc}"]
        if self.cluster is not None:
            try:
                self.cluster.check_invariants()
            except SafetyViolation as exc:
                out.append(f"! safety violation: {exc}")
        out.extend(self.violations)
        self.violations = []
        return out or ["ok"]

    def _nodes(self, args: list[str]) -> list[int]:
        return [_int("node id", a) for a in args]

    # --- setup ---

    def cmd_add_nodes(self, args: list[str]) -> list[str]:
        if not args:
            raise ScriptError("add-nodes needs a count")
        count = _int("count", args[0])
        join = False
        opts: dict[str, str] = {}
        for a in args[1:]:
            if a == "join":
                join = True
            elif "=" in a:
                k, v = a.split("=", 1)
                opts[k] = v
            else:
                raise ScriptError(f"add-nodes: unexpected argument {a!r}")
        if self.cluster is None:
            bugs = NO_BUGS
            if opts.get("bugs"):
                try:
                    bugs = Bugs.from_names(opts["bugs"].split(","))
                except ValueError as exc:
                    raise ScriptError(str(exc)) from None
            known = {"election", "heartbeat", "pre-vote", "check-quorum", "inflight",
                     "max-size", "seed", "bugs"}
            unknown = sorted(set(opts) - known)
            if unknown:
                raise ScriptError(f"add-nodes: unknown option(s) {unknown}")
            self.cluster = Cluster(
                seed=_int("seed", opts.get("seed", "0")),
                election_tick=_int("election", opts.get("election", "10")),
                heartbeat_tick=_int("heartbeat", opts.get("heartbeat", "1")),
                pre_vote=_bool("pre-vote", opts.get("pre-vote", "true")),
                check_quorum=_bool("check-quorum", opts.get("check-quorum", "true")),
                max_inflight_msgs=_int("inflight", opts.get("inflight", "256")),
                max_size_per_msg=_int("max-size", opts.get("max-size", str(1 << 20))),
                bugs=bugs,
                on_invariant_violation=self._record_violation,
            )
        elif opts:
            raise ScriptError("add-nodes: options only on the first add-nodes")
        c = self.cluster
        if join:
            start = max(c.nodes, default=0) + 1
            ids = list(range(start, start + count))
            for nid in ids:
                c.add_node(nid, None)
            return [f"node {nid} added (empty, joining)" for nid in ids]
        ids = c.add_nodes(count)
        return [f"node {nid} bootstrapped with voters {ids}" for nid in ids]

    def cmd_log_level(self, args: list[str]) -> list[str]:
        if args not in (["none"], ["info"]):
            raise ScriptError("log-level takes none or info")
        self.verbose = args[0] == "info"
        return ["ok"]

    # --- driving ---

    def cmd_campaign(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        self.c().raw(nid).campaign()
        return []

    def cmd_tick(self, args: list[str]) -> list[str]:
        if not args:
            raise ScriptError("tick needs a node")
        nid = _int("node", args[0])
        n = _int("count", args[1]) if len(args) > 1 else 1
        self.c().tick(nid, n)
        return []

    def cmd_tick_election(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        r = self.c().raw(nid).raft
        if r.role is Role.LEADER:
            n = r.election_timeout - r.election_elapsed
        else:
            n = r.randomized_election_timeout - r.election_elapsed
        self.c().tick(nid, max(n, 1))
        return []

    def cmd_tick_heartbeat(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        self.c().tick(nid, self.c().heartbeat_tick)
        return []

    def _ready_lines(self, nid: int, rd: Ready) -> list[str]:
        out = [f"> {nid} handling Ready"]
        if self.last_soft.get(nid) != rd.soft_state:
            out.append(f"  State: {fmt_soft(rd.soft_state)}")
            self.last_soft[nid] = rd.soft_state
        if rd.hard_state is not None:
            hs = rd.hard_state
            out.append(f"  HardState term={hs.term} vote={hs.vote} commit={hs.commit}")
        if rd.snapshot is not None:
            s = rd.snapshot.meta
            out.append(f"  Snapshot {s.term}/{s.index} voters={list(s.conf_state.voters)} "
                       f"learners={list(s.conf_state.learners)}")
        if rd.entries:
            out.append("  Entries:")
            out.extend(f"    {fmt_entry(e)}" for e in rd.entries)
        if rd.committed_entries:
            out.append("  CommittedEntries:")
            out.extend(f"    {fmt_entry(e)}" for e in rd.committed_entries)
        if rd.messages:
            out.append("  Messages:")
            out.extend(f"    {fmt_msg(m)}" for m in rd.messages)
        if rd.read_states:
            out.append("  ReadStates:")
            out.extend(f"    index={r.index} ctx={fmt_data(r.request_ctx)}" for r in rd.read_states)
        return out

    def _process(self, nids: list[int]) -> list[str]:
        out: list[str] = []
        for nid in nids:
            rd = self.c().process_ready(nid)
            if rd is not None:
                out.extend(self._ready_lines(nid, rd))
        return out

    def _deliver(self, nids: list[int]) -> list[str]:
        out: list[str] = []
        c = self.c()
        for nid in nids:
            msgs = c.take_messages(nid)
            if not msgs:
                continue
            out.append(f"> {nid} receiving messages")
            for m in msgs:
                delivered = c.deliver(m)
                out.append(f"  {fmt_msg(m)}" + ("" if delivered else "  (dropped)"))
        return out

    def cmd_process_ready(self, args: list[str]) -> list[str]:
        return self._process(self._nodes(args))

    def cmd_deliver_msgs(self, args: list[str]) -> list[str]:
        return self._deliver(self._nodes(args))

    def cmd_drop_msgs(self, args: list[str]) -> list[str]:
        c = self.c()
        targets = self._nodes(args) if args else sorted(c.nodes)
        out: list[str] = []
        for nid in targets:
            out.extend(f"dropped {fmt_msg(m)}" for m in c.take_messages(nid))
        return out

    def cmd_stabilize(self, args: list[str]) -> list[str]:
        c = self.c()
        nids = self._nodes(args) if args else sorted(c.nodes)
        out: list[str] = []
        for _ in range(10_000):
            live = [n for n in nids if c.nodes[n].up]
            step = self._process(live)
            step += self._deliver(live)
            if not step:
                # Messages to nodes outside ``nids`` stay queued.
                break
            out.extend(step)
        else:
            raise ScriptError("stabilize did not converge")
        return out if self.verbose else []

    # --- faults ---

    def cmd_partition(self, args: list[str]) -> list[str]:
        groups: list[list[int]] = [[]]
        for a in args:
            if a == "/":
                groups.append([])
            else:
                groups[-1].append(_int("node", a))
        self.c().partition(*groups)
        return [f"partitioned {' / '.join(' '.join(map(str, g)) for g in groups)}"]

    def cmd_isolate(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        self.c().isolate(nid)
        return [f"isolated {nid}"]

    def cmd_heal(self, args: list[str]) -> list[str]:
        self.c().heal()
        return ["healed"]

    def cmd_crash(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        self.c().crash(nid)
        self.last_soft.pop(nid, None)
        return [f"crashed {nid}"]

    def cmd_restart(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        self.c().restart(nid)
        return [f"restarted {nid}: {self._state_line(nid)}"]

    # --- client requests ---

    def cmd_propose(self, args: list[str]) -> list[str]:
        if len(args) != 2:
            raise ScriptError("propose N data")
        p = self.c().raw(_int("node", args[0])).propose(args[1].encode())
        return [f"proposed at {p.term}/{p.index}"]

    def cmd_propose_conf_change(self, args: list[str]) -> list[str]:
        if len(args) != 3:
            raise ScriptError("propose-conf-change N add|add-learner|remove ID")
        kinds = {"add": ConfChangeType.ADD_NODE, "add-learner": ConfChangeType.ADD_LEARNER,
                 "remove": ConfChangeType.REMOVE_NODE}
        if args[1] not in kinds:
            raise ScriptError(f"unknown conf change {args[1]!r}; use {sorted(kinds)}")
        cc = ConfChange(kinds[args[1]], _int("node", args[2]))
        p = self.c().raw(_int("node", args[0])).propose_conf_change(cc)
        return [f"proposed at {p.term}/{p.index}"]

    def cmd_read_index(self, args: list[str]) -> list[str]:
        if len(args) != 2:
            raise ScriptError("read-index N ctx")
        self.c().raw(_int("node", args[0])).read_index(args[1].encode())
        return []

    def cmd_transfer_leader(self, args: list[str]) -> list[str]:
        nid, to = self._nodes(args)
        self.c().raw(nid).transfer_leader(to)
        return []

    def cmd_compact(self, args: list[str]) -> list[str]:
        nid, index = self._nodes(args)
        c = self.c()
        c.compact(nid, index)
        st = c.nodes[nid].storage
        return [f"node {nid}: snapshot at {st.snapshot().meta.term}/{index}, "
                f"log now {st.first_index()}..{st.last_index()}"]

    # --- inspection ---

    def _state_line(self, nid: int) -> str:
        node = self.c().nodes[nid]
        if node.raw is None:
            return f"{nid}: down"
        s = node.raw.status()
        cs = s.conf_state
        learners = f" learners={list(cs.learners)}" if cs.learners else ""
        return (f"{nid}: {s.role.name} term={s.term} vote={s.vote} lead={s.leader} "
                f"commit={s.commit} applied={s.applied} voters={list(cs.voters)}{learners}")

    def cmd_raft_state(self, args: list[str]) -> list[str]:
        return [self._state_line(nid) for nid in sorted(self.c().nodes)]

    def cmd_raft_log(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        node = self.c().nodes[nid]
        if node.raw is not None:
            log = node.raw.raft.log
            ents = log.all_entries()
            head = f"log {log.first_index()}..{log.last_index()} (snapshot at {log.first_index() - 1})"
        else:
            ents = node.storage.all_entries()
            head = f"durable log {node.storage.first_index()}..{node.storage.last_index()}"
        return [head, *(fmt_entry(e) for e in ents)]

    def cmd_status(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        s = self.c().raw(nid).status()
        out = [self._state_line(nid)]
        if s.lead_transferee:
            out.append(f"transferring to {s.lead_transferee}")
        for pid, pr in sorted(s.progress.items()):
            extra = f" pending_snapshot={pr.pending_snapshot}" if pr.pending_snapshot else ""
            learner = " learner" if pr.is_learner else ""
            out.append(f"  {pid}: {pr.state} match={pr.match} next={pr.next} "
                       f"inflight={pr.inflight}{learner}{extra}")
        return out

    def cmd_applied(self, args: list[str]) -> list[str]:
        (nid,) = self._nodes(args)
        node = self.c().nodes[nid]
        ents = [e for e in node.state_entries() if e.type is EntryType.NORMAL and e.data]
        shown = " ".join(fmt_data(e.data) for e in ents) or "(no data entries)"
        return [f"{nid} applied up to {node.applied_index()}: {shown}"]
