// Paydesk admin: the copy buttons next to short ids put the whole id on the clipboard.
"use strict";
document.addEventListener("click", function (event) {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  event.preventDefault();  // inside a row's link: copy, do not open the row
  event.stopPropagation();
  const text = button.dataset.copy;
  const done = function () {
    button.classList.add("pd-copied");
    setTimeout(function () { button.classList.remove("pd-copied"); }, 1200);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
    return;
  }
  const area = document.createElement("textarea");  // plain-HTTP fallback
  area.value = text;
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  try { document.execCommand("copy"); done(); } finally { document.body.removeChild(area); }
});
