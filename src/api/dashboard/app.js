// hookwise dashboard. Reads the documented /api/v1 endpoints of this origin
// only (the spec is at /openapi.json); builds the page with DOM calls, never
// from HTML strings, so nothing a delivery carries can become markup.
"use strict";

const TOKEN_KEY = "hookwise.api-token";
const REFRESH_MS = 4000;
const RECENT = 25;
const RECENT_DELIVERIES = 15;
const CHART_DAYS = 30;

// ---------- small helpers ----------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// Only web links become links: a value from the API is never a `javascript:` href.
function webLink(url, text) {
  if (typeof url === "string" && /^https?:\/\//i.test(url)) {
    return h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, text);
  }
  return h("span", { class: "muted" }, "—");
}

// GitHub's web root as the server knows it (GITHUB_WEB_URL); /status tells it.
let githubWeb = "https://github.com";

// GitHub sends /issues/N on to /pull/N for a pull request.
function githubThread(c) {
  if (!c.repository || c.number === undefined || c.number === null) return null;
  const repo = c.repository.split("/").map(encodeURIComponent).join("/");
  return `${githubWeb}/${repo}/issues/${encodeURIComponent(c.number)}`;
}

async function instanceStatus() {
  const status = await api("/status");
  if (typeof status.github_web_url === "string" && /^https?:\/\//i.test(status.github_web_url)) {
    githubWeb = status.github_web_url.replace(/\/+$/, "");
  }
  return status;
}

function ago(iso) {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const seconds = Math.round((Date.now() - t) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(t).toISOString().slice(0, 10);
}

function when(iso) {
  return h("time", { datetime: iso || "", title: iso || "" }, ago(iso));
}

function duration(ms) {
  if (ms === undefined || ms === null) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

const STATUS_TONE = {
  finished: "ok", trigger: "run", running: "run", starting: "run", detected: "run",
  live: "ok", caught_up: "ok", ignored: "", rejected: "warn", standby: "warn",
  failed: "bad", abandoned: "bad", failing: "bad", stopped: "warn",
};

function badge(value) {
  const text = value === undefined || value === null ? "—" : String(value);
  return h("span", { class: `badge ${STATUS_TONE[text] || ""}`.trim(), "data-status": text }, text);
}

function table(columns, rows, emptyText) {
  if (rows.length === 0) return h("p", { class: "empty" }, emptyText);
  return h("table", { class: "rows" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null, scope: "col" }, c.title)))),
    h("tbody", {}, rows.map((row) =>
      h("tr", row.attrs || {}, columns.map((c) => h("td", { "data-label": c.title, class: c.num ? "num" : null }, c.cell(row.item)))))));
}

function panel(title, note, ...body) {
  return h("section", { class: "panel" }, h("h2", {}, title, note ? h("span", { class: "muted" }, note) : null), ...body);
}

// ---------- the API ----------

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const url = `/api/v1${path}${query.toString() ? `?${query}` : ""}`;
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const response = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiFailure(response.status, body);
  return body;
}

// The newest `want` rows of a list ordered oldest first: look at the last
// `window` log positions, widening the window until it holds enough.
async function newest(path, params, head, want) {
  let window = want * 4;
  for (;;) {
    const after = Math.max(0, head - window);
    let page = await api(path, { ...params, after, limit: 500 });
    let items = page.items;
    for (let pages = 1; page.next_cursor !== undefined && page.next_cursor !== null && pages < 20; pages++) {
      page = await api(path, { ...params, after: page.next_cursor, limit: 500 });
      items = items.concat(page.items).slice(-want);
    }
    if (items.length >= want || after === 0) return items.slice(-want).reverse();
    window *= 4;
  }
}

// ---------- the token form ----------

const tokenPanel = () => document.getElementById("token-panel");

function showTokenMessage(text, tone) {
  const message = document.getElementById("token-message");
  message.textContent = text;
  message.className = `message ${tone}`;
  message.hidden = !text;
}

function askForToken(text) {
  tokenPanel().hidden = false;
  showTokenMessage(text, "error");
  document.getElementById("token-input").focus();
}

function setUpTokenForm() {
  document.getElementById("token-toggle").addEventListener("click", () => {
    tokenPanel().hidden = !tokenPanel().hidden;
    if (!tokenPanel().hidden) document.getElementById("token-input").focus();
  });
  document.getElementById("token-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("token-input");
    const candidate = input.value.trim();
    if (!candidate) return;
    sessionStorage.setItem(TOKEN_KEY, candidate);
    try {
      await api("/status");
    } catch (e) {
      if (e instanceof ApiFailure && e.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showTokenMessage("The API did not accept that token.", "error");
        input.select();
        return;
      }
    }
    input.value = "";
    showTokenMessage("Token accepted.", "ok");
    tokenPanel().hidden = true;
    render();
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenMessage("Token forgotten.", "ok");
    render();
  });
}

