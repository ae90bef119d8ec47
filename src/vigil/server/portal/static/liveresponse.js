// The live-response console: while a command is pending, fetch the session's log again so its output appears.
"use strict";
(() => {
  const refresh = async () => {
    const log = document.getElementById("lr-log");
    if (!log || !log.dataset.pending) return;
    const resp = await fetch(`/liveresponse/${log.dataset.session}/log`, { headers: { Accept: "text/html" } });
    if (resp.ok) log.outerHTML = await resp.text();
    setTimeout(refresh, 1000);
  };
  document.addEventListener("DOMContentLoaded", () => setTimeout(refresh, 1000));
})();
