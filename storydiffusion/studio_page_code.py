"""What the studio page runs in the browser: its CSS and its small scripts (shortcuts, the page view's zoom)."""

# What the page runs once it has loaded. The status lines become live regions, so that a screen reader reads
# what a run or a refusal says there (Gradio's own announcer only says "Error"). Ctrl+Enter (Cmd+Enter on a
# Mac) presses the button of the part of the page it is pressed in, when that button can be pressed: Redraw
# in the panel editor, Animate on the Animate tab, else Generate (only the button of the tab on screen is
# visible). A picker's list, which Gradio opens when Tab reaches the picker, is closed when Tab leaves it:
# it stayed open over the next fields. A keyboard user's focus comes back to the button that started a run
# (it fell to the page's body while the button was off), and to a picture's thumbnail when Escape closes its
# preview (it fell to the body too).
PAGE_SCRIPT = """
() => {
  window.storydiffusionShortcuts = true;
  for (const id of ["#status", "#redraw-note", "#project-status", "#animation-note", "#steering-status"]) {
    const line = document.querySelector(id);  // its text, not the progress timer drawn over it
    const text = line && (line.querySelector('[data-testid="markdown-wrapper"]') || line);
    if (text) { text.setAttribute("role", "status"); text.setAttribute("aria-live", "polite"); }
  }
  // A button pressed from the keyboard is turned off while its run goes, and the focus falls to the page's
  // body: when the run ends, the focus comes back to the button that starts such a run again.
  const startOf = { generate: "generate", stop: "generate", regenerate: "regenerate", "redraw-stop": "regenerate",
                    retypeset: "retypeset", animate: "animate", "animate-stop": "animate" };
  let refocus = null;
  for (const [id, start] of Object.entries(startOf)) {
    const button = document.getElementById(id);
    if (!button) continue;
    new MutationObserver(() => {
      const lost = document.activeElement === button || document.activeElement === document.body;
      if (button.disabled && lost) refocus = start;
      if (!button.disabled && refocus === id && document.activeElement === document.body) {
        refocus = null;
        button.focus();
      }
    }).observe(button, { attributes: true, attributeFilter: ["disabled"] });
  }
  const visible = (element) => element !== null && element.offsetParent !== null;
  document.addEventListener("keydown", (event) => {  // seen first (capture): the gallery keeps Escape to itself
    const gallery = event.key === "Escape" && event.target instanceof Element && event.target.closest("#panels, #pages");
    if (!gallery) return;  // a picture's preview closed from the keyboard: the focus goes back to its thumbnail
    const shown = Array.from(gallery.querySelectorAll(".thumbnail-item"));
    const index = Math.max(0, shown.findIndex((item) => item.classList.contains("selected")));
    setTimeout(() => {
      if (document.activeElement !== document.body) return;
      const thumbnails = gallery.querySelectorAll(".thumbnail-item");
      (thumbnails[index] || thumbnails[0])?.focus();
    }, 100);
  }, true);
  document.addEventListener("keydown", (event) => {
    const picker = event.target instanceof HTMLInputElement && event.target.getAttribute("role") === "combobox";
    if (event.key === "Tab" && picker) {  // a list opened by Tab is closed as Tab leaves it (Gradio keeps it open)
      event.target.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
      return;
    }
    if (!(event.ctrlKey || event.metaKey) || event.key !== "Enter") return;
    const inEditor = event.target instanceof Element && event.target.closest("#panel-editor");
    const button = inEditor
      ? document.querySelector("#regenerate")
      : [document.querySelector("#generate"), document.querySelector("#animate")].find(visible);
    if (button && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });
}
"""


