// Progressive enhancement only: refresh the personal QR code every 30 s (a page reload does the same).
(function () {
  var box = document.getElementById("personal-qr");
  if (!box || !window.fetch) return;
  setInterval(function () {
    fetch(box.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (svg) { if (svg) box.innerHTML = svg; });
  }, 30000);
})();
