// The studio's words in English and Chinese: every label on the page goes through `t` (HTML elements name
// their key in data-i18n, data-i18n-placeholder or data-i18n-title), so a language switch changes them all.
"use strict";

const LABELS = {
  en: {
    "document.title": "Luoxia Studio 落霞",
    "title": "Luoxia Studio",
    "language": "Language",
    "tab.chat": "Chat",
    "tab.images": "Images",
    "tab.check": "Check text",
    "tab.support": "Support",
    "tab.ask": "Knowledge",
    "tab.monitor": "Monitor",
    "tab.recommend": "Recommend",
    "tab.summarize": "Summarise",
    "tab.write": "Write",
    "tab.review": "Review queue",
    "tab.runs": "Runs",
    "api_key": "API key",
    "api_key.placeholder": "lx-… (empty in open mode)",
    "chat.model": "Model",
    "chat.temperature": "Temperature",
    "chat.top_p": "Top-p",
    "chat.max_tokens": "Max tokens",
    "chat.seed": "Seed",
    "chat.seed.placeholder": "random",
    "chat.new": "New chat",
    "chat.placeholder": "Say something… (Enter sends, Shift+Enter for a new line)",
    "chat.send": "Send",
    "chat.finish": "finish: {reason}",
    "images.prompt": "Prompt",
    "images.prompt.placeholder": "7, seven, digit 7",
    "images.n": "How many",
    "images.draw": "Draw",
    "images.note": "Images come back watermarked, with a signed provenance record in their PNG metadata.",
    "images.drew": "drew {n} image(s)",
    "check.placeholder": "Paste text to moderate, redact or test for the watermark",
    "check.all": "Check all",
    "check.moderate": "Moderate",
    "check.redact": "Find personal data",
    "check.watermark": "Detect watermark",
    "check.raw": "Raw JSON",
    "check.checking": "checking…",
    "pii.title": "Personal data",
    "pii.none": "No personal data found.",
    "pii.found": "{n} span(s) of personal data, masked as:",
    "pii.EMAIL": "email",
    "pii.PHONE": "phone",
    "pii.CN_ID": "ID card",
    "pii.BANK_CARD": "bank card",
    "pii.IP": "IP address",
    "pii.URL_CREDENTIALS": "password in a URL",
    "pii.SECRET": "secret",
    "pii.PERSON": "person",
    "pii.ADDRESS": "address",
    "pii.ORG": "organisation",
    "moderation.title": "Moderation",
    "moderation.flagged": "Flagged: ",
    "list.separator": ", ",
    "moderation.clean": "Not flagged: every category scores below its threshold.",
    "moderation.score": "{score} (threshold {threshold})",
    "moderation.evidence": "Evidence",
    "moderation.layer.rule": "rule {source}",
    "moderation.layer.head": "classifier",
    "category.sexual": "sexual",
    "category.sexual/minors": "sexual/minors",
    "category.hate": "hate",
    "category.hate/threatening": "hate/threatening",
    "category.harassment": "harassment",
    "category.self-harm": "self-harm",
    "category.violence": "violence",
    "category.violence/graphic": "violence/graphic",
    "category.illicit": "illicit",
    "watermark.title": "Watermark",
    "watermark.z": "z = {z} against the threshold {threshold}",
    "watermark.detail": "{scored} token pairs scored of {tokens} tokens; green fraction {green}; p = {p}; key {key}",
    "watermark.watermarked": "watermarked",
    "watermark.not watermarked": "not watermarked",
    "watermark.too short to decide": "too short to decide",
    "watermark.threshold": "threshold",
    "app.model": "Assistant",
    "app.new": "New conversation",
    "app.send": "Send",
    "support.placeholder": "Ask the support assistant… (Enter sends)",
    "ask.placeholder": "Ask a question about the knowledge base… (Enter sends)",
    "app.intent": "Intent: {intent} ({confidence})",
    "app.sentiment": "Sentiment: {sentiment}",
    "app.slot": "{name}: {value}",
    "app.missing": "Asked for: {slots}",
    "app.handoff": "Handed over to a person: {reason}",
    "app.handoff.review": "review queue item #{id}",
    "app.sources": "Sources",
    "app.source": "{id} · score {score}",
    "app.citations": "Citations",
    "app.citation": "{source} · document {document}",
    "app.warnings": "Warnings",
    "app.blocked": "The guard blocked this turn ({where}).",
    "app.blocked.input": "the question",
    "app.blocked.output": "the answer",
    "review.status": "Status",
    "review.pending": "pending",
    "review.approved": "approved",
    "review.rejected": "rejected",
    "review.all": "all",
    "review.refresh": "Refresh",
    "review.id": "id",
    "review.time": "time",
    "review.stage": "stage",
    "review.action": "action",
    "review.categories": "categories",
    "review.excerpt": "excerpt",
    "review.approve": "Approve",
    "review.reject": "Reject",
    "runs.refresh": "Refresh",
    "runs.none": "No runs found.",
    "runs.title": "{name} ({task}) — {train} train points, {eval} evaluations",
    "runs.train": "train loss",
    "runs.val": "val loss",
    "status.models": "models: {models}; image models: {images}; applications: {apps}",
    "status.none": "none",
    "status.done": "done",
  },
  zh: {
    "document.title": "落霞工作室",
    "title": "落霞工作室",
    "language": "语言",
    "tab.chat": "对话",
    "tab.images": "图像",
    "tab.check": "文本检查",
    "tab.support": "客服助手",
    "tab.ask": "知识问答",
    "tab.monitor": "舆情监测",
    "tab.recommend": "推荐",
    "tab.summarize": "摘要",
    "tab.write": "写作",
    "tab.review": "审核队列",
    "tab.runs": "训练记录",
    "api_key": "API 密钥",
    "api_key.placeholder": "lx-…（开放模式下留空）",
    "chat.model": "模型",
    "chat.temperature": "温度",
    "chat.top_p": "核采样 Top-p",
    "chat.max_tokens": "最大词元数",
    "chat.seed": "随机种子",
    "chat.seed.placeholder": "随机",
    "chat.new": "新对话",
    "chat.placeholder": "说点什么……（回车发送，Shift+回车换行）",
    "chat.send": "发送",
    "chat.finish": "结束原因：{reason}",
    "images.prompt": "提示词",
    "images.prompt.placeholder": "7、七、数字 7",
    "images.n": "数量",
    "images.draw": "生成",
    "images.note": "生成的图像带有水印，PNG 元数据中附有签名的来源记录。",
    "images.drew": "已生成 {n} 张图像",
    "check.placeholder": "粘贴文本，进行内容审核、个人信息脱敏或水印检测",
    "check.all": "全部检查",
    "check.moderate": "内容审核",
    "check.redact": "查找个人信息",
    "check.watermark": "检测水印",
    "check.raw": "原始 JSON",
    "check.checking": "检查中……",
    "pii.title": "个人信息",
    "pii.none": "未发现个人信息。",
    "pii.found": "发现 {n} 处个人信息，脱敏后为：",
    "pii.EMAIL": "邮箱",
    "pii.PHONE": "电话",
    "pii.CN_ID": "身份证号",
    "pii.BANK_CARD": "银行卡号",
    "pii.IP": "IP 地址",
    "pii.URL_CREDENTIALS": "网址中的密码",
    "pii.SECRET": "密钥",
    "pii.PERSON": "人名",
    "pii.ADDRESS": "地址",
    "pii.ORG": "机构",
    "moderation.title": "内容审核",
    "moderation.flagged": "已标记：",
    "list.separator": "、",
    "moderation.clean": "未标记：所有类别的分数都低于阈值。",
    "moderation.score": "{score}（阈值 {threshold}）",
    "moderation.evidence": "依据",
    "moderation.layer.rule": "规则 {source}",
    "moderation.layer.head": "分类器",
    "category.sexual": "色情",
    "category.sexual/minors": "涉及未成年人的色情",
    "category.hate": "仇恨",
    "category.hate/threatening": "仇恨威胁",
    "category.harassment": "骚扰",
    "category.self-harm": "自我伤害",
    "category.violence": "暴力",
    "category.violence/graphic": "血腥暴力",
    "category.illicit": "违法",
    "watermark.title": "水印",
    "watermark.z": "z 分数 {z}，阈值 {threshold}",
    "watermark.detail": "共 {tokens} 个词元，计分 {scored} 对；绿色比例 {green}；p 值 {p}；密钥 {key}",
    "watermark.watermarked": "有水印",
    "watermark.not watermarked": "无水印",
    "watermark.too short to decide": "文本太短，无法判断",
    "watermark.threshold": "阈值",
    "app.model": "助手",
    "app.new": "新会话",
    "app.send": "发送",
    "support.placeholder": "向客服助手提问……（回车发送）",
    "ask.placeholder": "就知识库提一个问题……（回车发送）",
    "app.intent": "意图：{intent}（{confidence}）",
    "app.sentiment": "情绪：{sentiment}",
    "app.slot": "{name}：{value}",
    "app.missing": "需要补充：{slots}",
    "app.handoff": "已转交人工：{reason}",
    "app.handoff.review": "审核队列第 {id} 项",
    "app.sources": "来源",
    "app.source": "{id} · 得分 {score}",
    "app.citations": "引用",
    "app.citation": "{source} · 文档 {document}",
    "app.warnings": "警告",
    "app.blocked": "安全防护拦截了本轮对话（{where}）。",
    "app.blocked.input": "问题",
    "app.blocked.output": "回答",
    "review.status": "状态",
    "review.pending": "待审核",
    "review.approved": "已通过",
    "review.rejected": "已驳回",
    "review.all": "全部",
    "review.refresh": "刷新",
    "review.id": "编号",
    "review.time": "时间",
    "review.stage": "阶段",
    "review.action": "处理",
    "review.categories": "类别",
    "review.excerpt": "摘录",
    "review.approve": "通过",
    "review.reject": "驳回",
    "runs.refresh": "刷新",
    "runs.none": "没有找到训练记录。",
    "runs.title": "{name}（{task}）— {train} 个训练点，{eval} 次评估",
    "runs.train": "训练损失",
    "runs.val": "验证损失",
    "status.models": "模型：{models}；图像模型：{images}；应用：{apps}",
    "status.none": "无",
    "status.done": "完成",
  },
};
const LANGUAGES = Object.keys(LABELS);
const LANGUAGE_KEY = "luoxia-lang";

