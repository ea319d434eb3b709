// Typesets the formulas that pymdownx.arithmatex (generic mode) leaves in the page:
// <span class="arithmatex">\(...\)</span> inline and <div class="arithmatex">\[...\]</div> display,
// with the vendored KaTeX (docs/assets/katex/). A formula KaTeX cannot parse stays as its source,
// in red, instead of breaking the page.
(function () {
  "use strict";
  function render(root) {
    if (typeof katex === "undefined") return;
    root.querySelectorAll(".arithmatex").forEach(function (el) {
      if (el.dataset.typeset) return;
      var tex = el.textContent.trim();
      var display = el.tagName !== "SPAN";
      if (tex.startsWith("\\(") && tex.endsWith("\\)")) {
        tex = tex.slice(2, -2);
      } else if (tex.startsWith("\\[") && tex.endsWith("\\]")) {
        tex = tex.slice(2, -2);
        display = true;
      }
      katex.render(tex, el, { displayMode: display, throwOnError: false });
      el.dataset.typeset = "1";
    });
  }
  // Material's instant navigation announces each new page on document$; without it, one pass.
  if (typeof document$ !== "undefined") {
    document$.subscribe(function (ctx) { render(ctx && ctx.body ? ctx.body : document.body); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { render(document.body); });
  } else {
    render(document.body);
  }
})();
