// r1's console: reads /api/events for what changes (loaded models, pulls) and calls the API like any
// client. No build step and no library: plain DOM calls, text set with textContent (never as HTML).
"use strict";

const KEY_ITEM = "r1.apiKey";
const $ = (selector) => document.querySelector(selector);
const state = { budget: 0, ps: [], known: new Set(), chatModels: new Set(), picked: false, pulls: new Map(),
                samples: new Map(), cancelled: new Set(), messages: [] };

// --- the API -------------------------------------------------------------------------------------

function headers(json) {
  const key = localStorage.getItem(KEY_ITEM);
  const result = json ? { "Content-Type": "application/json" } : {};
  if (key) result.Authorization = "Bearer " + key;
  return result;
}

async function call(method, path, body) {
  const response = await fetch(path, { method, headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  return response;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function errorText(response) {
  const text = await response.text();
  try { return JSON.parse(text).error || text; } catch { return text || response.statusText; }
}

// Lines of a streamed body as they come, for NDJSON (/api/chat, /api/pull) and server-sent events.
async function* lines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    const parts = buffered.split("\n");
    buffered = parts.pop();
    yield* parts;
  }
  if (buffered) yield buffered;
}

async function* ndjson(response) {
  for await (const line of lines(response)) {
    if (!line.trim()) continue;
    const event = JSON.parse(line);
    if (event.error) throw new Error(event.error);
    yield event;
  }
}

// --- formatting ----------------------------------------------------------------------------------

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${units[i]}`;
}

// Seconds as a person reads them: "42 s", "3:05", "1:02:03".
function duration(seconds) {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const pad = (n) => String(n).padStart(2, "0");
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

// A model's name that may wrap after a "/" or ":" (hf.co/org/ repo: tag), never inside a word.
function wrappable(name) {
  return name.split(/(?<=[/:])/).flatMap((part, i) => (i ? [document.createElement("wbr"), part] : [part]));
}

function countdown(expiresAt) {
  if (!expiresAt) return "";
  const seconds = Math.round((Date.parse(expiresAt) - Date.now()) / 1000);
  if (seconds > 365 * 86400) return "kept loaded";
  if (seconds <= 0) return "unloading";
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return `unloads in ${m}:${String(s).padStart(2, "0")}`;
}

function element(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

function button(text, label, onClick, className = "") {
  const node = element("button", { type: "button", textContent: text, className });
  node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

function say(selector, text) { $(selector).textContent = text; }

// --- memory: the budget split by loaded model ----------------------------------------------------

function showPs(ps) {
  const gone = state.ps.some((before) => !ps.models.some((m) => m.name === before.name));
  state.budget = ps.memory.budget;
  state.ps = ps.models;
  // A model unloaded by `r1 rm` elsewhere is gone from the store too: list the store again.
  if (gone) relist();
  pickLoaded();
  const bar = $("#memory-bar"), list = $("#loaded");
  bar.replaceChildren(); list.replaceChildren();
  ps.models.forEach((model, i) => {
    const colour = `var(--seg-${i % 5})`;
    const share = state.budget ? (100 * model.size) / state.budget : 0;
    const segment = element("div", { className: "segment", title: `${model.name}: ${bytes(model.size)}`,
                                     dataset: { model: model.name } });
    segment.style.width = `${share}%`;
    segment.style.background = colour;
    bar.append(segment);
    const swatch = element("span", { className: "swatch" });
    swatch.style.background = colour;
    const slots = model.slots === undefined ? "remote" : `slots ${model.slots_busy}/${model.slots} busy`;
    list.append(element("li", { dataset: { model: model.name } }, swatch,
      element("strong", {}, ...wrappable(model.name)),
      element("span", { textContent: `${bytes(model.size)} · ${model.state}` }),
      element("span", { className: "slots", textContent: slots }),
      // Its keep-alive counts down only once no request holds it.
      element("span", { className: "countdown muted",
                        dataset: { expires: model.state === "idle" || model.state === "stopping" ? model.expires_at || "" : "" } }),
      button("Unload", `unload ${model.name}`, () => unload(model.name), "danger")));
  });
  const waiting = ps.waiting ? ` · ${ps.waiting} waiting` : "";
  say("#memory-text", `${bytes(ps.memory.used)} of ${bytes(state.budget)} in use by ${ps.models.length} ` +
      `model${ps.models.length === 1 ? "" : "s"}${waiting}`);
  tick();
}

function tick() {
  for (const node of document.querySelectorAll(".countdown")) node.textContent = countdown(node.dataset.expires);
}

async function unload(name) {
  try {
    await call("POST", "/api/generate", { model: name, keep_alive: 0 });
  } catch (error) { say("#memory-text", `could not unload ${name}: ${error.message}`); }
}

async function load(name) {
  say("#memory-text", `loading ${name}…`);
  try {
    await call("POST", "/api/generate", { model: name });
  } catch (error) { say("#memory-text", `could not load ${name}: ${error.message}`); }
}

// --- the store -----------------------------------------------------------------------------------

// A model that only embeds (its capabilities lack "completion") has no place in the chat picker.
const chats = (model) => !model.capabilities || model.capabilities.includes("completion");

async function refreshModels() {
  const { models } = await (await call("GET", "/api/tags")).json();
  state.known = new Set(models.map((m) => m.name));
  const rows = models.map((m) => element("tr", { dataset: { model: m.name } },
    // The format under the name, not in columns of its own: the table fits a phone's width.
    element("td", { className: "name" }, element("span", { className: "model-name" }, ...wrappable(m.name)),
      element("span", { className: "facts", textContent: [m.details.format, m.details.quantization_level]
        .filter(Boolean).join(" · ") })),
    element("td", { textContent: bytes(m.size) }),
    element("td", { className: "actions" },
      button("Load", `load ${m.name}`, () => load(m.name), "quiet"),
      button("Delete", `delete ${m.name}`, () => remove(m.name), "danger"))));
  $("#models tbody").replaceChildren(...rows);
  const offered = models.filter(chats);
  state.chatModels = new Set(offered.map((m) => m.name));
  const select = $("#chat-model"), chosen = select.value;
  select.replaceChildren(...offered.map((m) => element("option", { value: m.name, textContent: m.name })));
  if (state.chatModels.has(chosen)) select.value = chosen;
  pickLoaded();
}

// Until the user picks a model, the chat picker follows the model used last (/api/ps lists it first).
function pickLoaded() {
  const select = $("#chat-model");
  if (state.picked && state.chatModels.has(select.value)) return;
  const loaded = state.ps.find((m) => state.chatModels.has(m.name));
  if (loaded) select.value = loaded.name;
}

// The table again, in the background: a failure is said where the store's messages go.
function relist() {
  refreshModels().catch((error) => say("#pull-status", `cannot list the models: ${error.message}`));
}

async function remove(name) {
  if (!confirm(`Delete ${name} from the store?`)) return;
  try {
    await call("DELETE", "/api/delete", { model: name });
  } catch (error) { say("#pull-status", `could not delete ${name}: ${error.message}`); }
  await refreshModels();
}

const pullItem = (name) => document.querySelector(`#pulls li[data-name="${CSS.escape(name)}"]`);

function showPull(pull) {
  let item = pullItem(pull.name);
  if (!item) {
    item = element("li", { dataset: { name: pull.name } }, element("strong", {}, ...wrappable(pull.name)),
      element("span", { className: "percent" }),
      button("Cancel", `cancel the pull of ${pull.name}`, () => cancelPull(pull.name), "danger"),
      element("progress", { max: 1, value: 0 }), element("span", { className: "muted pull-state" }));
    item.querySelector("progress").setAttribute("aria-label", `pulling ${pull.name}`);
    $("#pulls").append(item);
  }
  const done = pull.status === "success";
  const fraction = done ? 1 : pull.total ? pull.completed / pull.total : 0;
  item.querySelector("progress").value = fraction;
  item.querySelector(".percent").textContent = `${Math.floor(100 * fraction)}%`;
  item.querySelector(".pull-state").textContent = done ? "done" :
    `${pull.status}${pull.total ? ` · ${bytes(pull.completed)} of ${bytes(pull.total)}${pace(pull)}` : ""}`;
  item.querySelector("button").hidden = !state.pulls.has(pull.name);  // an ended pull has nothing to cancel
  item.dataset.done = done;
}

// Speed and time left, from the bytes of the pull's `pulls` events over the last few seconds.
const PACE_WINDOW_MS = 5000;

function pace({ name, completed, total }) {
  const now = performance.now();
  const kept = (state.samples.get(name) || []).filter((s) => now - s.at <= PACE_WINDOW_MS && s.completed <= completed);
  const samples = [...kept, { at: now, completed }];
  state.samples.set(name, samples);
  const seconds = (now - samples[0].at) / 1000, rate = (completed - samples[0].completed) / seconds;
  if (seconds < 1 || !(rate > 0)) return "";
  return ` · ${bytes(rate)}/s · ${duration((total - completed) / rate)} left`;
}

async function cancelPull(name) {
  state.cancelled.add(name);  // its last events, still coming, draw it no more
  try {
    await call("DELETE", "/api/pull", { model: name });
    pullItem(name)?.remove();
    say("#pull-status", `cancelled the pull of ${name}`);
  } catch (error) {
    state.cancelled.delete(name);
    say("#pull-status", `could not cancel the pull of ${name}: ${error.message}`);
  }
}

// Pulls under way, started here or by `r1 pull`; one that ends is done when its model is in the store.
async function showPulls({ pulls }) {
  const now = new Set(pulls.map((p) => p.name));
  const ended = [...state.pulls.values()].filter((p) => !now.has(p.name));
  state.pulls = new Map(pulls.map((p) => [p.name, p]));
  pulls.filter((p) => !state.cancelled.has(p.name)).forEach(showPull);
  if (!ended.length) return;
  await refreshModels();
  for (const pull of ended) {
    state.samples.delete(pull.name);
    if (state.cancelled.delete(pull.name)) continue;
    if (state.known.has(pull.name)) showPull({ ...pull, status: "success" });
    else showPull({ ...pull, status: "ended without the model (see the pull's messages)" });
  }
}

async function pull(event) {
  event.preventDefault();
  const name = $("#pull-name").value.trim();
  say("#pull-status", `pulling ${name}…`);
  try {
    let last = {};
    for await (last of ndjson(await call("POST", "/api/pull", { model: name, stream: true }))) {
      say("#pull-status", `${name}: ${last.status}`);
    }
    if (last.model) showPull({ name: last.model, status: "success", completed: 1, total: 1 });
    say("#pull-status", `${last.model || name}: ${last.status}`);
  } catch (error) { say("#pull-status", `could not pull ${name}: ${error.message}`); }
  await refreshModels();
}

// --- chat ----------------------------------------------------------------------------------------

async function chat(event) {
  event.preventDefault();
  const prompt = $("#chat-prompt").value.trim(), model = $("#chat-model").value;
  if (!prompt || !model) return;
  $("#chat-prompt").value = "";
  const answer = $("#answer-template").content.firstElementChild.cloneNode(true);
  answer.dataset.model = model;
  answer.querySelector(".question").textContent = `${model} ← ${prompt}`;
  $("#answers").prepend(answer);
  const content = answer.querySelector(".content"), thinking = answer.querySelector(".thinking");
  const max = parseInt($("#chat-max").value, 10);
  state.messages.push({ role: "user", content: prompt });
  const body = { model, messages: state.messages, stream: true, ...(max > 0 ? { options: { num_predict: max } } : {}) };
  $("#chat-send").disabled = true;
  try {
    let last = {};
    for await (last of ndjson(await call("POST", "/api/chat", body))) {
      const message = last.message || {};
      if (message.thinking) {
        thinking.hidden = false;
        thinking.querySelector(".thinking-text").textContent += message.thinking;
      }
      if (message.content) content.textContent += message.content;
    }
    state.messages.push({ role: "assistant", content: content.textContent });
    answer.querySelector(".stats").textContent = stats(last);
    answer.dataset.done = "true";
    refreshUsage();
  } catch (error) {
    state.messages.pop();
    answer.querySelector(".stats").textContent = `error: ${error.message}`;
  } finally { $("#chat-send").disabled = false; }
}

function stats(last) {
  const seconds = (last.eval_duration || 0) / 1e9;
  const rate = seconds ? (last.eval_count / seconds).toFixed(1) : "–";
  return `${last.prompt_eval_count ?? 0} prompt tokens · ${last.eval_count ?? 0} tokens · ${rate} tokens/s` +
    (last.done_reason ? ` · ${last.done_reason}` : "");
}

// --- usage: SVG charts from /api/usage -----------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// A bar chart: one bar per row, labelled below, its value above; the title of each bar says both.
function barChart(rows, label, value, unit) {
  const width = 600, height = 180, pad = 24, top = 16;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
                             "aria-label": rows.map((r) => `${label(r)}: ${value(r).toFixed(0)} ${unit}`).join(", ") });
  const most = Math.max(1, ...rows.map(value));
  const step = (width - 2 * pad) / Math.max(rows.length, 1);
  rows.forEach((row, i) => {
    const h = ((height - pad - top) * value(row)) / most, x = pad + i * step;
    const bar = svg("rect", { class: "datum", x: x + 2, y: height - pad - h, width: Math.max(step - 4, 1), height: h });
    bar.append(svg("title", {}, `${label(row)}: ${value(row).toFixed(1)} ${unit}`));
    chart.append(bar, svg("text", { x: x + step / 2, y: height - 8, "text-anchor": "middle" }, label(row)),
                 svg("text", { x: x + step / 2, y: height - pad - h - 4, "text-anchor": "middle" }, value(row).toFixed(0)));
  });
  return chart;
}

