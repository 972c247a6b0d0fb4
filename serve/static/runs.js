// The run list: fetched from /api/runs every few seconds (new runs appear by themselves),
// sorted by a click on a column head and filtered by the words in the filter box.
"use strict";
const BASE = [
  ["id", "run"], ["time", "time"], ["workload", "workload"], ["target", "target"],
  ["faults", "faults"], ["nodes", "nodes"], ["seed", "seed"], ["bugs", "bugs"], ["ops", "ops"],
  ["verdict", "verdict"],
];
const TAIL = [["anomalies", "anomalies"], ["sim_seconds", "sim s"], ["wall_seconds", "wall s"]];
let data = { runs: [], checkers: [] };
let sortKey = "time", sortDir = -1;
const selected = new Set();
const params = new URLSearchParams(location.search);
const filterBox = document.getElementById("filter");
filterBox.value = params.get("q") || "";

function columns() {
  const errors = data.runs.some(r => r.error) ? [["error", "error"]] : [];  // only when there are some
  return [...BASE, ...data.checkers.map(n => ["checker:" + n, n]), ...TAIL, ...errors];
}
function cell(run, key) {
  if (key.startsWith("checker:")) return run.checkers[key.slice(8)] || "";
  const v = run[key];
  if (Array.isArray(v)) return v.join(",");
  return v === null || v === undefined ? "" : v;
}
function tokens(text) { return String(text).toLowerCase().split(/[\s,+/]+/).filter(Boolean); }
// A term is a word (it must start a word of some column), column:word (of that column; a
// number must equal it), or column<N, column>N, column<=N, column>=N for numbers.
function matches(run, cols, query) {
  for (const term of query.toLowerCase().split(/\s+/).filter(Boolean)) {
    const m = term.match(/^([a-z_ ]+?)(:|=|<=|>=|<|>)(.*)$/);
    let ok = false;
    if (m) {
      const [, name, op, want] = m;
      for (const [key, label] of cols) {
        if (label.toLowerCase() !== name && key.toLowerCase() !== name && label.toLowerCase().replace(" ", "_") !== name) continue;
        const v = cell(run, key);
        if (typeof v === "number" && want !== "" && !isNaN(Number(want))) {
          const w = Number(want);
          ok = op === "<" ? v < w : op === ">" ? v > w : op === "<=" ? v <= w : op === ">=" ? v >= w : v === w;
        } else if (op === ":" || op === "=") {
          ok = tokens(v).some(t => t.startsWith(want)) || String(v).toLowerCase() === want;
        }
      }
    } else {
      ok = cols.some(([key]) => tokens(cell(run, key)).some(t => t.startsWith(term)));
    }
    if (!ok) return false;
  }
  return true;
}
const collator = new Intl.Collator(undefined, { numeric: true });
function compare(a, b) {
  const x = cell(a, sortKey), y = cell(b, sortKey);
  if (typeof x === "number" && typeof y === "number") return (x - y) * sortDir;
  if (x === "" && y !== "") return 1;
  if (y === "" && x !== "") return -1;
  return collator.compare(String(x), String(y)) * sortDir;
}
function render() {
  const cols = columns();
  const head = document.querySelector("#runs thead tr");
  head.innerHTML = "<th></th>" + cols.map(([key, label]) =>
    `<th data-key="${key}" class="${key === sortKey ? (sortDir > 0 ? "sorted-asc" : "sorted-desc") : ""}">${esc(label)}</th>`).join("");
  head.querySelectorAll("th[data-key]").forEach(th => th.onclick = () => {
    const key = th.dataset.key;
    if (key === sortKey) sortDir = -sortDir; else { sortKey = key; sortDir = 1; }
    render();
  });
  const query = filterBox.value;
  const shown = data.runs.filter(r => matches(r, cols, query)).sort(compare);
  const body = document.querySelector("#runs tbody");
  body.innerHTML = shown.map(r => {
    const tds = cols.map(([key]) => {
      const v = cell(r, key);
      if (key === "id") return `<td><a href="/run/${encodeURI(r.id)}">${esc(v)}</a></td>`;
      if (key === "verdict" || key.startsWith("checker:")) return `<td data-col="${key}">${v ? `<span class="badge ${esc(v)}">${esc(v)}</span>` : ""}</td>`;
      if (key === "error") return `<td class="err">${esc(v)}</td>`;
      if (key === "ops" && r.history_pending) return `<td data-col="ops" class="muted" title="reading the history">…</td>`;
      return `<td data-col="${key}" class="${typeof v === "number" ? "num" : ""}">${esc(v)}</td>`;
    }).join("");
    return `<tr data-run="${esc(r.id)}" class="${r.error ? "has-error" : ""}"><td><input type="checkbox" class="pick" ${selected.has(r.id) ? "checked" : ""}></td>${tds}</tr>`;
  }).join("");
  body.querySelectorAll("input.pick").forEach(box => box.onchange = () => {
    const id = box.closest("tr").dataset.run;
    if (box.checked) selected.add(id); else selected.delete(id);
    updateCompare();
  });
  document.getElementById("count").textContent = `${shown.length} of ${data.runs.length} runs`;
  document.getElementById("empty").hidden = data.runs.length > 0;
  updateCompare();
}
function updateCompare() {
  const ids = [...selected].filter(id => data.runs.some(r => r.id === id));
  const button = document.getElementById("compare");
  button.disabled = ids.length !== 2;
  button.onclick = () => { location.href = `/compare?a=${encodeURIComponent(ids[0])}&b=${encodeURIComponent(ids[1])}`; };
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
async function refresh() {
  try {
    const resp = await fetch("/api/runs");
    const fresh = await resp.json();
    document.getElementById("timing").textContent = `listed in ${fresh.seconds.toFixed(3)} s`;
    const changed = JSON.stringify([fresh.runs, fresh.checkers]) !== JSON.stringify([data.runs, data.checkers]);
    data = fresh;
    if (changed) render();
  } catch (e) {
    document.getElementById("timing").textContent = "cannot reach the server: " + e;
  }
}
filterBox.addEventListener("input", () => {
  const p = new URLSearchParams(location.search);
  if (filterBox.value) p.set("q", filterBox.value); else p.delete("q");
  history.replaceState(null, "", "?" + p.toString());
  render();
});
async function loop() {
  await refresh();
  // sooner while histories are still being read, then every few seconds for new runs
  setTimeout(loop, data.runs.some(r => r.history_pending) ? 700 : 3000);
}
loop();
