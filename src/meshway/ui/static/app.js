// The dashboard's only script: live table bodies and blocks, and delete confirmations. Pages work without it.
"use strict";
(function () {
  const REFRESH_MS = 2000;

  function live(table) {
    const url = table.getAttribute("data-live");
    let busy = false;
    setInterval(async function () {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (!resp.ok) return;
        const doc = new DOMParser().parseFromString("<table>" + (await resp.text()) + "</table>", "text/html");
        const body = doc.querySelector("tbody[data-live-body]");
        const old = table.querySelector("tbody[data-live-body]");
        if (body && old) old.replaceWith(document.importNode(body, true));
      } catch (e) {
        // the node may be restarting: try again at the next tick
      } finally {
        busy = false;
      }
    }, REFRESH_MS);
  }

  // a block re-read whole (the mesh graph: an SVG and its table), same rules as the tables
  function liveHtml(block) {
    const url = block.getAttribute("data-live-html");
    let busy = false;
    setInterval(async function () {
      if (busy || document.hidden) return;
      busy = true;
      try {
        const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (resp.ok) block.innerHTML = await resp.text();
      } catch (e) {
        // the node may be restarting: try again at the next tick
      } finally {
        busy = false;
      }
    }, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-live]").forEach(live);
    document.querySelectorAll("[data-live-html]").forEach(liveHtml);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  });
})();
