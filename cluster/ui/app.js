// lp dashboard: plain JavaScript over the same API as lpctl, no build step.
"use strict";

const phases = ["standby_apply", "standby_trial", "active_apply", "active_trial"];
let current = null; // the plan shown
let clockSkew = 0;  // server time minus browser time, from the Date header
const queryWait = "60s"; // blocking queries are answered at the latest after this
let shown = null;   // the plan detail on the page (for the countdown)
let planLoop = null; // AbortController of the current plan's blocking query
let lastList = [];

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
  return e;
}

async function get(path, signal) {
  const r = await fetch(path, { headers: { "Accept": "application/json" }, credentials: "same-origin", signal });
  const d = r.headers.get("Date");
  if (d) clockSkew = new Date(d).getTime() - Date.now();
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return { body, index: Number(r.headers.get("X-Lp-Index") || 0) };
}

const sleep = ms => new Promise(res => setTimeout(res, ms));

// follow keeps one blocking query open on path (?index=N&wait=60s: lpd
// answers when the state changed, or after the wait) and calls onData with
// each new answer; nothing is asked while nothing changes. It stops when
// signal aborts. An lpd without blocking queries (no X-Lp-Index) is asked
// every second.
async function follow(path, onData, signal) {
  let index = 0;
  while (!signal.aborted) {
    try {
      const q = index > 0 ? `${path.includes("?") ? "&" : "?"}index=${index}&wait=${queryWait}` : "";
      const { body, index: got } = await get(path + q, signal);
      if (got === 0) { onData(body); await sleep(1000); continue; }
      if (got < index) { index = 0; continue; } // another lpd, or restarted: start again
      if (got !== index) { index = got; onData(body); }
    } catch (e) {
      if (signal.aborted) return;
      setError(e.message);
      await sleep(1000);
    }
  }
}

async function post(path) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}", credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// confirmThen asks in a dialog before an operator action.
function confirmThen(text, action) {
  const dlg = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  dlg.onclose = async () => {
    if (dlg.returnValue !== "ok") return;
    try { await action(); setError(""); } catch (e) { setError(e.message); }
  };
  dlg.showModal();
}

function setError(msg) { document.getElementById("error").textContent = msg; }

function cls(v, good) { return v === good ? "ok" : "bad"; }

function renderPairs(members) {
  const byPair = {};
  for (const m of members) (byPair[m.pair || "(witness)"] ||= []).push(m);
  const root = el("div");
  for (const pair of Object.keys(byPair).sort()) {
    const t = el("table", {}, el("tr", {}, ...["node", "role", "status", "gossip", "health", "failing check", "last contact", ""].map(h => el("th", {}, h))));
    for (const m of byPair[pair]) {
      const promote = m.pair && m.role === "standby"
        ? el("button", { "data-action": "promote", "data-node": m.node, onclick: () => confirmThen(`Promote ${m.node}? Its pair switches over: the active is demoted first.`, () => post(`/v1/nodes/${encodeURIComponent(m.node)}/promote`)) }, "promote")
        : "";
      t.append(el("tr", { "data-node": m.node },
        el("td", {}, m.node), el("td", {}, m.role), el("td", { class: cls(m.status, "alive") }, m.status),
        el("td", { class: cls(m.gossip, "alive") }, m.gossip), el("td", { class: cls(m.health, "healthy") }, m.health),
        el("td", {}, m.failing_check ? `${m.failing_check}: ${m.check_output || ""}` : "-"), el("td", {}, m.last_contact), el("td", {}, promote)));
    }
    root.append(el("div", { class: "pair" }, el("h3", {}, pair), t));
  }
  document.getElementById("pairs").replaceChildren(root);
}

function inTrial(p) { return p.state === "running" && (p.phase === "standby_trial" || p.phase === "active_trial"); }

function countdown(p) {
  const left = Math.max(0, new Date(p.phase_deadline).getTime() - (Date.now() + clockSkew));
  return `${(left / 1000).toFixed(1)}s left`;
}

function phaseIndex(p) { return phases.indexOf(p.phase); }