# Text dark enough for WCAG AA contrast (4.5:1): subdued hints and slider ends, white on the buttons, the
# selected tab; a visible outline on whatever the keyboard focuses; while a line's work runs, Gradio's progress
# (text, bar, timer) is drawn over that line, so the line's own faded text is hidden meanwhile (on the run's
# status line, as long as the progress bar is there: the panels done are said in the progress text) and the
# line is tall enough to hold the progress;
# a download's size column no longer squeezes its file name to one letter ("k..pdf"), and a long name wraps
# instead of being cut to "my-st… .pdf"; on a desktop each comic page is shown whole in the pages box (one
# page per view height, the box scrolls to the next), not cut at the box's bottom; the scores' headers
# never break mid-word; at phone width a gallery's fixed columns would push panels past its right edge, so
# they wrap, and a comic page fills the width at its own shape under the gallery's label.
STUDIO_CSS = """
.gradio-container {
  --body-text-color-subdued: #5d5d68;
  --block-info-text-color: #5d5d68;
  --color-accent: #c2410c;
  --button-primary-background-fill: #c2410c;
  --button-primary-background-fill-hover: #9a3412;
  --button-cancel-background-fill: #b91c1c;
  --button-cancel-background-fill-hover: #991b1b;
}
.gradio-container button[role="tab"].selected { color: #c2410c; }
.gradio-container :focus-visible { outline: 3px solid #c2410c !important; outline-offset: 1px; }
#page-view .image-container, #page-view .image-frame {
  overflow: auto !important; justify-content: flex-start !important; align-items: flex-start !important;
}
.dark .gradio-container { --body-text-color-subdued: #a9a9b4; --block-info-text-color: #a9a9b4; }
.file-preview td.download { width: 6.5em !important; min-width: 0 !important; }
/* font-size 0: the space Gradio's markup leaves between a name and its extension takes no room ("kite-day .pdf");
   nowrap, and the extension joined to the name (U+2060), so no line breaks there: a long name wraps inside */
.file-preview td.filename {
  width: auto !important; display: block !important; font-size: 0 !important; white-space: nowrap !important;
}
.file-preview td.filename > span { font-size: var(--text-md); }
.file-preview td.filename .stem {
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important;
  max-width: none !important; overflow-wrap: anywhere; unicode-bidi: isolate;
}
.file-preview td.filename .ext::before { content: "\\2060"; }
@media (min-width: 641px) {
  #pages .thumbnail-item { aspect-ratio: auto !important; height: 560px !important; }
  #pages .thumbnail-item img { width: 100% !important; height: 100% !important; object-fit: contain !important; }
}
#gif .image-frame, #gif img { width: 100% !important; height: auto !important; max-height: 70vh; object-fit: contain; }
#scores th, #scores th * { word-break: keep-all !important; overflow-wrap: normal !important; }
#status .pending, #redraw-note .pending, #project-status .pending, #animation-note .pending { visibility: hidden; }
#status:has(.progress-level) [data-testid="markdown-wrapper"] { visibility: hidden; }
#status:has(.pending), #redraw-note:has(.pending), #project-status:has(.pending), #animation-note:has(.pending) {
  min-height: 3.2em;
}
@media (max-width: 640px) {
  #panels .grid-container { grid-template-columns: repeat(auto-fill, minmax(88px, 1fr)) !important; }
  #panels { height: auto !important; }
  #panels .grid-wrap { height: auto !important; max-height: 70vh; padding-top: 2.5em; }
  #pages { height: auto !important; }
  #pages .grid-wrap { height: auto !important; max-height: none !important; padding-top: 2.5em; }
  #pages .grid-container { grid-template-columns: 1fr !important; }
  #pages .thumbnail-item { aspect-ratio: auto !important; height: auto !important; }
  #pages .thumbnail-item img { width: 100% !important; height: auto !important; object-fit: contain !important; }
}
"""


# A panel clicked in the gallery opens the editor; on a phone it sits far below (pages, downloads and scores
# come first), so the page scrolls to it, and only then: where it is already in view nothing moves. It waits
# for the gallery, which scrolls its own preview into view on the click.
SHOW_EDITOR = """
() => {
  setTimeout(() => {
    const editor = document.querySelector("#panel-editor");
    if (!editor) return;
    const box = editor.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight * 0.4) editor.scrollIntoView({ block: "start", behavior: "smooth" });
  }, 500);
}
"""


# The page view's zoom runs in the browser: the page is drawn at zoom % of the view's width and the
# view scrolls (from the top right corner for manga), so a reader can follow a balloon across a page
# without a round trip to the server.
ZOOM_LEAST, ZOOM_MOST = 50, 400  # % of the view's width: the zoom slider's range
ZOOM_PAGE = """
(zoom) => {
  zoom = Math.min(ZOOM_MOST, Math.max(ZOOM_LEAST, Number(zoom) || 100));  // a typed 5000 is not kept
  const view = document.querySelector("#page-view");
  const page = view && view.querySelector("img");
  if (!page) return;
  Object.assign(page.style, {
    width: Math.round(view.getBoundingClientRect().width * zoom / 100) + "px",
    height: "auto", maxWidth: "none", maxHeight: "none", flexShrink: "0",
    objectFit: "contain", objectPosition: "left top",  // Gradio's scale-down stops a page at its own size
  });
  const rightToLeft = (document.querySelector("#reading-direction") || {}).innerText || "";
  // A page opens at its first panel: top right for right to left, top left otherwise (a page shown before kept its own).
  page.parentElement.scrollLeft = rightToLeft.includes("right to left") ? page.parentElement.scrollWidth : 0;
}
""".replace("ZOOM_MOST", str(ZOOM_MOST)).replace("ZOOM_LEAST", str(ZOOM_LEAST))


# The story boxes' draft, kept per tab (sessionStorage survives a reload of its own tab only): stored as it
# is typed, and preferred on load to the browser's last draft, which another tab may have written.
KEEP_TAB_DRAFT = """
(...texts) => {
  try { sessionStorage.setItem("storydiffusion-story", JSON.stringify(texts.slice(0, 3))); } catch (e) {}
  return texts.slice(0, 3);
}
"""
TAB_DRAFT_FIRST = """
(saved, ...boxes) => {
  let mine = null;
  try { mine = JSON.parse(sessionStorage.getItem("storydiffusion-story") || "null"); } catch (e) {}
  return [Array.isArray(mine) ? mine : saved, ...boxes.slice(0, 3)];
}
"""
