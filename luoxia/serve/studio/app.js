// Luoxia Studio: plain JavaScript over the server's own API, no external scripts (works offline).
// Text from users and models only ever enters the page as textContent (never as HTML); labels come from i18n.js.
"use strict";

const $ = (selector) => document.querySelector(selector);
const conversation = { id: crypto.randomUUID(), messages: [] };

function setStatus(key, args) {
  const status = $("#status");
  label(status, key, args);
  status.className = "";
}

function setError(message) {
  const status = $("#status");
  delete status.dataset.i18n;
  status.textContent = message;
  status.className = "error";
}

function headers(conversationId = conversation.id) {
  const key = $("#api-key").value.trim();
  const result = { "Content-Type": "application/json", "X-Conversation-Id": conversationId };
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function api(path, options = {}, conversationId = undefined) {
  const response = await fetch(path, { ...options, headers: { ...headers(conversationId), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();
const postJSON = async (path, body, conversationId) =>
  (await api(path, { method: "POST", body: JSON.stringify(body) }, conversationId)).json();

// An element with a class and text (textContent: user and model text is never parsed as HTML). Text given
// here is data (a message, a source, the JSON), marked data-content: labels are made by `labelled`.
function element(tag, className, text) {
  const made = document.createElement(tag);
  if (className) made.className = className;
  if (text !== undefined) {
    made.textContent = text;
    made.dataset.content = "";
  }
  return made;
}

const percent = (value) => `${Math.round(Math.max(0, Math.min(1, value)) * 1000) / 10}%`;

// Tabs. A panel that loads data when shown registers its loader here (TAB_OPENERS.monitor = …).
const TAB_OPENERS = {};
function showTab(name) {
  document.querySelectorAll("nav button, .tab").forEach((el) => el.classList.remove("active"));
  $(`nav button[data-tab="${name}"]`).classList.add("active");
  $(`#${name}`).classList.add("active");
  if (name === "review") loadReview();
  if (name === "runs") loadRuns();
  if (TAB_OPENERS[name]) TAB_OPENERS[name]();
}
document.querySelectorAll("nav button").forEach((button) => button.addEventListener("click",
  () => showTab(button.dataset.tab)));

// Language: remembered in this browser (i18n.js picks the first one from the browser's language).
$("#lang").value = language;
$("#lang").addEventListener("change", () => setLanguage($("#lang").value));
applyLanguage();

// The API key lives in this browser only.
$("#api-key").value = localStorage.getItem("luoxia-key") || "";
$("#api-key").addEventListener("change", () => { localStorage.setItem("luoxia-key", $("#api-key").value); loadModels(); });

async function loadModels() {
  try {
    const health = await getJSON("/health");
    fill($("#chat-model"), health.models);
    fill($("#image-model"), health.image_models);
    const maxTokens = $("#max-tokens");
    maxTokens.max = health.max_tokens_limit;
    maxTokens.value = Math.min(Number(maxTokens.value), health.max_tokens_limit);
    const none = { key: "status.none" };
    const names = (list) => (list || []).join(", ") || none;
    setStatus("status.models", { models: names(health.models), images: names(health.image_models), apps: names(health.apps) });
  } catch (error) { setError(error.message); }
  await loadApps();
}

// Application panels show only when the server offers an application of their kind (/v1/models: "app": kind).
async function loadApps() {
  let cards = [];
  try { cards = (await getJSON("/v1/models")).data; } catch (_) { /* no key yet: no application panels */ }
  document.querySelectorAll("section[data-app]").forEach((panel) => {
    const names = cards.filter((card) => card.app === panel.dataset.app).map((card) => card.id);
    fill(panel.querySelector("select[data-app-select]"), names);
    const button = $(`nav button[data-tab="${panel.id}"]`);
    button.hidden = names.length === 0;
    if (button.hidden && panel.classList.contains("active")) showTab("chat");
  });
}

function fill(select, names) {
  select.replaceChildren(...names.map((name) => new Option(name, name)));
}

// Chat with streaming.
function addMessage(box, role, text) {
  const message = element("div", `message ${role}`, text);
  box.append(message);
  box.scrollTop = box.scrollHeight;
  return message;
}

function number(selector) {
  const value = $(selector).value;
  return value === "" ? undefined : Number(value);
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("#chat-input").value.trim();
  if (!text) return;
  $("#chat-input").value = "";
  conversation.messages.push({ role: "user", content: text });
  addMessage($("#messages"), "user", text);
  const reply = addMessage($("#messages"), "assistant", "");
  const body = {
    model: $("#chat-model").value, messages: conversation.messages, stream: true,
    temperature: number("#temperature"), top_p: number("#top-p"), max_tokens: number("#max-tokens"), seed: number("#seed"),
  };
  $("#send").disabled = true;
  try {
    const response = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify(body) });
    let finish = null;
    for await (const data of serverSentEvents(response)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      const choice = chunk.choices[0];
      if (choice.delta.content) reply.textContent += choice.delta.content;
      if (choice.finish_reason) finish = choice.finish_reason;
      $("#messages").scrollTop = $("#messages").scrollHeight;
    }
    conversation.messages.push({ role: "assistant", content: reply.textContent });
    reply.append(labelled("span", "chat.finish", { reason: finish }, "meta"));
    setStatus("status.done");
  } catch (error) {
    reply.textContent += ` [${error.message}]`;
    setError(error.message);
  } finally {
    $("#send").disabled = false;
  }
}

async function* serverSentEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

function enterSends(input, form) {
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
  });
}
$("#chat-form").addEventListener("submit", sendChat);
enterSends($("#chat-input"), $("#chat-form"));
$("#new-chat").addEventListener("click", () => {
  conversation.id = crypto.randomUUID();
  conversation.messages = [];
  $("#messages").replaceChildren();
});

// Images.
$("#image-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#draw").disabled = true;
  try {
    const reply = await postJSON("/v1/images/generations", {
      model: $("#image-model").value, prompt: $("#image-prompt").value, n: number("#image-n"), seed: number("#image-seed"),
    });
    for (const item of reply.data) {
      const image = new Image();
      image.src = `data:image/png;base64,${item.b64_json}`;
      image.alt = $("#image-prompt").value;
      $("#gallery").prepend(image);
    }
    setStatus("images.drew", { n: reply.data.length });
  } catch (error) { setError(error.message); } finally { $("#draw").disabled = false; }
});

