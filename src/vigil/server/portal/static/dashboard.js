// The dashboard's charts, drawn by Chart.js (served from /static/vendor) from the page's JSON data island.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const island = document.getElementById("dashboard-data");
  if (!island || typeof Chart === "undefined") return;
  const d = JSON.parse(island.textContent);
  const colours = { High: "#d92d20", Medium: "#f79009", Low: "#2e90fa", Informational: "#98a2b3" };
  const palette = ["#12b76a", "#f04438", "#f79009", "#98a2b3", "#2e90fa", "#7a5af8"];
  Chart.defaults.animation = false;  // drawn at once: the page is read, not watched
  Chart.defaults.maintainAspectRatio = false;
  new Chart(document.getElementById("chart-alerts"), {
    type: "bar",
    data: {
      labels: d.days.map((day) => day.slice(5)),
      datasets: Object.keys(d.alerts_by_day).map((sev) => ({
        label: sev, data: d.alerts_by_day[sev], backgroundColor: colours[sev] || "#98a2b3",
      })),
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
  });
  const doughnut = (id, counts) => new Chart(document.getElementById(id), {
    type: "doughnut",
    data: { labels: Object.keys(counts), datasets: [{ data: Object.values(counts), backgroundColor: palette }] },
    options: { plugins: { legend: { position: "right" } } },
  });
  doughnut("chart-health", d.devices_by_health);
  if (document.getElementById("chart-sensors")) doughnut("chart-sensors", d.sensors_by_state);
});