// ---------- views ----------

let refreshTimer = null;
let renderCount = 0;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map((p) => decodeURIComponent(p));
  return { parts, params: new URLSearchParams(query || "") };
}

function markNav(name) {
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("current", a.dataset.nav === name);
}

function setLive(text, stale) {
  const live = document.getElementById("live");
  live.textContent = text;
  live.classList.toggle("stale", Boolean(stale));
}

async function render() {
  clearTimeout(refreshTimer);
  const mine = ++renderCount;
  const view = document.getElementById("view");
  const { parts, params } = route();
  let draw;
  let name = "overview";
  if (parts[0] === "conversations" && parts[1]) draw = () => conversationView(parts[1]);
  else if (parts[0] === "deliveries" && parts[1]) draw = () => deliveryView(parts[1]);
  else if (parts[0] === "audit") { name = "audit"; draw = () => auditView(params); }
  else draw = () => overview();
  markNav(name);
  const tick = async (first) => {
    try {
      const content = await draw();
      if (mine !== renderCount) return;
      view.replaceChildren(content);
      setLive(`updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      if (mine !== renderCount) return;
      if (e instanceof ApiFailure && e.status === 401) {
        askForToken(token() ? "The API did not accept the token in use." : "This API needs a token.");
        view.replaceChildren(h("p", { class: "message error", id: "needs-token" }, "Enter the API token (HOOKWISE_API_TOKEN) to see the dashboard."));
        setLive("no token", true);
        return;
      }
      if (first) view.replaceChildren(h("p", { class: "message error" }, `The API answered: ${e.message}`));
      setLive(`not updated: ${e.message}`, true);
    }
    if (mine === renderCount && name === "overview" && parts.length === 0) {
      refreshTimer = setTimeout(() => tick(false), REFRESH_MS);
    }
  };
  await tick(true);
}

async function overview() {
  const status = await instanceStatus();
  const since = new Date(Date.now() - (CHART_DAYS - 1) * 86400000);
  since.setUTCHours(0, 0, 0, 0);
  const [deliveries, conversations, timeline, prStats, triggers, readModels, sinks] = await Promise.all([
    newest("/deliveries", {}, status.head, RECENT_DELIVERIES),
    newest("/conversations", {}, status.head, RECENT),
    api("/stats/pull-requests/daily", { since: since.toISOString() }),
    api("/stats/pull-requests", { since: since.toISOString() }),
    api("/stats/triggers"),
    api("/admin/read-models"),
    api("/sinks"),
  ]);
  return h("div", { class: "grid" },
    h("div", { class: "span-12" }, instancePanel(status, triggers, readModels)),
    h("div", { class: "span-8" }, chartPanel(timeline.days, since, prStats)),
    h("div", { class: "span-4" }, triggerPanel(triggers)),
    h("div", { class: "span-12" }, conversationsPanel(conversations)),
    h("div", { class: "span-12" }, deliveriesPanel(deliveries)),
    h("div", { class: "span-6" }, readModelsPanel(readModels)),
    h("div", { class: "span-6" }, sinksPanel(sinks)));
}

function instancePanel(status, triggers, readModels) {
  const maxLag = readModels.reduce((m, r) => Math.max(m, r.lag), 0);
  const lease = status.holds_background_lease ? "this instance" : (status.background_lease_holder || "unknown");
  return h("section", { class: "panel", id: "instance" },
    h("dl", { class: "figures" },
      figure("Log head", status.head, "head"),
      figure("Background lease", lease, "lease", true),
      figure("Read-model lag", maxLag === 0 ? "caught up" : `${maxLag} events`, "lag", true),
      figure("Conversations", triggers.total, "conversations-total"),
      figure("Median time to acknowledgement", duration(triggers.median_time_to_acknowledgement_ms), "ack", true),
      figure("Version", status.version, "version", true)));
}

function figure(label, value, id, small) {
  return h("div", { class: "figure" }, h("dt", {}, label), h("dd", { id: `figure-${id}`, class: small ? "small" : null }, value));
}

function chartPanel(days, since, stats) {
  const note = `last ${CHART_DAYS} days · merged ${stats.merged} · helped by the agent ${stats.helped_by_agent} · agent commits ${stats.agent_commits}`;
  return panel("Pull requests", note, prChart(days, since),
    h("ul", { class: "legend" },
      h("li", {}, h("span", { class: "swatch agent" }), "merged with the agent"),
      h("li", {}, h("span", { class: "swatch human" }), "merged without"),
      h("li", {}, h("span", { class: "swatch commit" }), "agent commits")));
}

function prChart(days, since) {
  const byDay = new Map(days.map((d) => [d.day, d]));
  const series = [];
  for (let i = 0; i < CHART_DAYS; i++) {
    const day = new Date(since.getTime() + i * 86400000).toISOString().slice(0, 10);
    series.push(byDay.get(day) || { day, merged_with_agent: 0, merged_without_agent: 0, agent_commits: 0 });
  }
  // Drawn at about the width it is shown at, so that its text stays legible on a phone.
  const W = Math.round(Math.min(640, Math.max(320, window.innerWidth - 48)));
  const H = W < 500 ? 200 : 220, left = 30, right = 30, top = 12, bottom = 28;
  const plotW = W - left - right, plotH = H - top - bottom;
  const maxMerged = niceMax(Math.max(...series.map((d) => d.merged_with_agent + d.merged_without_agent)));
  const maxCommits = niceMax(Math.max(...series.map((d) => d.agent_commits)));
  const slot = plotW / series.length;
  const barW = Math.max(2, slot * 0.66);
  const y = (v) => top + plotH - (v / maxMerged) * plotH;
  const yc = (v) => top + plotH - (v / maxCommits) * plotH;
  const svg = s("svg", { class: "chart", id: "pr-chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Pull requests merged per day, with and without the agent, and agent commits" });
  // Whole counts only: a tick at half of an odd maximum would read "0.5 pull requests".
  const fractions = maxMerged % 2 === 0 && maxCommits % 2 === 0 ? [0, 0.5, 1] : [0, 1];
  for (const frac of fractions) {
    const gy = top + plotH - frac * plotH;
    svg.append(s("line", { class: frac === 0 ? "axis" : "grid-line", x1: left, x2: W - right, y1: gy, y2: gy }));
    svg.append(s("text", { x: left - 6, y: gy + 4, "text-anchor": "end" }, String(frac * maxMerged)));
    svg.append(s("text", { x: W - right + 6, y: gy + 4, "text-anchor": "start" }, String(frac * maxCommits)));
  }
  const points = [];
  series.forEach((d, i) => {
    const x = left + i * slot + (slot - barW) / 2;
    const human = d.merged_without_agent, agent = d.merged_with_agent;
    if (agent > 0) {
      svg.append(s("rect", { class: "bar agent", x, y: y(agent), width: barW, height: y(0) - y(agent), "data-day": d.day },
        s("title", {}, `${d.day}: ${agent} merged with the agent`)));
    }
    if (human > 0) {
      svg.append(s("rect", { class: "bar human", x, y: y(agent + human), width: barW, height: y(agent) - y(agent + human), "data-day": d.day },
        s("title", {}, `${d.day}: ${human} merged without the agent`)));
    }
    points.push([left + i * slot + slot / 2, yc(d.agent_commits), d]);
    if (i === 0 || i === series.length - 1 || i === Math.floor(series.length / 2)) {
      svg.append(s("text", { x: left + i * slot + slot / 2, y: H - 8, "text-anchor": "middle" }, d.day.slice(5)));
    }
  });
  svg.append(s("polyline", { class: "commits", points: points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(" ") }));
  for (const [px, py, d] of points) {
    if (d.agent_commits > 0) {
      svg.append(s("circle", { class: "point", cx: px.toFixed(1), cy: py.toFixed(1), r: 3.5 }, s("title", {}, `${d.day}: ${d.agent_commits} agent commits`)));
    }
  }
  return h("div", { class: "chart-wrap" }, svg);
}

// The axis maximum: at least 1, even above 1 (so that its half is a whole number too).
function niceMax(value) {
  const whole = Math.max(1, Math.ceil(value));
  return whole === 1 ? 1 : whole + (whole % 2);
}

function triggerPanel(triggers) {
  const byStatus = new Map();
  for (const c of triggers.by_kind_and_status) byStatus.set(c.status, (byStatus.get(c.status) || 0) + c.count);
  const rows = [...byStatus.entries()].sort((a, b) => b[1] - a[1]).map(([status, count]) => ({ item: { status, count } }));
  return panel("Conversations by status", `${triggers.acknowledged} acknowledged`,
    table([
      { title: "Status", cell: (r) => badge(r.status) },
      { title: "Count", num: true, cell: (r) => r.count },
    ], rows, "No conversations yet."));
}

function conversationsPanel(items) {
  return h("section", { class: "panel", id: "conversations" },
    h("h2", {}, "Conversations", h("span", { class: "muted" }, `newest ${RECENT}`)),
    table([
      { title: "Detected", cell: (c) => h("a", { href: `#/conversations/${encodeURIComponent(c.trigger_id)}`, class: "conversation-link" }, ago(c.detected_at)) },
      { title: "Status", cell: (c) => badge(c.status) },
      { title: "Kind", cell: (c) => c.kind || "—" },
      { title: "Where", cell: (c) => c.repository ? webLink(githubThread(c), `${c.repository}#${c.number}`) : "—" },
      { title: "Requester", cell: (c) => c.requester || "—" },
      { title: "To ack.", num: true, cell: (c) => duration(c.time_to_acknowledgement_ms) },
      { title: "Agent", cell: (c) => c.conversation_url ? webLink(c.conversation_url, "open") : h("span", { class: "muted" }, "—") },
    ], items.map((c) => ({ item: c, attrs: { "data-trigger": c.trigger_id, "data-status": c.status } })), "No conversations yet: label an issue or mention the agent."));
}