// Check text: each check fills its card with a picture of the reply, the reply's JSON behind a toggle.
const CHECKS = {
  pii: { path: "/v1/redact", body: (text) => ({ text }), title: "pii.title", render: renderRedaction },
  moderation: { path: "/v1/moderations", body: (text) => ({ input: text, explain: true }), title: "moderation.title",
    render: renderModeration },
  wm: { path: "/v1/watermark/detect", body: (text) => ({ text, model: $("#chat-model").value || undefined }),
    title: "watermark.title", render: renderWatermark },
};

async function check(name) {
  const { path, body, title, render } = CHECKS[name];
  const card = $(`#check-${name}`);
  const text = $("#check-input").value;
  card.hidden = false;
  card.replaceChildren(labelled("h3", title), labelled("p", "check.checking", undefined, "note"));
  try {
    const reply = await postJSON(path, body(text));
    const raw = element("details", "raw");
    raw.append(labelled("summary", "check.raw"), element("pre", "", JSON.stringify(reply, null, 2)));
    card.replaceChildren(labelled("h3", title), render(reply, text), raw);
  } catch (error) {
    card.replaceChildren(labelled("h3", title), element("p", "error", error.message));
  }
}
$("#check-redact").addEventListener("click", () => check("pii"));
$("#check-moderate").addEventListener("click", () => check("moderation"));
$("#check-watermark").addEventListener("click", () => check("wm"));
$("#check-all").addEventListener("click", () => Promise.all(Object.keys(CHECKS).map(check)));

