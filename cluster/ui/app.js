// lp dashboard: plain JavaScript over the same API as lpctl, no build step.
"use strict";

const phases = ["standby_apply", "standby_trial", "active_apply", "active_trial"];
let current = null; // the plan shown
let clockSkew = 0;  // server time minus browser time, from the Date header

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
  return e;
}

async function get(path) {
  const r = await fetch(path, { headers: { "Accept": "application/json" }, credentials: "same-origin" });
  const d = r.headers.get("Date");
  if (d) clockSkew = new Date(d).getTime() - Date.now();
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
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
    refresh();
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

function phaseIndex(p) { return phases.indexOf(p.phase); }

function renderPlan(d) {
  const box = document.getElementById("plan");
  if (!d) { box.replaceChildren("no plan yet"); return; }
  const p = d.plan;
  const head = el("div", {},
    el("strong", { id: "plan-id" }, p.id), " ", p.spec.name, " — state ",
    el("strong", { id: "plan-state" }, p.state), " — phase ", el("span", { id: "plan-phase" }, p.phase ? `${currentPair(p)}/${p.phase}` : "-"));
  if (p.state === "running" && (p.phase === "standby_trial" || p.phase === "active_trial")) {
    const left = Math.max(0, new Date(p.phase_deadline).getTime() - (Date.now() + clockSkew));
    head.append(" — trial ", el("span", { class: "countdown", id: "countdown" }, `${(left / 1000).toFixed(1)}s left`));
  }
  if (p.reason) head.append(el("div", { class: "warn" }, "reason: " + p.reason));
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
  const nodes = el("table", {}, el("tr", {}, ...["node", "pair", "side", "step", "status", "desired", "observed", "pid", "error"].map(h => el("th", {}, h))));
  for (const n of d.nodes || []) {
    nodes.append(el("tr", { "data-plan-node": n.node }, el("td", {}, n.node), el("td", {}, n.pair), el("td", {}, n.side), el("td", {}, step(p, n.node)),
      el("td", { class: cls(n.status, "alive") }, n.status), el("td", {}, (n.desired || []).join(", ") || "-"),
      el("td", {}, (n.observed || []).join(", ") || "-"), el("td", {}, n.pid || "-"), el("td", { class: "bad" }, n.error || "")));
  }
  box.replaceChildren(head, actions, timelines, nodes);
  const hist = el("table", {}, el("tr", {}, ...["time", "kind", "node/pair", "change", "cause"].map(h => el("th", {}, h))));
  for (const e of (d.history || []).slice(-30).reverse()) {
    hist.append(el("tr", {}, el("td", {}, new Date(e.time).toLocaleTimeString()), el("td", {}, e.kind), el("td", {}, e.node || e.pair || ""),
      el("td", {}, e.from ? `${e.from} → ${e.to}` : (e.to || "")), el("td", {}, e.cause || "")));
  }
  document.getElementById("history").replaceChildren(hist);
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
    t.append(el("tr", { onclick: () => { current = p.id; refresh(); } }, el("td", {}, p.id), el("td", {}, p.spec.name),
      el("td", {}, p.spec.target), el("td", {}, p.state), el("td", {}, p.updated ? new Date(p.updated).toLocaleTimeString() : "")));
  }
  document.getElementById("plans").replaceChildren(t);
}

async function refresh() {
  try {
    const [status, members, plans] = await Promise.all([get("/v1/status"), get("/v1/members"), get("/v1/plans")]);
    document.getElementById("leader").textContent = `node ${status.node}, leader ${status.leader || "(none)"}`;
    renderPairs(members || []);
    const list = (plans || []).map(d => d.plan);
    renderPlans(list);
    const running = list.filter(p => !["completed", "rolled_back", "aborted", "failed"].includes(p.state));
    const id = current || (running.length ? running[running.length - 1].id : (list.length ? list[list.length - 1].id : null));
    renderPlan(id ? await get(`/v1/plans/${encodeURIComponent(id)}`) : null);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    setError("");
  } catch (e) {
    setError(e.message);
  }
}

refresh();
setInterval(refresh, 1000);
