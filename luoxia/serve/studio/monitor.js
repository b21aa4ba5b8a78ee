// The monitor panel: the financial sentiment monitor's dashboard: topic time series and alerts.
// Loaded after i18n.js and app.js: uses their helpers ($, api, getJSON, postJSON, element, t, label, addLabels,
// TAB_OPENERS). Its words go through addLabels({en: {…}, zh: {…}}).
"use strict";

addLabels({
  en: {
    "monitor.app": "Monitor", "monitor.topic": "Topic", "monitor.refresh": "Refresh",
    "monitor.volume": "Items per window", "monitor.share": "Negative share per window", "monitor.alerts": "Alerts",
    "monitor.window": "Window", "monitor.negative": "Negative", "monitor.baseline": "Baseline",
    "monitor.score": "Score", "monitor.items": "Top items", "monitor.none": "No alerts yet.",
    "monitor.series.volume": "volume", "monitor.series.negative": "negative", "monitor.series.share": "negative share",
    "monitor.status": "{items} items, {alerts} alerts, newest {newest}; {window}-minute windows, {detector} detector; sentiment: {source}",
    "monitor.empty": "No items yet: send some with luoxia apps monitor run or POST /v1/monitor/items.",
  },
  zh: {
    "monitor.app": "监测", "monitor.topic": "主题", "monitor.refresh": "刷新",
    "monitor.volume": "每个窗口的条数", "monitor.share": "每个窗口的负面占比", "monitor.alerts": "预警",
    "monitor.window": "窗口", "monitor.negative": "负面", "monitor.baseline": "基线",
    "monitor.score": "得分", "monitor.items": "代表条目", "monitor.none": "暂无预警。",
    "monitor.series.volume": "条数", "monitor.series.negative": "负面条数", "monitor.series.share": "负面占比",
    "monitor.status": "共 {items} 条，{alerts} 条预警，最新 {newest}；窗口 {window} 分钟，{detector} 检测；情感来源：{source}",
    "monitor.empty": "还没有数据：用 luoxia apps monitor run 或 POST /v1/monitor/items 发送。",
  },
});

const monitorQuery = (extra = {}) => {
  const params = new URLSearchParams(extra);
  const app = $("#monitor-app").value;
  if (app) params.set("app", app);
  return params.toString();
};

function monitorTopics(topics) {
  const select = $("#monitor-topic");
  const chosen = select.value || "all";
  select.replaceChildren(...topics.map((topic) =>
    new Option(`${topic.topic} (${topic.volume})`, topic.topic)));
  select.value = topics.some((topic) => topic.topic === chosen) ? chosen : "all";
}

function monitorPlots(data) {
  for (const id of ["#monitor-volume", "#monitor-share"]) {
    const canvas = $(id);
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  }
  const at = (key) => data.map((row, i) => [i, row[key]]);
  plot($("#monitor-volume"), [
    { points: at("volume"), color: "#2b6cb0", label: t("monitor.series.volume") },
    { points: at("negative"), color: "#c8553d", label: t("monitor.series.negative") }]);
  plot($("#monitor-share"), [{ points: at("negative_share"), color: "#c8553d", label: t("monitor.series.share") }]);
}

function monitorAlertRow(alert) {
  const row = document.createElement("tr");
  const items = element("td", "monitor-items");
  for (const item of alert.top_items) items.append(element("div", "", item.text));
  row.append(element("td", "", alert.window_start.replace("T", " ").slice(0, 16)), element("td", "", alert.topic),
    element("td", "", `${alert.negative}/${alert.volume} (${percent(alert.negative_share)})`),
    element("td", "", alert.baseline.toFixed(2)), element("td", "", alert.score.toFixed(2)), items);
  return row;
}

async function loadMonitor() {
  if (!$("#monitor-app").value) return;
  try {
    const status = await getJSON(`/v1/monitor/status?${monitorQuery()}`);
    if (!status.items) {
      label($("#monitor-status"), "monitor.empty");
      return;
    }
    label($("#monitor-status"), "monitor.status", { items: status.items, alerts: status.alerts, newest: status.newest,
      window: status.window_minutes, detector: status.detector, source: status.sentiment_source });
    const topic = $("#monitor-topic").value || "all";
    const series = await getJSON(`/v1/monitor/series?${monitorQuery({ topic })}`);
    monitorTopics(series.topics);
    monitorPlots(series.data);
    const alerts = (await getJSON(`/v1/monitor/alerts?${monitorQuery({ limit: 50 })}`)).data;
    const body = $("#monitor-alerts tbody");
    body.replaceChildren(...alerts.map(monitorAlertRow));
    if (!alerts.length) {
      const empty = document.createElement("tr");
      const cell = labelled("td", "monitor.none");
      cell.colSpan = 6;
      empty.append(cell);
      body.append(empty);
    }
  } catch (error) { setError(error.message); }
}

$("#monitor-refresh").addEventListener("click", loadMonitor);
$("#monitor-topic").addEventListener("change", loadMonitor);
$("#monitor-app").addEventListener("change", () => { $("#monitor-topic").replaceChildren(); loadMonitor(); });
TAB_OPENERS.monitor = loadMonitor;
