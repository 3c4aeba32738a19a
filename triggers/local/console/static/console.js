// The triggers console: polls the JSON endpoints next to this page and renders them.
// Everything from events is untrusted text: it is only ever set with textContent.
"use strict";

const POLL_MS = 1000;
const RULES_EVERY = 3;  // polls between two looks at the rules (they change only on reload)
let lastSeq = 0;
let instance = null;  // the server's; a restarted server numbers its events from 1 again
let polls = 0;
let rulesStamp = "";
let dryRun = false;  // `triggers serve --dry-run`: executions are made up, nothing ran

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function getJSON(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
  return body;
}

function badge(text, extra) {
  return h("span", { class: "badge " + text + (extra ? " " + extra : "") }, text);
}

// JSON as people write it: whatever fits on a line stays on one line, the rest is indented.
function compact(value, indent = "") {
  const flat = JSON.stringify(value);
  if (flat === undefined || flat.length + indent.length <= 56 || value === null || typeof value !== "object") {
    return flat;
  }
  const inner = indent + "  ";
  if (Array.isArray(value)) {
    return "[\n" + value.map((item) => inner + compact(item, inner)).join(",\n") + "\n" + indent + "]";
  }
  const members = Object.entries(value).map(([key, item]) => inner + JSON.stringify(key) + ": " + compact(item, inner));
  return "{\n" + members.join(",\n") + "\n" + indent + "}";
}

function json(value) {
  return h("pre", { class: "json" }, compact(value));
}

function clock(iso) {  // "2026-12-05T01:02:03.456Z" -> "01:02:03"
  return iso ? iso.slice(11, 19) : "";
}

function shortName(name) {
  return name ? name.slice(name.lastIndexOf("/") + 1) : "";
}

// -- rules ------------------------------------------------------------------------------------

function renderRules(state) {
  dryRun = state.dry_run;
  document.getElementById("facts").replaceChildren(
    h("b", {}, "function "), state.function, "  ",
    h("b", {}, "ledger "), state.ledger, "  ",
    h("b", {}, state.dry_run ? "dry run" : "emulator "), state.emulator || "",
  );
  document.getElementById("rules-file").textContent =
    state.file + ": " + state.rules.length + " rule" + (state.rules.length === 1 ? "" : "s");
  const rows = state.rules.map((rule) => {
    const scope = Object.entries(rule.scope).map(([k, v]) => h("div", { class: "sub" }, k + ": " + v));
    const pattern = [];
    if (rule.match) pattern.push(json(rule.match));
    if (rule.when) pattern.push(h("div", { class: "mono" }, "when: " + rule.when));
    if (!pattern.length) pattern.push(h("span", { class: "sub" }, "every event of its type"));
    const overrides = Object.keys(rule.overrides).length ? json(rule.overrides) : h("span", { class: "sub" }, "none");
    return h("tr", { "data-rule": rule.name, class: rule.enabled ? "" : "disabled" },
      h("td", {}, h("b", {}, rule.name), rule.enabled ? null : h("div", { class: "sub" }, "disabled"),
        rule.description ? h("div", { class: "sub" }, rule.description) : null),
      h("td", {}, h("span", { class: "mono" }, rule.on.join(", ")), scope),
      h("td", {}, pattern),
      h("td", { title: rule.job }, h("span", { class: "mono" }, shortName(rule.job)),
        h("div", { class: "sub" }, rule.job.split("/").slice(0, 4).join("/")),
        rule.dedup.key ? h("div", { class: "sub" }, "dedup: " + rule.dedup.key) : null),
      h("td", {}, overrides));
  });
  document.getElementById("rules-body").replaceChildren(...rows);
}

// -- events -----------------------------------------------------------------------------------

