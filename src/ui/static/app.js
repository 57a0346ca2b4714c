// mlflow-secrets UI: progressive enhancement only. Every page works without
// this file. It never reads or stores anything (no cookies, no storage).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Copy buttons: shown only when this script runs.
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    var target = document.getElementById(b.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) { return; }
    b.hidden = false;
    b.addEventListener("click", function () {
      navigator.clipboard.writeText(target.textContent).then(function () {
        b.textContent = "Copied";
      }, function () {
        b.textContent = "Copy failed: select the text";
      });
    });
  });
  // Confirm dialogs on destructive buttons (the form also needs its checkbox).
  document.querySelectorAll("button[data-confirm]").forEach(function (b) {
    b.addEventListener("click", function (ev) {
      if (!window.confirm(b.getAttribute("data-confirm"))) { ev.preventDefault(); }
    });
  });
  // "Session ends soon": two minutes before the idle timeout.
  var left = parseInt(document.body.getAttribute("data-session-ends-in") || "0", 10);
  var notice = document.getElementById("idle-notice");
  if (left > 0 && notice) {
    window.setTimeout(function () { notice.hidden = false; }, Math.max(0, left - 120) * 1000);
  }
});
