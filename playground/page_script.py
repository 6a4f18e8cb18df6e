"""The page's own script: a second line behind playground.markup, in the browser.

Prompts and answers reach the page with every tag escaped, so no link or styled element should exist
in them. Should one get through anyway (a Gradio release that renders something new, a path this app
forgot to escape), the script makes it inert: a click on a link, SVG link or form button whose target
is not an http(s) or mailto address is cancelled before the browser follows it; SVG animations that
could rewrite a link later, and inline styles (which can cover the page with a fake panel), are
removed from shown content as soon as it is inserted, before the person can see or click it.

A second script keeps the page's room for the prompt row, which is fixed over the window's bottom.
"""

from __future__ import annotations

# Where Gradio puts text it rendered from markdown: chat bubbles and Markdown blocks.
CONTENT = ".message-content, .prose, .md"

INERT = """<script>
(() => {
  const CONTENT = %(content)r;
  const XLINK = "http://www.w3.org/1999/xlink";
  const LINKING = ["href", "formaction", "action", "src", "data", "xlink:href"];
  const ANIMATING = ["animate", "set", "animatemotion", "animatetransform", "use", "foreignobject"];
  function dangerous(value) {  // a target that runs script or stands for a page of its own
    if (value == null || value === "") return false;
    const bare = String(value).replace(/[\\u0000-\\u0020\\u007f-\\u009f]/g, "");
    let protocol;
    try { protocol = new URL(bare, location.href).protocol; } catch (error) { return true; }
    return ["javascript:", "vbscript:", "data:"].includes(protocol);
  }
  function targets(element) {
    const found = LINKING.map((name) => element.getAttribute(name));
    found.push(element.getAttributeNS(XLINK, "href"));
    if (element.href && element.href.animVal !== undefined) found.push(element.href.animVal);  // SVG, animated
    return found;
  }
  document.addEventListener("click", (event) => {
    for (const element of event.composedPath()) {
      if (element instanceof Element && targets(element).some(dangerous)) {
        event.preventDefault();
        event.stopImmediatePropagation();
        return;
      }
    }
  }, true);
  function cleanOne(element) {
    const shown = element.parentElement !== null && element.parentElement.closest(CONTENT) !== null;
    if (shown && ANIMATING.includes(element.localName)) { element.remove(); return; }
    for (const name of LINKING) {
      const value = element.getAttribute(name);
      if (value !== null && dangerous(value) && !(name === "src" && element.localName === "img")) {
        element.removeAttribute(name);
      }
    }
    if (dangerous(element.getAttributeNS(XLINK, "href"))) element.removeAttributeNS(XLINK, "href");
    if (shown && element.hasAttribute("style") && !element.closest(".katex, pre")) {
      element.removeAttribute("style");
    }
  }
  function clean(root) {
    if (!(root instanceof Element)) return;
    cleanOne(root);
    for (const element of root.querySelectorAll("*")) cleanOne(element);
  }
  new MutationObserver((changes) => {
    for (const change of changes) {
      if (change.type === "attributes" && change.target.isConnected) cleanOne(change.target);
      for (const node of change.addedNodes) clean(node);
    }
  }).observe(document.documentElement, {subtree: true, childList: true, attributes: true,
                                         attributeFilter: ["href", "formaction", "action", "style", "src", "data"]});
})();
</script>""" % {"content": CONTENT}

# The prompt row grows with a refusal's line and a prompt of several lines; the page keeps room below
# its content as tall as the row is now (--prompt-row-height, read by ui_page.CSS), so no button or
# answer stays under it. Gradio builds the row after this script runs, and may build it again.
ROOM = """<script>
(() => {
  const root = document.documentElement;
  const sizes = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const height = Math.ceil(entry.target.getBoundingClientRect().height);
      root.style.setProperty("--prompt-row-height", height + "px");
    }
  });
  let watched = null;
  function watch() {
    const row = document.getElementById("prompt-row");
    if (row === null || row === watched) return;
    if (watched !== null) sizes.unobserve(watched);
    sizes.observe(row);
    watched = row;
  }
  new MutationObserver(watch).observe(root, {childList: true, subtree: true});
  watch();
})();
</script>"""
HEAD = INERT + ROOM
