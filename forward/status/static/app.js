// edgesink status page: live updates. The server sends an event "change"
// over Server-Sent Events when something happened; the page then fetches
// the server-rendered main part again. No timer runs here: the browser
// sleeps on the stream.
"use strict";
(function () {
  var main = document.getElementById("main");
  var dot = document.getElementById("live");
  if (!main || !window.EventSource) return;
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var open = {};
    main.querySelectorAll("details[open]").forEach(function (d) {
      var li = d.closest("[data-id]");
      if (li) open[li.getAttribute("data-id")] = true;
    });
    fetch("/live", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        main.innerHTML = html; // server-rendered by html/template: mail text is escaped there
        main.querySelectorAll("[data-id]").forEach(function (li) {
          if (open[li.getAttribute("data-id")]) {
            var d = li.querySelector("details");
            if (d) d.open = true;
          }
        });
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var es = new EventSource("/events");
  es.addEventListener("change", refresh);
  es.onopen = function () { if (dot) dot.className = "live on"; };
  es.onerror = function () { if (dot) dot.className = "live"; };
})();
