// Accessibility fixes for HTML that docutils/Sphinx generate (checked by axe-core
// in tests/test_browser.py):
// - the bibliography is <div class="citation-list" role="list"> whose children are
//   role="doc-biblioentry", not "listitem" (axe: aria-required-children, critical):
//   drop the list role, each entry keeps its own role.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll('.citation-list[role="list"]').forEach(list => list.removeAttribute("role"));
});
