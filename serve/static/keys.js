// The key browser: cluster status (polled), a lazily loaded key tree by '/' prefix, the
// selected key's value, metadata and past values, live updates from a watch (server-sent
// events) on the prefix being viewed, and put/delete when the server allows writes.
"use strict";
let selectedKey = null;      // hex
let watchedPrefix = null;    // hex
let source = null;           // EventSource
let valueView = localStorage.getItem("kvcheck-value-view") || "auto";

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function hexOf(text) {
  return Array.from(new TextEncoder().encode(text)).map(b => b.toString(16).padStart(2, "0")).join("");
}
function textOfHex(hex) {
  const bytes = new Uint8Array((hex.match(/../g) || []).map(h => parseInt(h, 16)));
  return new TextDecoder().decode(bytes);
}

// -- cluster status -----------------------------------------------------------------------
async function refreshStatus() {
  let st;
  try { st = await (await fetch("/api/cluster")).json(); }
  catch (e) { st = { state: "unreachable", error: "the kvcheck serve process does not answer: " + e, members: [] }; }
  const badge = document.getElementById("cluster-state");
  badge.textContent = st.state;
  badge.className = "badge " + (st.state === "ok" ? "valid" : st.state === "none" ? "none" : "invalid");
  const err = document.getElementById("cluster-error");
  err.hidden = !st.error; err.textContent = st.error || "";
  document.querySelector("#members tbody").innerHTML = (st.members || []).map(m => `<tr>
    <td>${esc(m.name)}</td><td>${esc(m.id)}</td><td>${esc(m.client)}</td>
    <td>${esc(m.error ? "error: " + m.error : (m.role || "") + (m.learner ? " (learner)" : ""))}</td>
    <td>${esc(m.leader ?? "")}</td><td class="num">${esc(m.term ?? "")}</td><td class="num">${esc(m.revision ?? "")}</td>
    <td class="num">${esc(m.compact_revision ?? "")}</td><td class="num">${esc(m.raft_index ?? "")}</td>
    <td class="num">${esc(m.applied ?? "")}</td><td class="num">${esc(m.db_size ?? "")}</td></tr>`).join("");
  if (st.state === "ok" && !document.querySelector("#tree > ul")) loadRoot();
}

// -- tree -----------------------------------------------------------------------------------
async function listing(prefixHex) {
  const resp = await fetch("/api/keys/children?prefix=" + prefixHex);
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}
const openPrefixes = new Set();  // folders the user has expanded: kept open across reloads
function renderList(ul, body) {
  const prefixLen = textOfHex(body.prefix).length;
  ul.innerHTML = body.dirs.map(d => `<li><span class="dir" data-prefix="${d.prefix}">▸ ${esc(d.name)}</span><ul hidden></ul></li>`).join("") +
    body.keys.map(k => `<li><span class="leaf${k.key === selectedKey ? " selected" : ""}" data-key="${k.key}">${esc(k.name.slice(prefixLen) || k.name)}</span></li>`).join("") +
    (body.more ? `<li class="muted">… more (only the first entries are listed)</li>` : "") +
    (!body.dirs.length && !body.keys.length ? `<li class="muted">(no keys)</li>` : "");
  ul.dataset.prefix = body.prefix;
  ul.querySelectorAll(":scope > li > .dir").forEach(d => {
    d.onclick = () => toggle(d);
    if (openPrefixes.has(d.dataset.prefix)) expand(d);
  });
  ul.querySelectorAll(":scope > li > .leaf").forEach(l => l.onclick = () => selectKey(l.dataset.key));
}
async function loadRoot() {
  const tree = document.getElementById("tree");
  let ul = tree.querySelector(":scope > ul");
  try {
    const body = await listing("");
    if (!ul) { ul = document.createElement("ul"); tree.innerHTML = ""; tree.appendChild(ul); }
    renderList(ul, body);
    if (watchedPrefix === null) watch("");
  } catch (e) {
    tree.innerHTML = `<p class="error">${esc(e.message)}</p>`;
  }
}
async function expand(dirEl) {
  const ul = dirEl.nextElementSibling;
  openPrefixes.add(dirEl.dataset.prefix);
  dirEl.classList.add("open"); ul.hidden = false;
  dirEl.textContent = "▾" + dirEl.textContent.slice(1);
  try { renderList(ul, await listing(dirEl.dataset.prefix)); }
  catch (e) { ul.innerHTML = `<li class="error">${esc(e.message)}</li>`; }
}
async function toggle(dirEl) {
  if (dirEl.classList.contains("open")) {
    openPrefixes.delete(dirEl.dataset.prefix);
    dirEl.classList.remove("open"); dirEl.nextElementSibling.hidden = true;
    dirEl.textContent = "▸" + dirEl.textContent.slice(1);
    return;
  }
  await expand(dirEl);
  if (selectedKey === null) watch(dirEl.dataset.prefix);
}
async function reloadListings() {
  await loadRoot();  // re-expands every open folder
}