function verdictList(entry) {
  if (entry.rejected) {
    return h("div", { class: "problem" }, "not an event (" + entry.rejected.reason + "): " + entry.rejected.message);
  }
  if (!entry.verdicts) return h("div", { class: "sub" }, entry.reason || "");
  const outcomes = Object.fromEntries((entry.outcomes || []).map((o) => [o.rule, o]));
  const items = entry.verdicts.map((v) => {
    const outcome = outcomes[v.rule];
    if (v.matched) {
      return h("li", { class: "verdict matched" + (v.error ? " error" : ""), "data-rule": v.rule },
        h("span", { class: "mark" }, v.error ? "!" : "✓"),
        h("span", { class: "name" }, v.rule),
        outcome ? badge(outcome.outcome) : null, " ",
        outcome && outcome.execution ? h("span", { class: "mono" }, shortName(outcome.execution)) : null,
        outcome && outcome.reason ? h("span", { class: "why" }, " " + outcome.reason) : null);
    }
    return h("li", { class: "verdict unmatched", "data-rule": v.rule },
      h("span", { class: "mark" }, "–"), h("span", { class: "name" }, v.rule),
      h("span", { class: "why" }, v.reason || ""));
  });
  if (!items.length) items.push(h("li", { class: "sub" }, "no rules loaded"));
  return h("ul", { class: "verdicts" }, items);
}

function eventRow(entry) {
  const event = entry.event;
  const what = event
    ? [h("div", { class: "mono" }, event.type), h("div", { class: "sub" }, event.kind + " · " + event.form + " · id " + event.id)]
    : [h("div", { class: "sub" }, entry.rejected ? "undecodable request" : "refused request")];
  return h("tr", { "data-seq": entry.seq, class: "fresh" },
    h("td", { class: "mono", title: entry.received }, clock(entry.received)),
    h("td", {}, what),
    h("td", {}, h("span", { class: "mono" }, entry.status + " "), badge(entry.decision || "?")),
    h("td", {}, verdictList(entry)),
    h("td", {}, h("button", { class: "link", type: "button", title: "copy this request into “Try an event”",
      onclick: () => tryRequest(entry.request) }, "try")));
}

async function pollEvents() {
  let answer = await getJSON("api/events?after=" + lastSeq);
  const body = document.getElementById("events-body");
  if (instance !== answer.instance) {
    if (instance !== null) {  // restarted: what the page lists is gone from the server
      body.replaceChildren();
      lastSeq = 0;
      answer = await getJSON("api/events?after=0");
    }
    instance = answer.instance;
  }
  for (const entry of answer.events) {
    body.prepend(eventRow(entry));
    lastSeq = Math.max(lastSeq, entry.seq);
  }
  while (body.rows.length > 200) body.deleteRow(body.rows.length - 1);
  document.getElementById("events-empty").hidden = body.rows.length > 0;
}

// -- runs -------------------------------------------------------------------------------------

function tasks(run) {
  const ex = run.execution_detail;
  if (!ex) {
    const why = dryRun ? "dry run: nothing launched" : "not in this emulator (started before it)";
    return h("span", { class: "sub" }, run.execution ? why : "");
  }
  return h("span", {}, badge(ex.state || "?"), " ",
    h("span", { class: "sub" }, ex.succeeded + "/" + (ex.task_count ?? "?") + " ok" +
      (ex.failed ? ", " + ex.failed + " failed" : "") + (ex.running ? ", " + ex.running + " running" : "")));
}

function logLinks(run) {
  const ex = run.execution_detail;
  if (!ex) return [];
  return ex.attempts.map((a) => h("button", {
    class: "link", type: "button", "data-log": a.log,
    title: (a.result || "running") + (a.exit_code !== null ? " (exit " + a.exit_code + ")" : ""),
    onclick: () => showLog(ex.short + " task " + a.index + " attempt " + a.attempt, a.log),
  }, "task" + a.index + (a.attempt ? "." + a.attempt : "")));
}

function renderRuns(runs) {
  const rows = runs.map((run) => h("tr", { "data-key": run.key },
    h("td", { class: "mono", title: run.created_at }, (run.created_at || "").slice(5, 19).replace("T", " ")),
    h("td", {}, run.rule),
    h("td", { class: "status", "data-status": run.status }, badge(run.status),
      run.reason ? h("div", { class: "sub" }, run.reason) : null),
    h("td", { class: "mono", title: run.execution || "" }, shortName(run.execution)),
    h("td", {}, tasks(run)),
    h("td", {}, run.attempts ?? ""),
    h("td", {}, run.duplicates ?? ""),
    h("td", {}, logLinks(run))));
  document.getElementById("runs-body").replaceChildren(...rows);
  document.getElementById("runs-empty").hidden = runs.length > 0;
}

let runsStamp = "";

async function pollRuns() {
  const runs = (await getJSON("api/runs")).runs;
  const stamp = JSON.stringify(runs);
  // Redrawn only when something changed: a row being read or clicked stays where it is.
  if (stamp !== runsStamp) { runsStamp = stamp; renderRuns(runs); }
}

