// The write panel: the writing assistant: genre, keywords, draft/continue/rewrite/polish, with a diff view.
// Loaded after i18n.js and app.js: uses their helpers ($, api, getJSON, postJSON, element, t, label, addLabels,
// TAB_OPENERS). Its words go through addLabels({en: {…}, zh: {…}}).
"use strict";

addLabels({
  en: {
    "write.genre": "Genre",
    "write.genre.wuyan": "五言绝句 (5-character quatrain)",
    "write.genre.qiyan": "七言绝句 (7-character quatrain)",
    "write.genre.news": "News release",
    "write.genre.ad": "Ad copy",
    "write.genre.prose": "English prose",
    "write.mode": "Mode",
    "write.mode.draft": "Draft",
    "write.mode.continue": "Continue my draft",
    "write.mode.rewrite": "Rewrite my draft",
    "write.mode.polish": "Polish my draft",
    "write.constraint": "Keywords by",
    "write.constraint.boost": "Boost until used",
    "write.constraint.beam": "Beam search",
    "write.constraint.none": "Not enforced",
    "write.n": "Candidates",
    "write.max_tokens.placeholder": "the genre's",
    "write.title": "Title or topic",
    "write.title.placeholder": "e.g. 春夜, Spring night",
    "write.keywords": "Keywords",
    "write.keywords.placeholder": "春、月 (separate with 、 or commas)",
    "write.draft.placeholder": "Your draft (for continue, rewrite and polish)",
    "write.go": "Write",
    "write.writing": "Writing…",
    "write.done": "{count} candidates, best first",
    "write.rank": "#{rank}",
    "write.scores": "score {total}: keywords {coverage}, form {form}, likelihood {likelihood}",
    "write.keyword.found": "✓ {word}",
    "write.keyword.missing": "✗ {word}",
    "write.form.ok": "form ✓",
    "write.form.off": "form ✗",
    "write.form.lines": "{lines} lines: {chars} characters (want {want})",
    "write.form.length": "length {length} (want {low}–{high})",
    "write.diff": "Changes against your draft",
    "write.diff.none": "No changes: your draft passes every check.",
    "write.guard": "Guard: {what}",
    "write.use": "Use as draft",
  },
  zh: {
    "write.genre": "体裁",
    "write.genre.wuyan": "五言绝句",
    "write.genre.qiyan": "七言绝句",
    "write.genre.news": "新闻稿",
    "write.genre.ad": "广告文案",
    "write.genre.prose": "英文散文",
    "write.mode": "方式",
    "write.mode.draft": "新写",
    "write.mode.continue": "续写草稿",
    "write.mode.rewrite": "改写草稿",
    "write.mode.polish": "润色草稿",
    "write.constraint": "关键词保证",
    "write.constraint.boost": "加权直到用上",
    "write.constraint.beam": "束搜索",
    "write.constraint.none": "不强制",
    "write.n": "候选数",
    "write.max_tokens.placeholder": "按体裁",
    "write.title": "题目或主题",
    "write.title.placeholder": "例如：春夜",
    "write.keywords": "关键词",
    "write.keywords.placeholder": "春、月（用顿号或逗号分隔）",
    "write.draft.placeholder": "你的草稿（续写、改写、润色时用）",
    "write.go": "写作",
    "write.writing": "正在写…",
    "write.done": "{count} 个候选，最好的在前",
    "write.rank": "第 {rank} 名",
    "write.scores": "总分 {total}：关键词 {coverage}，格律 {form}，似然 {likelihood}",
    "write.keyword.found": "✓ {word}",
    "write.keyword.missing": "✗ {word}",
    "write.form.ok": "格律 ✓",
    "write.form.off": "格律 ✗",
    "write.form.lines": "{lines} 句：各 {chars} 字（应为 {want}）",
    "write.form.length": "长度 {length}（应为 {low}–{high}）",
    "write.diff": "与草稿相比的改动",
    "write.diff.none": "没有改动：草稿通过了所有检查。",
    "write.guard": "安全检查：{what}",
    "write.use": "用作草稿",
  },
});

// Keywords as typed: separated by 、，, ; or spaces.
function writeKeywords() {
  return $("#write-keywords").value.split(/[、，,;；\s]+/).map((word) => word.trim()).filter(Boolean);
}

