
(function () {
  "use strict";
  function fallbackCopy(text) {
    var ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.top = "-1000px";
    ta.style.opacity = "0";
    document.body.appendChild(ta);
    ta.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(ta);
    return ok;
  }
  function show(btn, ok) {
    btn.textContent = ok ? "Copied" : "Select and copy";
    if (!ok) {
      var range = document.createRange();
      range.selectNodeContents(document.getElementById(btn.getAttribute("data-copy")));
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
    btn.classList.toggle("copied", ok);
    clearTimeout(btn._t);
    btn._t = setTimeout(function () { btn.textContent = "Copy"; btn.classList.remove("copied"); }, 2000);
  }
  var buttons = document.querySelectorAll("button.copy");
  Array.prototype.forEach.call(buttons, function (btn) {
    btn.addEventListener("click", function () {
      var pre = document.getElementById(btn.getAttribute("data-copy"));
      if (!pre) { return; }
      var text = pre.textContent;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(
          function () { show(btn, true); },
          function () { show(btn, fallbackCopy(text)); });
      } else {
        show(btn, fallbackCopy(text));
      }
    });
  });
  var toggle = document.getElementById("show-unaffected");
  if (toggle) {
    toggle.addEventListener("change", function () {
      document.body.classList.toggle("hide-ok", !toggle.checked);
    });
  }
  document.body.dataset.ready = "1";
  document.body.dataset.copyButtons = String(buttons.length);
})();