// The remembered choice, else the browser's language (zh-CN, zh-TW, zh → Chinese), else English.
function initialLanguage() {
  const saved = localStorage.getItem(LANGUAGE_KEY);
  if (LANGUAGES.includes(saved)) return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}
let language = initialLanguage();

// The label `key` in the current language with {name} replaced by args.name (English when a word is missing);
// an argument { key: "…" } is itself a label.
function t(key, args = {}) {
  const template = LABELS[language][key] ?? LABELS.en[key] ?? key;
  const value = (arg) => (arg !== null && typeof arg === "object" ? t(arg.key) : String(arg));
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in args ? value(args[name]) : whole));
}

// Give `element` the label `key` now and after every language switch.
function label(element, key, args) {
  element.dataset.i18n = key;
  if (args === undefined) delete element.dataset.i18nArgs; else element.dataset.i18nArgs = JSON.stringify(args);
  element.textContent = t(key, args);
  return element;
}

// A new element carrying a label.
function labelled(tag, key, args, className) {
  const element = label(document.createElement(tag), key, args);
  if (className) element.className = className;
  return element;
}

function applyLanguage(root = document) {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  document.title = t("document.title");
  root.querySelectorAll("[data-i18n]").forEach((element) => {
    const args = element.dataset.i18nArgs ? JSON.parse(element.dataset.i18nArgs) : undefined;
    element.textContent = t(element.dataset.i18n, args);
  });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((element) => {
    element.placeholder = t(element.dataset.i18nPlaceholder);
  });
  root.querySelectorAll("[data-i18n-label]").forEach((element) => {
    element.setAttribute("aria-label", t(element.dataset.i18nLabel));
  });
}

// A panel's own words (studio/<panel>.js calls this once): merged into LABELS, the page relabelled.
function addLabels(words) {
  for (const [lang, entries] of Object.entries(words)) Object.assign(LABELS[lang], entries);
  applyLanguage();
}

function setLanguage(choice) {
  language = LANGUAGES.includes(choice) ? choice : "en";
  localStorage.setItem(LANGUAGE_KEY, language);
  applyLanguage();
}
