// The summarize panel: summarise a text: lead, TextRank or a fine-tuned model, with a target length.
// Loaded after i18n.js and app.js: uses their helpers ($, api, getJSON, postJSON, element, t, label, addLabels,
// TAB_OPENERS). Its words go through addLabels({en: {…}, zh: {…}}).
"use strict";

addLabels({
  en: {
    "summarize.placeholder": "Paste a text (English or Chinese) to summarise…",
    "summarize.method": "Method",
    "summarize.textrank": "TextRank (central sentences)",
    "summarize.lead": "Lead (first sentences)",
    "summarize.model": "Model (its own words)",
    "summarize.k": "Sentences",
    "summarize.length": "Target length",
    "summarize.length.placeholder": "words (characters for Chinese)",
    "summarize.send": "Summarise",
    "summarize.empty": "Paste a text first.",
    "summarize.info": "{length} words/characters (asked: {target}); kept sentences are highlighted.",
    "summarize.any": "any",
  },
  zh: {
    "summarize.placeholder": "粘贴要摘要的文本（中文或英文）……",
    "summarize.method": "方法",
    "summarize.textrank": "TextRank（核心句）",
    "summarize.lead": "前几句",
    "summarize.model": "模型（生成式）",
    "summarize.k": "句数",
    "summarize.length": "目标长度",
    "summarize.length.placeholder": "英文按词，中文按字",
    "summarize.send": "生成摘要",
    "summarize.empty": "请先粘贴文本。",
    "summarize.info": "长度 {length}（要求：{target}）；保留的句子已高亮。",
    "summarize.any": "不限",
  },
});

// The served text models (/health's "models"), for method "model".
async function loadSummarizeModels() {
  try {
    fill($("#summarize-model"), (await getJSON("/health")).models);
  } catch (error) {
    setError(error.message);
  }
}

// The input's sentences, the kept ones in <mark>: where the summary came from.
function showSentences(summary) {
  const box = $("#summarize-sentences");
  const kept = new Set(summary.indices);
  box.replaceChildren(...summary.sentences.map((sentence, i) => {
    const span = element(kept.has(i) ? "mark" : "span", kept.has(i) ? "kept" : "", sentence);
    span.dataset.index = String(i);
    return span;
  }));
}

async function summarizeText(event) {
  event.preventDefault();
  const text = $("#summarize-input").value;
  if (!text.trim()) { setError(t("summarize.empty")); return; }
  const method = $("#summarize-method").value;
  const body = { text, method, k: Number($("#summarize-k").value) || 1 };
  const length = Number($("#summarize-length").value);
  if (length > 0) body.length = length;
  if (method === "model") body.model = $("#summarize-model").value || null;
  const button = $("#summarize-send");
  button.disabled = true;
  try {
    const summary = await postJSON("/v1/summarize", body);
    $("#summarize-output").textContent = summary.text;
    label($("#summarize-info"), "summarize.info",
      { length: summary.length, target: summary.target_length ?? { key: "summarize.any" } });
    showSentences(summary);
  } catch (error) {
    setError(error.message);
  } finally {
    button.disabled = false;
  }
}

$("#summarize-form").addEventListener("submit", summarizeText);
TAB_OPENERS.summarize = loadSummarizeModels;
