// The operations dashboard (gateway/ops.py): signs in through Keycloak (OIDC
// code flow with PKCE, the trader client's module /app/signin.js), then draws
// every panel that GET /api/v1/ops/dashboard returns, refreshed every 15 s.
// The PromQL is the server's; this page only draws.

import { createChart, LineSeries } from "/vendor/lightweight-charts.mjs";
import { signIn } from "/app/signin.js";

const $ = (selector) => document.querySelector(selector);
const COLORS = ["#4dabf7", "#69db7c", "#ffa94d", "#f783ac", "#b197fc", "#ffe066", "#63e6be",
                "#ff8787"];
const REFRESH_MS = 15000;

const { auth, signedInUser } = await signIn("/ops");

$("#sign-in").addEventListener("click", () => auth.signinRedirect());
$("#sign-in").disabled = false;   // disabled in the page until this handler exists
$("#sign-out").addEventListener("click", () => auth.signoutRedirect());

function status(text, problem = false) {
  $("#status").textContent = text;
  $("#status").classList.toggle("problem", problem);
}

// -- panels ------------------------------------------------------------------
const panels = new Map();  // name -> {chart, series: Map(label -> series), element}

function panelFor(spec) {
  let panel = panels.get(spec.name);
  if (panel) return panel;
  const element = document.createElement("article");
  element.className = "panel";
  element.dataset.panel = spec.name;
  element.innerHTML = `<h3></h3><div class="chart"></div><div class="legend"></div>`;
  element.querySelector("h3").textContent = `${spec.title} (${spec.unit})`;
  $("#panels").append(element);
  const chart = createChart(element.querySelector(".chart"), {
    autoSize: true,
    layout: { background: { color: "#161c23" }, textColor: "#9aa5b1" },
    grid: { vertLines: { color: "#1f2933" }, horzLines: { color: "#1f2933" } },
    timeScale: { timeVisible: true, secondsVisible: false },
    rightPriceScale: { borderVisible: false },
  });
  panel = { chart, series: new Map(), element };
  panels.set(spec.name, panel);
  return panel;
}

function draw(spec) {
  const panel = panelFor(spec);
  const seen = new Set();
  spec.series.forEach((line, index) => {
    seen.add(line.label);
    let series = panel.series.get(line.label);
    if (!series) {
      series = panel.chart.addSeries(LineSeries, {
        color: COLORS[panel.series.size % COLORS.length], lineWidth: 2,
        priceLineVisible: false, lastValueVisible: false,
      });
      panel.series.set(line.label, series);
    }
    series.setData(line.points.map(([time, value]) => ({ time, value })));
  });
  for (const [label, series] of panel.series) {
    if (!seen.has(label)) {
      panel.chart.removeSeries(series);
      panel.series.delete(label);
    }
  }
  const legend = panel.element.querySelector(".legend");
  legend.textContent = "";
  [...panel.series.keys()].forEach((label, index) => {
    const item = document.createElement("span");
    item.style.color = COLORS[index % COLORS.length];
    item.textContent = `■ ${label}  `;
    legend.append(item);
  });
  if (!spec.series.length) legend.textContent = "no data in this window";
  panel.chart.timeScale().fitContent();
}

function showAlerts(alerts) {
  const body = $("#alerts tbody");
  body.textContent = "";
  for (const alert of alerts) {
    const row = document.createElement("tr");
    row.className = alert.severity || "";
    for (const text of [alert.name, alert.severity, alert.summary,
                        alert.since ? new Date(alert.since).toLocaleTimeString() : ""]) {
      const cell = document.createElement("td");
      cell.textContent = text ?? "";
      row.append(cell);
    }
    body.append(row);
  }
  $("#no-alerts").hidden = alerts.length > 0;
}

async function refresh() {
  const user = await auth.getUser();
  if (!user || user.expired) return;
  const minutes = $("#window").value;
  const response = await fetch(`/api/v1/ops/dashboard?minutes=${minutes}`,
                               { headers: { Authorization: `Bearer ${user.access_token}` } });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    status(body?.error?.message || `refused (${response.status})`, true);
    return;
  }
  const data = await response.json();
  data.panels.forEach(draw);
  showAlerts(data.alerts);
  const problems = data.problems.length ? ` — unavailable: ${data.problems.join(", ")}` : "";
  status(`updated ${new Date().toLocaleTimeString()}${problems}`, data.problems.length > 0);
}

$("#window").addEventListener("change", refresh);

const user = await signedInUser();
if (user) {
  $("#who").textContent = user.profile.preferred_username || "";
  $("#sign-in").hidden = true;
  $("#sign-out").hidden = false;
  status("loading");
  await refresh();
  setInterval(() => refresh().catch((e) => status(String(e), true)), REFRESH_MS);
}