function deliveriesPanel(items) {
  return h("section", { class: "panel", id: "deliveries" },
    h("h2", {}, "Recent deliveries", h("span", { class: "muted" }, `newest ${RECENT_DELIVERIES}, refreshed every ${REFRESH_MS / 1000} s`)),
    table([
      { title: "Received", cell: (d) => h("a", { href: `#/deliveries/${encodeURIComponent(d.delivery_id)}` }, ago(d.received_at)) },
      { title: "Event", cell: (d) => h("code", {}, d.event) },
      { title: "Action", cell: (d) => d.action || "—" },
      { title: "Repository", cell: (d) => d.repository || "—" },
      { title: "Sender", cell: (d) => d.sender || "—" },
      { title: "Outcome", cell: (d) => d.trigger_id
        ? h("a", { href: `#/conversations/${encodeURIComponent(d.trigger_id)}` }, badge(d.outcome))
        : badge(d.outcome) },
    ], items.map((d) => ({ item: d, attrs: { "data-delivery": d.delivery_id } })), "No deliveries yet: install the App on a repository."));
}

function readModelsPanel(models) {
  return panel("Read models", "lag behind the log head", table([
    { title: "Read model", cell: (m) => h("code", {}, m.name) },
    { title: "Checkpoint", num: true, cell: (m) => m.checkpoint },
    { title: "Lag", num: true, cell: (m) => m.lag },
  ], models.map((m) => ({ item: m })), "No read models."));
}