// The text with each span marked and its type beside it. Offsets are Unicode code points (the server's
// Python strings), so the text is cut as an array of code points, not UTF-16 units.
function markedText(text, spans, className, typeLabel) {
  const points = Array.from(text);
  const out = element("div", "marked", "");
  let at = 0;
  for (const span of [...spans].sort((a, b) => a.start - b.start || b.end - a.end)) {
    if (span.start < at) continue; // overlaps one already marked
    out.append(points.slice(at, span.start).join(""));
    const mark = element("mark", className, points.slice(span.start, span.end).join(""));
    mark.dataset.type = span.type;
    out.append(mark, labelled("sup", typeLabel(span), undefined, `${className}-type`));
    at = span.end;
  }
  out.append(points.slice(at).join(""));
  return out;
}

function renderRedaction(reply, text) {
  const view = element("div");
  if (!reply.spans.length) {
    view.append(labelled("p", "pii.none", undefined, "verdict ok"));
    return view;
  }
  view.append(markedText(text, reply.spans, "pii", (span) => `pii.${span.type}`));
  view.append(labelled("p", "pii.found", { n: reply.spans.length }, "note"), element("div", "marked redacted", reply.text));
  return view;
}

function renderModeration(reply) {
  const [result] = reply.results;
  const thresholds = result.category_thresholds || {};
  const view = element("div");
  const flagged = Object.keys(result.categories).filter((c) => result.categories[c]);
  if (flagged.length) {
    const verdict = element("p", "verdict bad");
    verdict.append(labelled("span", "moderation.flagged"));
    flagged.forEach((c, i) => verdict.append(...(i ? [labelled("span", "list.separator")] : []),
      labelled("span", `category.${c}`)));
    view.append(verdict);
  } else view.append(labelled("p", "moderation.clean", undefined, "verdict ok"));
  const bars = element("div", "bars");
  for (const [category, score] of Object.entries(result.category_scores)) {
    const threshold = thresholds[category] ?? 0.5;
    const row = element("div", `bar-row${result.categories[category] ? " flagged" : ""}`);
    row.dataset.category = category;
    const track = element("div", "track");
    const fill = element("div", "fill");
    fill.style.width = percent(score);
    const mark = element("div", "threshold");
    mark.style.left = percent(threshold);
    track.append(fill, mark);
    row.append(labelled("span", `category.${category}`, undefined, "name"), track,
      labelled("span", "moderation.score", { score: score.toFixed(2), threshold: threshold.toFixed(2) }, "score"));
    bars.append(row);
  }
  view.append(bars);
  if (result.evidence && result.evidence.length) {
    const list = element("ul", "evidence");
    for (const found of result.evidence) {
      const item = element("li");
      const how = found.layer === "rule" ? labelled("span", "moderation.layer.rule", { source: found.source })
        : labelled("span", "moderation.layer.head");
      item.append(labelled("b", `category.${found.category}`), " · ", how, " · ", element("q", "", found.text));
      list.append(item);
    }
    view.append(labelled("h4", "moderation.evidence"), list);
  }
  return view;
}

function renderWatermark(reply) {
  const view = element("div");
  const verdict = reply.watermarked === true ? "bad" : reply.watermarked === false ? "ok" : "unknown";
  view.append(labelled("p", `watermark.${reply.verdict}`, undefined, `verdict wm-${verdict}`));
  // A scale from below 0 to past the threshold and the z-score: the z-score's dot, the threshold's line.
  const low = Math.min(-2, Math.floor(reply.z) - 1);
  const high = Math.max(reply.z_threshold + 2, Math.ceil(reply.z) + 1);
  const at = (value) => percent((value - low) / (high - low));
  const scale = element("div", "z-scale");
  const zero = element("div", "z-zero");
  zero.style.left = at(0);
  const line = element("div", "threshold");
  line.style.left = at(reply.z_threshold);
  const tick = labelled("span", "watermark.threshold", undefined, "z-label");
  tick.style.left = at(reply.z_threshold);
  const dot = element("div", `z-dot wm-${verdict}`);
  dot.style.left = at(reply.z);
  scale.append(zero, line, tick, dot);
  view.append(scale, labelled("p", "watermark.z", { z: reply.z.toFixed(2), threshold: reply.z_threshold }, "z-value"),
    labelled("p", "watermark.detail", { scored: reply.tokens_scored, tokens: reply.tokens,
      green: reply.green_fraction.toFixed(3), p: reply.p_value, key: reply.key_id }, "note"));
  return view;
}

