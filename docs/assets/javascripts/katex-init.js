// Typeset the maths that pymdownx.arithmatex (generic mode) wraps in \( \) and \[ \],
// with the KaTeX shipped in docs/assets/katex (no network needed).
// Material's document$ fires on every page load, instant navigation included.
function renderMaths(root) {
  renderMathInElement(root, {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    ignoredClasses: ["highlight", "md-search"],
    throwOnError: false,
  });
}
if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => renderMaths(body));
} else {
  document.addEventListener("DOMContentLoaded", () => renderMaths(document.body));
}
