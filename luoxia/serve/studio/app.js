// Luoxia Studio: plain JavaScript over the server's own API, no external scripts (works offline).
"use strict";

const $ = (selector) => document.querySelector(selector);
const conversation = { id: crypto.randomUUID(), messages: [] };

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

function headers() {
  const key = $("#api-key").value.trim();
  const result = { "Content-Type": "application/json", "X-Conversation-Id": conversation.id };
  if (key) result.Authorization = `Bearer ${key}`;
  return result;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (!response.ok) {
    let message = `${response.status}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();
const postJSON = async (path, body) => (await api(path, { method: "POST", body: JSON.stringify(body) })).json();

// Tabs.
document.querySelectorAll("nav button").forEach((button) => button.addEventListener("click", () => {
  document.querySelectorAll("nav button, .tab").forEach((el) => el.classList.remove("active"));
  button.classList.add("active");
  $(`#${button.dataset.tab}`).classList.add("active");
  if (button.dataset.tab === "review") loadReview();
  if (button.dataset.tab === "runs") loadRuns();
}));

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
    setStatus(`models: ${health.models.join(", ") || "none"}; image models: ${health.image_models.join(", ") || "none"}`);
  } catch (error) { setStatus(error.message, true); }
}

function fill(select, names) {
  select.replaceChildren(...names.map((name) => new Option(name, name)));
}

// Chat with streaming.
function addMessage(role, text) {
  const element = document.createElement("div");
  element.className = `message ${role}`;
  element.textContent = text;
  $("#messages").append(element);
  $("#messages").scrollTop = $("#messages").scrollHeight;
  return element;
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
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  $("#send").disabled = true;
  const body = {
    model: $("#chat-model").value, messages: conversation.messages, stream: true,
    temperature: number("#temperature"), top_p: number("#top-p"), max_tokens: number("#max-tokens"), seed: number("#seed"),
  };
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
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = `finish: ${finish}`;
    reply.append(meta);
    setStatus("done");
  } catch (error) {
    reply.textContent += ` [${error.message}]`;
    setStatus(error.message, true);
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

$("#chat-form").addEventListener("submit", sendChat);
$("#chat-input").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("#chat-form").requestSubmit(); }
});
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
    setStatus(`drew ${reply.data.length} image(s)`);
  } catch (error) { setStatus(error.message, true); } finally { $("#draw").disabled = false; }
});

// Check text.
async function check(path, body) {
  try {
    $("#check-result").textContent = JSON.stringify(await postJSON(path, body), null, 2);
  } catch (error) { $("#check-result").textContent = error.message; }
}
$("#check-moderate").addEventListener("click", () => check("/v1/moderations", { input: $("#check-input").value }));
$("#check-redact").addEventListener("click", () => check("/v1/redact", { text: $("#check-input").value }));
$("#check-watermark").addEventListener("click",
  () => check("/v1/watermark/detect", { text: $("#check-input").value, model: $("#chat-model").value }));

// Review queue.
async function loadReview() {
  try {
    const { data } = await getJSON(`/v1/review?status=${$("#review-status").value}`);
    $("#review-table tbody").replaceChildren(...data.map(reviewRow));
  } catch (error) { setStatus(error.message, true); }
}

function reviewRow(event) {
  const row = document.createElement("tr");
  for (const value of [event.id, event.created, event.stage, event.action, event.categories.join(", "), event.excerpt,
    event.status]) {
    const cell = document.createElement("td");
    cell.textContent = value;
    row.append(cell);
  }
  const actions = document.createElement("td");
  if (event.status === "pending") {
    for (const verdict of ["approved", "rejected"]) {
      const button = document.createElement("button");
      button.textContent = verdict === "approved" ? "Approve" : "Reject";
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
    if (!data.length) $("#run-list").textContent = "No runs found.";
  } catch (error) { setStatus(error.message, true); }
}

function runCard(run) {
  const card = document.createElement("div");
  card.className = "run";
  const title = document.createElement("h3");
  title.textContent = `${run.name} (${run.task}) — ${run.train.length} train points, ${run.eval.length} evaluations`;
  const canvas = document.createElement("canvas");
  canvas.width = 900;
  canvas.height = 180;
  card.append(title, canvas);
  plot(canvas, [{ points: run.train, color: "#c8553d", label: "train loss" },
    { points: run.eval, color: "#2b6cb0", label: "val loss" }]);
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