// Applications (support, knowledge answers): one conversation per panel, the whole of it sent each turn;
// the reply's `app` record is drawn under the answer.
// Every chat application's panel is built here from its section's id and placeholder key.
function appPanelMarkup(panel) {
  const id = panel.id;
  panel.innerHTML = `
      <div class="controls">
        <label><span data-i18n="app.model">Assistant</span> <select id="${id}-model" data-content data-app-select></select></label>
        <button id="${id}-new" type="button" data-i18n="app.new">New conversation</button>
      </div>
      <div id="${id}-messages" class="messages" aria-live="polite" data-content></div>
      <form id="${id}-form" class="chat-form">
        <textarea id="${id}-input" rows="2" data-i18n-placeholder="${panel.dataset.placeholder}"></textarea>
        <button id="${id}-send" type="submit" data-i18n="app.send">Send</button>
      </form>`;
  applyLanguage(panel);
}

function appPanel(panel) {
  appPanelMarkup(panel);
  const state = { id: crypto.randomUUID(), messages: [] };
  const [box, input, form] = ["messages", "input", "form"].map((part) => $(`#${panel.id}-${part}`));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    state.messages.push({ role: "user", content: text });
    addMessage(box, "user", text);
    const reply = addMessage(box, "assistant", "");
    form.querySelector("button").disabled = true;
    try {
      const body = { model: panel.querySelector("select").value, messages: state.messages };
      const completion = await postJSON("/v1/chat/completions", body, state.id);
      const answer = completion.choices[0].message.content;
      state.messages.push({ role: "assistant", content: answer });
      reply.append(element("div", "answer", answer), appDetails(completion.app || {}));
      box.scrollTop = box.scrollHeight;
    } catch (error) {
      reply.textContent = `[${error.message}]`;
      setError(error.message);
    } finally { form.querySelector("button").disabled = false; }
  });
  enterSends(input, form);
  $(`#${panel.id}-new`).addEventListener("click", () => {
    state.id = crypto.randomUUID();
    state.messages = [];
    box.replaceChildren();
  });
}
document.querySelectorAll(".app-panel").forEach(appPanel);

