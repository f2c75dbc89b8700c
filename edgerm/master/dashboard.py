"""The master's small web dashboard: one static HTML page over ``/api/v1/state``.

Role: served at ``GET /`` by :mod:`edgerm.master.http`. The page fetches the
cluster state every two seconds and renders the master summary and one table
per list (agents, frameworks, tasks), with columns taken from the JSON keys,
so it follows the snapshot's shape without being changed with it.

Rules: no external assets (the master may run with no Internet access); text
from agents and frameworks is inserted with ``textContent`` only, never as
HTML, because names and attributes come from the network.
"""

from __future__ import annotations

DASHBOARD_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>edgerm master</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
  table { border-collapse: collapse; width: 100%; }
  th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
  th { background: #f4f4f4; } td { font-family: ui-monospace, monospace; font-size: 12px; }
  #status { color: #777; } .err { color: #b00; }
</style>
</head>
<body>
<h1>edgerm master</h1>
<div id="status">loading...</div>
<div id="master"></div>
<div id="lists"></div>
<script>
"use strict";
function cell(v) {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}
function table(items) {
  const t = document.createElement("table");
  const cols = [];
  for (const it of items) for (const k of Object.keys(it)) if (!cols.includes(k)) cols.push(k);
  const head = t.insertRow();
  for (const c of cols) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  for (const it of items) {
    const row = t.insertRow();
    for (const c of cols) row.insertCell().textContent = cell(it[c]);
  }
  return t;
}
async function refresh() {
  const status = document.getElementById("status");
  try {
    const res = await fetch("/api/v1/state", {cache: "no-store"});
    if (!res.ok) throw new Error("HTTP " + res.status);
    const state = await res.json();
    const master = document.getElementById("master");
    master.replaceChildren(table([state.master || {}]));
    const lists = document.getElementById("lists");
    lists.replaceChildren();
    for (const name of Object.keys(state)) {
      if (!Array.isArray(state[name])) continue;
      const h = document.createElement("h2");
      h.textContent = name + " (" + state[name].length + ")";
      lists.appendChild(h);
      if (state[name].length) lists.appendChild(table(state[name]));
    }
    status.className = "";
    status.textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    status.className = "err";
    status.textContent = "cannot reach the master: " + e.message;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