async function usage(by) {
  return (await (await call("GET", `/api/usage?by=${by}&since=30d`)).json()).usage;
}

async function refreshUsage() {
  try {
    const [days, models] = await Promise.all([usage("day"), usage("model")]);
    const tokens = (r) => r.prompt_tokens + r.output_tokens + (r.thinking_tokens || 0);
    $("#chart-days").replaceChildren(barChart(days, (r) => r.key.slice(5), tokens, "tokens"));
    // Requests without a model (listing, version) have no tokens/s to chart.
    $("#chart-models").replaceChildren(barChart(models.filter((r) => r.key), (r) => r.key, (r) => r.tokens_per_s || 0,
                                                "tokens/s"));
    say("#usage-note", days.length ? "" : "no requests in the last 30 days");
  } catch (error) {
    say("#usage-note", error.status === 404 ? "usage appears once the request log is on"
                                            : `usage unavailable: ${error.message}`);
  }
}

// --- live state: /api/events ---------------------------------------------------------------------

const HANDLERS = { ps: showPs, pulls: showPulls };

async function follow() {
  for (;;) {
    try {
      const response = await call("GET", "/api/events");
      say("#connection", "live");
      let name = "message", data = "";
      for await (const line of lines(response)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
        else if (line === "") {
          if (data && HANDLERS[name]) await HANDLERS[name](JSON.parse(data));
          name = "message"; data = "";
        }
      }
      say("#connection", "reconnecting…");
    } catch (error) {
      if (error.status === 401) askForKey();
      say("#connection", error.status === 401 ? "this daemon needs its API key: enter it above"
                                              : `disconnected: ${error.message}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function askForKey() {
  $("#key-box").hidden = false;
  $("#key-box").open = true;
}

function start() {
  $("#key").value = localStorage.getItem(KEY_ITEM) || "";
  $("#key-box").hidden = !$("#key").value;  // a saved key can be changed; without one, shown on a 401
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_ITEM, $("#key").value.trim());
    location.reload();
  });
  $("#pull-form").addEventListener("submit", pull);
  $("#chat-form").addEventListener("submit", chat);
  $("#chat-prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("#chat-form").requestSubmit(); }
  });
  $("#chat-clear").addEventListener("click", () => { state.messages = []; $("#answers").replaceChildren(); });
  $("#chat-model").addEventListener("change", () => { state.messages = []; state.picked = true; });
  // The store changes from terminals too (`r1 pull`, `r1 rm`): listed again when the page is looked at.
  window.addEventListener("focus", relist);
  setInterval(tick, 1000);
  relist();
  refreshUsage();
  follow();
}

start();