function appDetails(app) {
  const details = element("div", "app-details");
  const facts = element("div", "facts");
  if (app.intent) {
    const confidence = app.confidence === null || app.confidence === undefined ? "?" : app.confidence.toFixed(2);
    facts.append(labelled("span", "app.intent", { intent: app.intent, confidence }, "chip intent"));
  }
  if (app.sentiment) facts.append(labelled("span", "app.sentiment", { sentiment: app.sentiment }, "chip sentiment"));
  for (const [name, value] of Object.entries(app.slots || {})) {
    facts.append(labelled("span", "app.slot", { name, value }, "chip slot"));
  }
  if ((app.missing_slots || []).length) {
    facts.append(labelled("span", "app.missing", { slots: app.missing_slots.join(", ") }, "chip missing"));
  }
  if (facts.childElementCount) details.append(facts);
  if (app.handoff) {
    const handoff = element("div", "handoff");
    handoff.append(labelled("span", "app.handoff", { reason: app.reason || "?" }));
    if (app.review_id !== null && app.review_id !== undefined) {
      handoff.append(" · ", labelled("span", "app.handoff.review", { id: app.review_id }, "review-id"));
    }
    details.append(handoff);
  }
  if (app.safety && app.safety.blocked) {
    const where = ["input", "output"].includes(app.safety.blocked) ? { key: `app.blocked.${app.safety.blocked}` }
      : app.safety.blocked;
    details.append(labelled("div", "app.blocked", { where }, "blocked"));
  }
  if ((app.warnings || []).length) {
    const list = element("ul", "warnings");
    app.warnings.forEach((warning) => list.append(element("li", "", warning)));
    details.append(labelled("h4", "app.warnings"), list);
  }
  if ((app.citations || []).length) {
    const list = element("ol", "citations");
    for (const citation of app.citations) {
      const item = element("li", "citation");
      item.append(element("span", "fact", citation.fact), " ",
        labelled("span", "app.citation", { source: citation.source, document: citation.document_id }, "cite"));
      list.append(item);
    }
    details.append(labelled("h4", "app.citations"), list);
  }
  if ((app.sources || []).length) {
    const list = element("ol", "sources");
    for (const source of app.sources) {
      const item = element("li", "source");
      item.append(labelled("div", "app.source", { id: source.id, score: Number(source.score).toFixed(3) }, "source-id"),
        element("div", "source-text", source.text));
      const meta = Object.entries(source.meta || {});
      if (meta.length) {
        item.append(element("div", "source-meta",
          meta.map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`).join(" · ")));
      }
      list.append(item);
    }
    details.append(labelled("h4", "app.sources"), list);
  }
  return details;
}

// Review queue.
async function loadReview() {
  try {
    const { data } = await getJSON(`/v1/review?status=${$("#review-status").value}`);
    $("#review-table tbody").replaceChildren(...data.map(reviewRow));
  } catch (error) { setError(error.message); }
}

function reviewRow(event) {
  const row = document.createElement("tr");
  for (const value of [event.id, event.created, event.stage, event.action, event.categories.join(", "), event.excerpt,
    event.status]) {
    row.append(element("td", "", value));
  }
  const actions = document.createElement("td");
  if (event.status === "pending") {
    for (const verdict of ["approved", "rejected"]) {
      const button = labelled("button", verdict === "approved" ? "review.approve" : "review.reject");
      button.addEventListener("click", async () => {
        await postJSON(`/v1/review/${event.id}`, { status: verdict });
        loadReview();
      });
      actions.append(button, " ");
    }
  }
  row.append(actions);
  return row;
}
$("#review-refresh").addEventListener("click", loadReview);
$("#review-status").addEventListener("change", loadReview);

// Runs: loss curves drawn on a canvas.
async function loadRuns() {
  try {
    const { data } = await getJSON("/v1/runs");
    $("#run-list").replaceChildren(...data.map(runCard));
    if (!data.length) $("#run-list").replaceChildren(labelled("p", "runs.none"));
  } catch (error) { setError(error.message); }
}

function runCard(run) {
  const card = element("div", "run");
  const title = labelled("h3", "runs.title",
    { name: run.name, task: run.task, train: run.train.length, eval: run.eval.length });
  const canvas = document.createElement("canvas");
  canvas.width = 900;
  canvas.height = 180;
  card.append(title, canvas);
  plot(canvas, [{ points: run.train, color: "#c8553d", label: t("runs.train") },
    { points: run.eval, color: "#2b6cb0", label: t("runs.val") }]);
  return card;
}

function plot(canvas, series) {
  const context = canvas.getContext("2d");
  const all = series.flatMap((s) => s.points);
  if (!all.length) return;
  const [xs, ys] = [all.map((p) => p[0]), all.map((p) => p[1])];
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs) || 1, Math.min(...ys), Math.max(...ys)];
  const px = (x) => 40 + ((x - x0) / ((x1 - x0) || 1)) * (canvas.width - 50);
  const py = (y) => canvas.height - 20 - ((y - y0) / ((y1 - y0) || 1)) * (canvas.height - 30);
  context.font = "11px sans-serif";
  context.fillStyle = "#7a6a58";
  context.fillText(y1.toFixed(3), 2, 12);
  context.fillText(y0.toFixed(3), 2, canvas.height - 22);
  series.forEach((s, i) => {
    context.strokeStyle = s.color;
    context.beginPath();
    s.points.forEach(([x, y], j) => (j ? context.lineTo(px(x), py(y)) : context.moveTo(px(x), py(y))));
    context.stroke();
    context.fillStyle = s.color;
    context.fillText(s.label, 60 + i * 90, canvas.height - 4);
  });
}
$("#runs-refresh").addEventListener("click", loadRuns);

loadModels();