function sinksPanel(list) {
  return panel("Forwarding sinks", `log head ${list.head}`, table([
    { title: "Sink", cell: (k) => h("code", {}, k.name) },
    { title: "State", cell: (k) => badge(k.state) },
    { title: "Lag", num: true, cell: (k) => k.lag },
    { title: "Last error", cell: (k) => k.last_error || "—" },
  ], list.sinks.map((k) => ({ item: k })), "No sinks configured (HOOKWISE_FORWARD)."));
}

async function conversationView(id) {
  markNav("");
  const [c] = await Promise.all([api(`/conversations/${encodeURIComponent(id)}`), instanceStatus()]);
  const steps = [
    ["detected", c.detected_at], ["permission checked", c.permission_checked_at], ["reaction added", c.reacted_at],
    ["agent asked", c.requested_at], ["conversation started", c.started_at], ["“I'm on it” posted", c.acknowledged_at],
    ["summary posted", c.summary_posted_at], ["finished", c.finished_at], ["failed", c.failed_at], ["abandoned", c.abandoned_at],
  ].filter(([, t]) => t).sort((a, b) => Date.parse(a[1]) - Date.parse(b[1]));
  const facts = [
    ["Status", badge(c.status)],
    ["Kind", c.kind || "—"],
    ["Where", c.repository ? webLink(githubThread(c), `${c.repository}#${c.number}`) : "—"],
    ["Requester", c.requester || "—"],
    ["Agent conversation", c.conversation_url ? webLink(c.conversation_url, c.conversation_id || c.conversation_url) : "—"],
    ["Time to acknowledgement", duration(c.time_to_acknowledgement_ms)],
    ["Delivery", c.delivery_id ? h("a", { href: `#/deliveries/${encodeURIComponent(c.delivery_id)}` }, c.delivery_id) : "—"],
    ["Retries", c.retries],
    ["Reason", c.reason || "—"],
    ["Last error", c.last_error || "—"],
    ["Trigger id", h("code", {}, c.trigger_id)],
  ];
  return h("div", { id: "conversation", "data-status": c.status },
    h("p", {}, h("a", { href: "#/" }, "← Overview")),
    h("h1", {}, `Conversation on ${c.repository || "?"}#${c.number ?? "?"}`),
    h("div", { class: "grid" },
      h("div", { class: "span-8" }, panel("What it is", null,
        h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))),
      h("div", { class: "span-4" }, panel("Timeline", null,
        h("ol", { class: "timeline" }, steps.map(([label, t]) =>
          h("li", { class: /failed|abandoned/.test(label) ? "bad" : null }, h("strong", {}, label), h("br"), h("span", { class: "muted mono" }, t))))))));
}

