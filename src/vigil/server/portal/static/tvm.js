// The TVM dashboard's exposure trend, drawn by Chart.js (served from /static/vendor) from the page's JSON island.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const island = document.getElementById("tvm-data");
  const canvas = document.getElementById("chart-exposure");
  if (!island || !canvas || typeof Chart === "undefined") return;
  const d = JSON.parse(island.textContent);
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  new Chart(canvas, {
    type: "line",
    data: {
      labels: d.history.map((p) => p.date.slice(5)),
      datasets: [{ label: "Exposure score", data: d.history.map((p) => p.score), borderColor: "#f04438",
                   backgroundColor: "#f0443833", fill: true, tension: 0.2 }],
    },
    options: { scales: { y: { min: 0, max: 100 } } },
  });
});
