// The run page's re-check button: POST starts `kvcheck check RUN_DIR` on the server; the
// page polls its state and output until it ends, then reloads to show the new results.
"use strict";
const button = document.getElementById("recheck");
const stateBox = document.getElementById("recheck-state");
const output = document.getElementById("recheck-output");
const run = button.dataset.run;
const url = "/api/recheck/" + run.split("/").map(encodeURIComponent).join("/");

function show(job) {
  if (job.state === "idle") return;
  output.hidden = false;
  output.textContent = (job.output || []).join("\n");
  if (job.state === "running") stateBox.textContent = `running… ${job.elapsed} s`;
  else if (job.state === "done") stateBox.textContent = `done in ${job.elapsed} s: exit ${job.exit_code} (${job.verdict || "error"})`;
  else stateBox.textContent = `failed: ${(job.output || []).slice(-1)[0] || ""}`;
  button.disabled = job.state === "running";
}
async function poll(reloadWhenDone) {
  const job = await (await fetch(url)).json();
  show(job);
  if (job.state === "running") setTimeout(() => poll(true), 500);
  else if (reloadWhenDone && job.state === "done") {
    document.getElementById("recheck-reload").hidden = false;  // results.json was rewritten
  }
}
button.onclick = async () => {
  button.disabled = true;
  const resp = await fetch(url, { method: "POST" });
  show(await resp.json());
  setTimeout(() => poll(true), 300);
};
poll(false);