function writeBody() {
  const body = {
    model: $("#write-model").value || undefined,
    genre: $("#write-genre").value,
    mode: $("#write-mode").value,
    constraint: $("#write-constraint").value,
    keywords: writeKeywords(),
    title: $("#write-title").value.trim(),
    draft: $("#write-draft").value,
    n: number("#write-n"),
  };
  const seed = number("#write-seed");
  if (seed !== undefined) body.seed = seed;
  const maxTokens = number("#write-max-tokens");
  if (maxTokens !== undefined) body.max_new_tokens = maxTokens;
  return body;
}

// The diff as the text with deletions struck through and insertions marked (all as textContent).
function writeDiff(ops) {
  const box = element("div", "write-diff");
  const changed = ops.some((op) => op.op !== "equal");
  box.append(labelled("h4", changed ? "write.diff" : "write.diff.none"));
  const text = element("pre", "write-diff-text");
  for (const op of ops) {
    if (op.op === "equal") text.append(document.createTextNode(op.a));
    if (op.a && op.op !== "equal") text.append(element("del", "", op.a));
    if (op.b && op.op !== "equal") text.append(element("ins", "", op.b));
  }
  if (changed) box.append(text);
  return box;
}

function writeForm(form) {
  if ("length" in form) {
    return labelled("span", "write.form.length", { length: form.length, low: form.want[0], high: form.want[1] });
  }
  return labelled("span", "write.form.lines", { lines: form.lines, chars: form.chars_per_line.join("/") || "0",
    want: `${form.want[0]} × ${form.want[1]}` });
}

function writeCandidate(candidate, rank) {
  const card = element("article", "card write-candidate");
  card.append(labelled("h3", "write.rank", { rank }));
  card.append(element("pre", "write-text", candidate.text));
  const checks = element("p", "write-checks");
  for (const [word, found] of Object.entries(candidate.keywords)) {
    checks.append(labelled("span", found ? "write.keyword.found" : "write.keyword.missing", { word },
      found ? "write-ok" : "write-missing"), document.createTextNode(" "));
  }
  checks.append(labelled("span", candidate.form.ok ? "write.form.ok" : "write.form.off",
    undefined, candidate.form.ok ? "write-ok" : "write-missing"), document.createTextNode(" "), writeForm(candidate.form));
  card.append(checks);
  card.append(labelled("p", "write.scores", candidate.scores, "write-scores"));
  if (candidate.diff) card.append(writeDiff(candidate.diff));
  const edits = (candidate.safety && candidate.safety.edits) || [];
  if (edits.length) card.append(labelled("p", "write.guard", { what: JSON.stringify(edits) }, "note"));
  const use = labelled("button", "write.use");
  use.type = "button";
  use.addEventListener("click", () => { $("#write-draft").value = candidate.text; });
  card.append(use);
  return card;
}

async function sendWrite(event) {
  event.preventDefault();
  const results = $("#write-results");
  const button = $("#write-go");
  button.disabled = true;
  results.replaceChildren(labelled("p", "write.writing", undefined, "note"));
  try {
    const reply = await postJSON("/v1/write", writeBody());
    results.replaceChildren(labelled("p", "write.done", { count: reply.candidates.length }, "note"),
      ...reply.candidates.map((candidate, i) => writeCandidate(candidate, i + 1)));
  } catch (error) {
    results.replaceChildren();
    setError(error.message);
  } finally {
    button.disabled = false;
  }
}

$("#write-form").addEventListener("submit", sendWrite);

// The text models are the server's (/health), as in the chat tab.
TAB_OPENERS.write = async () => {
  try {
    const health = await getJSON("/health");
    const select = $("#write-model");
    const chosen = select.value;
    fill(select, health.models);
    if (health.models.includes(chosen)) select.value = chosen;
  } catch (error) { setError(error.message); }
};

// This panel's styles live with it (style.css is shared by every panel).
document.head.append(Object.assign(document.createElement("style"), { textContent: `
#write-form, #write-results { width: 100%; }
#write-draft { width: 100%; box-sizing: border-box; }
.write-text, .write-diff-text { white-space: pre-wrap; font-size: 1.05rem; margin: .3rem 0; }
.write-ok { color: #1a7f37; }
.write-missing { color: #b42318; }
.write-scores { font-size: .85rem; color: #555; }
.write-diff del { background: #fde2e1; color: #b42318; }
.write-diff ins { background: #dafbe1; color: #1a7f37; text-decoration: none; }
` }));
