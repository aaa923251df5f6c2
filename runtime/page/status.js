// The status page: polls /api/status every second and redraws.  Read-only.
// Everything is written with textContent, never parsed as HTML.  A token
// given as #token=... in the address is sent as a bearer token and never
// leaves the browser otherwise (the fragment is not sent to servers).
"use strict";

const REFRESH_MS = 1000;
const token = (location.hash.match(/token=([^&]+)/) || [])[1];
let lastOk = 0;

function $(id) { return document.getElementById(id); }

function age(ms) {
  if (!ms || ms < 0) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m" + (s % 60) + "s ago";
  return Math.floor(s / 3600) + "h" + Math.floor((s % 3600) / 60) + "m ago";
}

function dur(us) {
  if (!us) return "-";
  if (us < 1000) return us + " µs";
  if (us < 1e6) return (us / 1000).toFixed(1) + " ms";
  return (us / 1e6).toFixed(2) + " s";
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "-" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tbody, rows, draw) {
  const frag = document.createDocumentFragment();
  for (const r of rows) {
    const tr = document.createElement("tr");
    draw(tr, r);
    frag.appendChild(tr);
  }
  tbody.replaceChildren(frag);
}

function drawNodes(s) {
  const r = s.replica || {};
  const nodes = Array.isArray(r.nodes) ? r.nodes : [];
  const tb = $("nodes").tBodies[0];
  if (s.node.mode !== "cluster") {
    $("cluster-note").textContent = "A single node: a cluster of one, always its own leader.";
    fill(tb, [s.node], (tr, n) => {
      tr.dataset.node = n.id;
      cell(tr, n.id + " (" + n.name + ")");
      cell(tr, "-"); cell(tr, "-"); cell(tr, "leader");
      cell(tr, "self", "h-self"); cell(tr, "-"); cell(tr, "-"); cell(tr, "-");
      cell(tr, s.agents.hosted_here, "num");
    });
    return;
  }
  $("cluster-note").textContent = r.from_follower
    ? "Seen from node " + s.node.id + ", a follower: only the leader (node " +
      r.leader + ") knows every node's health and lag."
    : "Seen from node " + s.node.id + ", the leader (term " + r.term + ").";
  fill(tb, nodes, (tr, n) => {
    tr.dataset.node = n.id;
    tr.dataset.health = n.health;
    cell(tr, n.id + (n.id === s.node.id ? " (this node)" : ""));
    cell(tr, n.address);
    cell(tr, n.labels);
    cell(tr, (n.leader ? "leader" : n.voter ? "voter" : "spare"));
    cell(tr, n.health, "h-" + n.health);
    cell(tr, n.last_contact_ms === null || n.last_contact_ms === undefined
      ? "-" : age(n.last_contact_ms));
    const self = n.id === s.node.id;
    const known = !r.from_follower && n.health !== "removed";
    cell(tr, self ? r.store_applied : known ? n.applied : "-", "num");
    cell(tr, known && !self
      ? Math.max(0, (r.commit_index || 0) - (n.applied || 0)) : "-", "num");
    cell(tr, n.agents, "num");
  });
}

function drawEvents(s) {
  const ev = (s.events || []).slice().reverse();
  $("events-none").hidden = ev.length > 0;
  fill($("events").tBodies[0], ev, (tr, e) => {
    tr.dataset.kind = e.kind;
    tr.dataset.agent = e.agent;
    tr.dataset.from = e.from;
    tr.dataset.to = e.to;
    cell(tr, new Date(e.time_ms).toISOString().replace(".000", "") + " (" +
      age(s.now_ms - e.time_ms) + ")");
    cell(tr, e.kind === "moved" ? "moved (failover or rebalance)" :
      e.kind.replace("_", " "), "e-" + e.kind);
    cell(tr, e.agent || "-");
    cell(tr, e.kind === "moved" ? "node " + e.from : "-");
    cell(tr, e.kind === "moved" ? "node " + e.to : "-");
    cell(tr, e.epoch || "-", "num");
    cell(tr, e.text || "");
  });
}

function drawAgents(s) {
  const a = s.agents;
  $("agents-count").textContent = "(" + a.shown + " of " + a.total +
    " shown; " + a.hosted_here + " hosted on this node)";
  fill($("agents").tBodies[0], a.list || [], (tr, g) => {
    tr.dataset.agent = g.name;
    tr.dataset.owner = g.owner;
    tr.dataset.epoch = g.epoch;
    tr.dataset.status = g.status;
    cell(tr, g.name);
    cell(tr, g.kind);
    cell(tr, g.status, "s-" + g.status);
    cell(tr, g.owner ? "node " + g.owner : "unplaced", "owner");
    cell(tr, g.epoch, "num");
    cell(tr, g.seq, "num");
    cell(tr, g.time_ms ? age(s.now_ms - g.time_ms) : "-");
    cell(tr, g.mailbox, "num");
    cell(tr, g.live ? g.live.phase + ", " + g.live.steps + " steps, " +
      g.live.queued + " queued, commit " + dur(g.live.commit_us) : "");
    cell(tr, g.reason || "", "reason");
  });
}

function draw(s) {
  const n = s.node, r = s.replica || {}, a = s.agents, c = s.commits;
  $("node").textContent = "node " + n.id + " (" + n.name + ") · " + n.mode +
    " · " + n.role + " · v" + n.version + " · up " +
    age(n.uptime_ms).replace(" ago", "") + (n.lease ? "" : " · NO LEASE: agents paused") +
    (n.stopping ? " · stopping" : "");
  $("t-agents").textContent = a.total;
  $("t-agents-sub").textContent = a.running + " running, " + a.stopped +
    " stopped, " + a.quarantined + " quarantined, " + a.mailbox + " messages waiting";
  $("t-ckpts").textContent = c.checkpoints;
  $("t-ckpts-sub").textContent = c.steps + " steps, " + c.batches + " batches";
  $("t-lat").textContent = dur(c.p50_us) + " / " + dur(c.p99_us);
  if (s.hosts) {
    const h = s.hosts, k = h.crashes;
    $("t-crashes").textContent = k.signal + k.exit + k.deadline + k.node;
    $("t-crashes-sub").textContent = k.signal + " signal, " + k.exit +
      " exit, " + k.deadline + " deadline, " + k.node + " node; " +
      h.crash_loop_quarantines + " crash loops; " + h.running +
      " agent hosts, " + h.restarts + " died";
  }
  if (n.mode === "cluster") {
    $("t-leader").textContent = r.leader ? "node " + r.leader : "none";
    $("t-leader-sub").textContent = "term " + r.term + ", commit " +
      r.commit_index + ", applied " + r.store_applied;
  } else {
    $("t-leader").textContent = "node " + n.id;
    $("t-leader-sub").textContent = "single node";
  }
  drawNodes(s);
  drawEvents(s);
  drawAgents(s);
}

async function refresh() {
  try {
    const headers = token ? { "Authorization": "Bearer " + token } : {};
    const res = await fetch("/api/status", { headers, cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status + ": " + (await res.text()).trim());
    const s = await res.json();
    draw(s);
    lastOk = Date.now();
    $("error").hidden = true;
    document.body.dataset.updated = String(lastOk);
  } catch (e) {
    $("error").hidden = false;
    $("error").textContent = "Cannot reach the node: " + e.message +
      (lastOk ? " (showing what it said " + age(Date.now() - lastOk) + ")" : "");
  }
  $("updated").textContent = lastOk ? "updated " + new Date(lastOk).toLocaleTimeString() : "";
  setTimeout(refresh, REFRESH_MS);
}

refresh();