function renderPlan(d) {
  const box = document.getElementById("plan");
  if (!d) { box.replaceChildren("no plan yet"); return; }
  const p = d.plan;
  const head = el("div", {},
    el("strong", { id: "plan-id" }, p.id), " ", p.spec.name, " — state ",
    el("strong", { id: "plan-state" }, p.state), " — phase ", el("span", { id: "plan-phase" }, p.phase ? `${currentPair(p)}/${p.phase}` : "-"));
  if (inTrial(p)) {
    head.append(" — trial ", el("span", { class: "countdown", id: "countdown" }, countdown(p)));
  }
  if (p.reason) head.append(el("div", { class: "warn" }, "reason: " + p.reason));
  if (d.waiting) head.append(el("div", { class: "warn", id: "plan-waiting" }, "waiting: " + d.waiting));
  const actions = el("div", {});
  const act = (name, allowed) => {
    if (!allowed.includes(p.state)) return;
    actions.append(el("button", { "data-action": name, class: name === "rollback" || name === "abort" ? "danger" : "", onclick: () => confirmThen(`${name} plan ${p.id} (${p.spec.name})?`, () => post(`/v1/plans/${encodeURIComponent(p.id)}/${name}`)) }, name));
  };
  act("pause", ["pending", "running"]);
  act("resume", ["paused"]);
  act("abort", ["pending", "running", "paused"]);
  act("rollback", ["running", "paused", "completed", "aborted", "failed"]);
  const timelines = el("div", {});
  (p.spec.pairs || []).forEach((pair, i) => {
    const tl = el("div", { class: "timeline", "data-pair": pair });
    phases.forEach((ph, j) => {
      let c = "phase";
      if (i < p.pair_index || (i === p.pair_index && (j < phaseIndex(p) || p.state === "completed"))) c += " done";
      if (i === p.pair_index && j === phaseIndex(p) && p.state !== "completed") c += " current";
      if (p.state === "rolling_back" || p.state === "rolled_back") c = c.replace(" done", " rolled");
      tl.append(el("div", { class: c }, ph.replace("_", " ")));
    });
    timelines.append(el("div", {}, el("em", {}, pair)), tl);
  });
  const nodes = el("table", {}, el("tr", {}, ...["node", "pair", "side", "step", "status", "desired", "observed", "pid", "engine pause", "error"].map(h => el("th", {}, h))));
  for (const n of d.nodes || []) {
    nodes.append(el("tr", { "data-plan-node": n.node }, el("td", {}, n.node), el("td", {}, n.pair), el("td", {}, n.side), el("td", {}, step(p, n.node)),
      el("td", { class: cls(n.status, "alive") }, n.status), el("td", {}, (n.desired || []).join(", ") || "-"),
      el("td", {}, (n.observed || []).join(", ") || "-"), el("td", {}, n.pid || "-"),
      el("td", { class: "pause" }, pauses(p, n)), el("td", { class: "bad" }, n.error || "")));
  }
  box.replaceChildren(head, actions, timelines, nodes);
  const hist = el("table", {}, el("tr", {}, ...["time", "kind", "node/pair", "change", "cause"].map(h => el("th", {}, h))));
  for (const e of (d.history || []).slice(-30).reverse()) {
    hist.append(el("tr", {}, el("td", {}, new Date(e.time).toLocaleTimeString()), el("td", {}, e.kind), el("td", {}, e.node || e.pair || ""),
      el("td", {}, (e.from ? `${e.from} → ${e.to}` : (e.to || "")) + (e.pause ? ` (pause ${dur(e.pause)})` : "")), el("td", {}, e.cause || "")));
  }
  document.getElementById("history").replaceChildren(hist);
}

// dur formats a Go duration in nanoseconds (JSON) for humans.
function dur(ns) {
  if (ns < 1e3) return `${ns}ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(0)}µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(ns < 1e7 ? 2 : 1)}ms`;
  return `${(ns / 1e9).toFixed(2)}s`;
}

// pauses says how long the engine kept the node's target stopped to apply
// the plan's patch (and to revert it): from the plan node, else its step.
function pauses(p, n) {
  const s = (p.steps || []).find(s => s.node === n.node) || {};
  const apply = n.apply_pause || s.apply_pause, revert = n.revert_pause || s.revert_pause;
  const parts = [];
  if (apply) parts.push(`apply ${dur(apply)}`);
  if (revert) parts.push(`revert ${dur(revert)}`);
  return parts.join(", ") || "-";
}

function currentPair(p) { return (p.spec.pairs || [])[p.pair_index] || ""; }

function step(p, node) {
  const s = (p.steps || []).find(s => s.node === node);
  if (!s) return "-";
  const set = t => t && !t.startsWith("0001-");
  if (set(s.rolled_back)) return "rolled back";
  if (set(s.trial_passed)) return "passed";
  if (set(s.trial_started)) return "in trial";
  if (set(s.applied)) return "applying";
  return "waiting";
}

function renderPlans(plans) {
  const t = el("table", {}, el("tr", {}, ...["id", "name", "target", "state", "updated"].map(h => el("th", {}, h))));
  for (const p of plans.slice().reverse()) {
    t.append(el("tr", { onclick: () => { current = p.id; choosePlan(); } }, el("td", {}, p.id), el("td", {}, p.spec.name),
      el("td", {}, p.spec.target), el("td", {}, p.state), el("td", {}, p.updated ? new Date(p.updated).toLocaleTimeString() : "")));
  }
  document.getElementById("plans").replaceChildren(t);
}

function updated() {
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  setError("");
}

// choosePlan follows the plan to show: the one clicked, else the latest
// unfinished one, else the latest.
function choosePlan() {
  const running = lastList.filter(p => !["completed", "rolled_back", "aborted", "failed"].includes(p.state));
  const id = current || (running.length ? running[running.length - 1].id : (lastList.length ? lastList[lastList.length - 1].id : null));
  if (planLoop && planLoop.id === id) return;
  if (planLoop) planLoop.abort();
  if (!id) { shown = null; renderPlan(null); return; }
  planLoop = new AbortController();
  planLoop.id = id;
  follow(`/v1/plans/${encodeURIComponent(id)}`, d => { shown = d; renderPlan(d); updated(); }, planLoop.signal);
}

function start() {
  const forever = new AbortController().signal;
  follow("/v1/members", async members => {
    renderPairs(members || []);
    updated();
    try {
      const { body: status } = await get("/v1/status"); // same index as members
      document.getElementById("leader").textContent = `node ${status.node}, leader ${status.leader || "(none)"}`;
    } catch (e) { setError(e.message); }
  }, forever);
  follow("/v1/plans", plans => {
    lastList = (plans || []).map(d => d.plan);
    renderPlans(lastList);
    choosePlan();
    updated();
  }, forever);
  // The trial countdown ticks here, between answers.
  setInterval(() => {
    const c = document.getElementById("countdown");
    if (c && shown && inTrial(shown.plan)) c.textContent = countdown(shown.plan);
  }, 100);
}

start();