async function showLog(title, path) {
  const response = await fetch(path);
  document.getElementById("log-title").textContent = title;
  document.getElementById("log-text").textContent =
    response.ok ? (await response.text()) || "(no output yet)" : "no log: " + response.status;
  document.getElementById("log-panel").hidden = false;
}

async function reconcileNow() {
  const out = document.getElementById("reconcile-result");
  out.textContent = "reconciling…";
  try {
    const report = await getJSON("api/reconcile", { method: "POST" });
    out.textContent = "checked " + report.checked + ": " + report.succeeded + " succeeded, " +
      report.failed + " failed, " + report.cancelled + " cancelled, " + report.running + " still running" +
      (report.errors ? ", " + report.errors + " errors" : "");
    await pollRuns();
  } catch (error) {
    out.textContent = "reconcile failed: " + error.message;
  }
}

// -- try an event -----------------------------------------------------------------------------

function tryRequest(request) {
  const file = { headers: request.headers, body: request.body };
  try { file.body = JSON.parse(request.body); } catch (e) { /* not JSON: keep the text */ }
  document.getElementById("try-input").value = JSON.stringify(file, null, 2);
  document.getElementById("try").scrollIntoView();
  plan();
}

function planRule(v) {
  if (!v.matched) {
    return h("div", { class: "plan-rule verdict unmatched", "data-rule": v.rule },
      h("span", { class: "mark" }, "–"), h("span", { class: "name" }, v.rule), h("span", { class: "why" }, v.reason));
  }
  if (v.error) {
    return h("div", { class: "plan-rule verdict matched error", "data-rule": v.rule },
      h("span", { class: "mark" }, "!"), h("span", { class: "name" }, v.rule),
      h("span", { class: "why" }, "matched, but cannot plan the run: " + v.error));
  }
  return h("div", { class: "plan-rule verdict matched", "data-rule": v.rule },
    h("span", { class: "mark" }, "✓"), h("span", { class: "name" }, v.rule), "run ", h("span", { class: "mono" }, v.job),
    h("div", { class: "sub" }, "dedup key: " + v.dedup_key),
    h("div", { class: "http" }, v.http || v.system + " request:"),
    json(v.body));
}

async function plan() {
  const out = document.getElementById("plan-result");
  const text = document.getElementById("try-input").value;
  out.replaceChildren(h("p", { class: "sub" }, "planning…"));
  let answer;
  try {
    answer = await getJSON("api/plan", { method: "POST", body: text, headers: { "Content-Type": "text/plain" } });
  } catch (error) {
    out.replaceChildren(h("p", { class: "problem" }, error.message));
    return;
  }
  if (answer.rejected) {
    out.replaceChildren(h("p", { class: "problem", "data-rejected": answer.rejected.reason },
      "rejected (" + answer.rejected.reason + "): " + answer.rejected.message));
    return;
  }
  const e = answer.event;
  out.replaceChildren(
    h("div", { class: "plan-event" }, h("b", {}, e.type), h("span", { class: "sub" }, "  (" + e.form + ")  id=" + e.id + "  source=" + e.source),
      h("div", { class: "sub" }, answer.matched + " of " + answer.verdicts.length + " rules match")),
    ...answer.verdicts.map(planRule),
    h("details", {}, h("summary", { class: "sub" }, "event document"), json(answer.document)));
}

// -- loop -------------------------------------------------------------------------------------

async function tick() {
  const live = document.getElementById("live");
  try {
    if (polls % RULES_EVERY === 0) {
      const state = await getJSON("api/rules");
      const stamp = JSON.stringify(state);
      if (stamp !== rulesStamp) { rulesStamp = stamp; renderRules(state); }
    }
    await pollEvents();
    await pollRuns();
    live.className = "live ok";
    live.textContent = "live";
  } catch (error) {
    live.className = "live down";
    live.textContent = "server not answering";
  }
  polls += 1;
  setTimeout(tick, POLL_MS);
}

document.getElementById("try-button").addEventListener("click", plan);
document.getElementById("try-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) plan();
});
document.getElementById("reconcile").addEventListener("click", reconcileNow);
document.getElementById("log-close").addEventListener("click", () => {
  document.getElementById("log-panel").hidden = true;
});
tick();
