// hotspotd's portal: keeps the time and data left on the status page current, from the
// RFC 8908 API (GET /api/captive) every second. The page works without it; it only refreshes
// the numbers, and reloads the page when the session ends or is paused elsewhere.
"use strict";
(function () {
  var card = document.querySelector("[data-state]");
  if (!card || card.getAttribute("data-state") !== "connected") {
    return;
  }
  var seconds = document.getElementById("seconds-left");
  var bytes = document.getElementById("bytes-left");

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }
  // As the page writes them: H:MM:SS, and MB or GB of 10^6 and 10^9 bytes with two decimals.
  function clock(total) {
    var h = Math.floor(total / 3600);
    var m = Math.floor((total % 3600) / 60);
    return h + ":" + pad(m) + ":" + pad(total % 60);
  }
  function amount(n) {
    if (n >= 1e9) {
      return (n / 1e9).toFixed(2) + " GB";
    }
    return (n / 1e6).toFixed(2) + " MB";
  }
  function show(element, value, format, attribute) {
    if (element && typeof value === "number") {
      element.setAttribute(attribute, String(value));
      element.textContent = format(value);
    }
  }
  function update() {
    fetch("/api/captive", { headers: { Accept: "application/captive+json" }, cache: "no-store" })
      .then(function (response) { return response.json(); })
      .then(function (captive) {
        if (captive.captive) {
          window.location.reload();
          return;
        }
        show(seconds, captive["seconds-remaining"], clock, "data-seconds");
        show(bytes, captive["bytes-remaining"], amount, "data-bytes");
        window.setTimeout(update, 1000);
      })
      .catch(function () { window.setTimeout(update, 2000); });
  }
  window.setTimeout(update, 1000);
})();
