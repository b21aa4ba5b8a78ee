// The recommend panel: recommendations for a user, with interest scores and personalised copy.
// Loaded after i18n.js and app.js: uses their helpers ($, api, getJSON, postJSON, element, t, label, addLabels,
// TAB_OPENERS). Its words go through addLabels({en: {…}, zh: {…}}).
"use strict";

addLabels({
  en: {
    "recommend.placeholder": "A few books or topics you like, one per line (e.g. Dracula, Frankenstein, horror)",
    "recommend.go": "Recommend",
    "recommend.working": "Ranking…",
    "recommend.empty": "Enter at least one title or keyword.",
    "recommend.none": "Nothing to recommend.",
    "recommend.weights": "Score = {interest} × interest + {popularity} × popularity + {recency} × recency (weights fitted on the dev split)",
    "recommend.item": "{title} — {authors} ({year})",
    "recommend.score": "score {score} · click probability {interest}",
    "recommend.parts": "interest {interest} · popularity {popularity} · recency {recency}",
    "recommend.passed": "fact check passed ({source})",
    "recommend.failed": "fact check failed ({source})",
    "recommend.blocked": "copy withheld by the guard",
    "recommend.source.template": "template",
    "recommend.source.writer": "writer",
    "recommend.problems": "the writer's copy was not used: {problems}",
  },
  zh: {
    "recommend.placeholder": "输入几本喜欢的书或主题，每行一个（如 Dracula、Frankenstein、horror）",
    "recommend.go": "推荐",
    "recommend.working": "排序中…",
    "recommend.empty": "请至少输入一个书名或关键词。",
    "recommend.none": "没有可推荐的内容。",
    "recommend.weights": "得分 = {interest} × 兴趣 + {popularity} × 热度 + {recency} × 新近度（权重在验证集上拟合）",
    "recommend.item": "{title} — {authors}（{year}）",
    "recommend.score": "得分 {score} · 点击概率 {interest}",
    "recommend.parts": "兴趣 {interest} · 热度 {popularity} · 新近度 {recency}",
    "recommend.passed": "事实核查通过（{source}）",
    "recommend.failed": "事实核查未通过（{source}）",
    "recommend.blocked": "文案被安全防护拦截",
    "recommend.source.template": "模板",
    "recommend.source.writer": "写作模型",
    "recommend.problems": "写作模型的文案未采用：{problems}",
  },
});

const signed = (value) => (value >= 0 ? "+" : "") + value.toFixed(2);

function recommendItem(entry) {
  const book = entry.item;
  const item = element("li", "recommend-item");
  item.append(labelled("strong", "recommend.item", { title: book.title, authors: book.authors, year: book.year ?? "?" }));
  item.append(labelled("div", "recommend.score", { score: entry.score.toFixed(3), interest: percent(entry.interest) },
    "recommend-score"));
  const parts = Object.fromEntries(Object.entries(entry.parts).map(([name, value]) => [name, signed(value)]));
  item.append(labelled("div", "recommend.parts", parts, "recommend-parts"));
  if (entry.copy) {
    const copy = entry.copy;
    item.append(element("p", "recommend-copy", copy.text));
    const source = { key: `recommend.source.${copy.source}` };
    const check = copy.blocked ? labelled("div", "recommend.blocked", {}, "recommend-check failed")
      : labelled("div", copy.passed ? "recommend.passed" : "recommend.failed", { source },
        `recommend-check ${copy.passed ? "passed" : "failed"}`);
    item.append(check);
    if (copy.problems.length) {
      item.append(labelled("div", "recommend.problems", { problems: copy.problems.join("; ") }, "recommend-problems"));
    }
  }
  return item;
}

async function recommend(event) {
  event.preventDefault();
  const history = $("#recommend-input").value.split(/[\n;]/).map((entry) => entry.trim()).filter(Boolean);
  const list = $("#recommend-items");
  if (!history.length) { setError(t("recommend.empty")); return; }
  setStatus("recommend.working");
  try {
    const body = await postJSON("/v1/recommend", { model: $("#recommend-model").value || null, history, copies: 3 });
    label($("#recommend-weights"), "recommend.weights", Object.fromEntries(
      Object.entries(body.weights).map(([name, value]) => [name, value.toFixed(2)])));
    list.replaceChildren(...body.items.map(recommendItem));
    if (!body.items.length) list.replaceChildren(labelled("li", "recommend.none"));
    setStatus("status.done");
  } catch (error) {
    setError(error.message);
  }
}

$("#recommend-form").addEventListener("submit", recommend);