// -- one key --------------------------------------------------------------------------------
function folderOf(keyHex) {
  const text = textOfHex(keyHex);
  const slash = text.lastIndexOf("/");
  return slash < 0 ? "" : hexOf(text.slice(0, slash + 1));
}
async function selectKey(keyHex, flash) {
  selectedKey = keyHex;
  document.querySelectorAll("#tree .leaf").forEach(l => l.classList.toggle("selected", l.dataset.key === keyHex));
  const box = document.getElementById("key-detail");
  const resp = await fetch("/api/keys/key?key=" + keyHex);
  const k = await resp.json();
  if (!resp.ok) {
    box.innerHTML = `<h2>${esc(textOfHex(keyHex))}</h2><p class="error" id="key-error">${esc(k.error)}</p>`;
    return;
  }
  document.getElementById("put-key").value = k.name;
  const views = k.value;
  const view = valueView === "auto" ? (views.json !== null ? "json" : views.text !== null ? "text" : "hex") : valueView;
  const shown = view === "json" ? (views.json ?? "(not JSON)") : view === "text" ? (views.text ?? "(not UTF-8 text)") : views.hex;
  box.innerHTML = `<h2 id="key-name">${esc(k.name)}</h2>
    <dl><dt>create revision</dt><dd id="key-create">${k.create_revision}</dd>
      <dt>mod revision</dt><dd id="key-mod">${k.mod_revision}</dd>
      <dt>version</dt><dd id="key-version">${k.version}</dd>
      <dt>lease</dt><dd>${esc(k.lease || "none")}</dd>
      <dt>size</dt><dd>${views.size} bytes (${views.kind})</dd>
      <dt>store revision</dt><dd>${k.revision}</dd></dl>
    <div class="tabs">${["auto", "text", "json", "hex"].map(v => `<button data-view="${v}" class="${v === valueView ? "on" : ""}">${v}</button>`).join("")}</div>
    <pre id="key-value" class="${flash ? "flash" : ""}">${esc(shown)}</pre>
    <h3>Past values</h3>
    ${k.history_note ? `<p class="muted">${esc(k.history_note)}</p>` : ""}
    <table class="grid" id="key-history"><thead><tr><th>mod revision</th><th>version</th><th>value</th></tr></thead><tbody>
    ${k.history.map(h => h.type === "delete" ? `<tr><td class="num">${h.mod_revision}</td><td></td><td class="muted">deleted</td></tr>`
      : `<tr><td class="num">${h.mod_revision}</td><td class="num">${h.version}</td><td>${esc(h.value.text ?? h.value.hex)}</td></tr>`).join("")
      || `<tr><td colspan="3" class="muted">none since the compaction revision</td></tr>`}
    </tbody></table>`;
  box.querySelectorAll(".tabs button").forEach(b => b.onclick = () => {
    valueView = b.dataset.view; localStorage.setItem("kvcheck-value-view", valueView); selectKey(keyHex);
  });
  const folder = folderOf(keyHex);
  if (folder !== watchedPrefix) watch(folder);  // the viewed prefix: the selected key's folder
}

// -- live updates ---------------------------------------------------------------------------
function watch(prefixHex) {
  if (source) source.close();
  watchedPrefix = prefixHex;
  source = new EventSource("/api/keys/watch?prefix=" + prefixHex);
  source.onmessage = msg => {
    const ev = JSON.parse(msg.data);
    if (ev.key === selectedKey) {
      if (ev.type === "delete") document.getElementById("key-detail").insertAdjacentHTML("afterbegin", `<p class="error">deleted at revision ${ev.mod_revision}</p>`);
      else selectKey(ev.key, true);
    }
    if (ev.type === "delete" || ev.version === 1) reloadListings();
  };
  source.addEventListener("created", () => { document.getElementById("tree").dataset.watching = textOfHex(prefixHex); });
}

// -- writes ---------------------------------------------------------------------------------
async function write(path, body, question) {
  const out = document.getElementById("write-result");
  if (!confirm(question)) { out.textContent = "cancelled"; return; }
  const resp = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const got = await resp.json();
  out.className = resp.ok ? "" : "error";
  out.textContent = resp.ok ? `done (revision ${got.revision ?? "-"}${got.deleted !== undefined ? ", deleted " + got.deleted : ""})`
                            : `refused: HTTP ${resp.status}: ${got.error}`;
  reloadListings();
}
document.getElementById("put-form").onsubmit = e => {
  e.preventDefault();
  const key = document.getElementById("put-key").value, value = document.getElementById("put-value").value;
  write("/api/keys/put", { key, value }, `Put ${key} = ${value}?`);
};
document.getElementById("delete").onclick = () => {
  const key = document.getElementById("put-key").value;
  write("/api/keys/delete", { key }, `Delete ${key}?`);
};

refreshStatus();
setInterval(refreshStatus, 2000);