async function deliveryView(id) {
  markNav("");
  const d = await api(`/deliveries/${encodeURIComponent(id)}`);
  const facts = [
    ["Event", h("code", {}, d.event)], ["Action", d.action || "—"], ["Repository", d.repository || "—"],
    ["Sender", d.sender ? `${d.sender}${d.sender_type ? ` (${d.sender_type})` : ""}` : "—"],
    ["Outcome", badge(d.outcome)], ["Reason", d.reason || "—"],
    ["Trigger", d.trigger_id ? h("a", { href: `#/conversations/${encodeURIComponent(d.trigger_id)}` }, d.trigger_id) : "—"],
    ["Received", h("span", { class: "mono" }, d.received_at)], ["Hook", d.hook_id], ["Verified with", `${d.secret} secret`],
    ["Log position", d.position],
  ];
  return h("div", { id: "delivery" },
    h("p", {}, h("a", { href: "#/" }, "← Overview")),
    h("h1", {}, `Delivery ${d.delivery_id}`),
    h("div", { class: "grid" },
      h("div", { class: "span-4" }, panel("What it is", null, h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))),
      h("div", { class: "span-8" }, panel("Payload", "as GitHub sent it", h("pre", { class: "payload" }, JSON.stringify(d.payload, null, 2))))));
}

const AUDIT_FILTERS = [
  ["kind", "Kind", "e.g. trigger_detected"],
  ["actor", "Actor", "a login"],
  ["repository", "Repository", "owner/name"],
  ["since", "Since", "2026-01-07T00:00:00Z"],
  ["until", "Until", "RFC 3339"],
];

async function auditView(params) {
  const filter = {};
  for (const [key] of AUDIT_FILTERS) if (params.get(key)) filter[key] = params.get(key);
  const fromStart = params.has("after");
  let items, next = null;
  if (fromStart) {
    const page = await api("/audit", { ...filter, after: params.get("after"), limit: 100 });
    items = page.items;
    next = page.next_cursor ?? null;
  } else {
    const status = await instanceStatus();
    items = await newest("/audit", filter, status.head, 100);
  }
  const form = h("form", { class: "filters", id: "audit-filters" },
    AUDIT_FILTERS.map(([key, label, placeholder]) => h("label", {}, label,
      h("input", { name: key, value: filter[key] || "", placeholder, list: key === "kind" ? "audit-kinds" : null }))),
    h("datalist", { id: "audit-kinds" }, ["delivery_accepted", "trigger_detected", "permission_checked", "permission_denied", "admin_action", "enrichment_abandoned"].map((k) => h("option", { value: k }))),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter"), h("a", { href: "#/audit", class: "clear" }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(form)) if (String(value).trim()) query.set(key, String(value).trim());
    location.hash = `#/audit${query.toString() ? `?${query}` : ""}`;
  });
  const base = new URLSearchParams(filter);
  const pager = h("div", { class: "pager" },
    fromStart ? h("a", { href: `#/audit${base.toString() ? `?${base}` : ""}` }, "Newest first") : h("a", { href: `#/audit?${new URLSearchParams({ ...filter, after: 0 })}` }, "From the beginning"),
    next !== null ? h("a", { href: `#/audit?${new URLSearchParams({ ...filter, after: next })}` }, "Next page →") : null);
  return h("div", { id: "audit" },
    panel("Audit log", fromStart ? "oldest first" : "newest 100 first", form,
      table([
        { title: "When", cell: (a) => when(a.occurred_at) },
        { title: "Kind", cell: (a) => h("code", {}, a.kind) },
        { title: "Actor", cell: (a) => a.actor || "—" },
        { title: "Target", cell: (a) => a.target || "—" },
        { title: "Repository", cell: (a) => a.repository || "—" },
        { title: "Detail", cell: (a) => a.detail || "—" },
      ], items.map((a) => ({ item: a, attrs: { "data-kind": a.kind } })), "Nothing in the audit log matches."),
      pager));
}

setUpTokenForm();
window.addEventListener("hashchange", render);
render();
