"""What the page runs in the browser: its CSS, the script in its <head>, and the small scripts
of the load and language-switch events. Strings shown to people come from ``texts.py``."""

from __future__ import annotations

import json

from gateway.ui.texts import LANGUAGES, TEXTS

CSS = """
#i2v-status progress { width: 100%; height: 1.2em; }
#i2v-result video, #i2v-result img { max-width: 100%; }
.i2v-signed-in form { display: inline; }
/* A visible focus on every control (Gradio's theme shows none on radios, checkboxes, sliders). */
input:focus-visible, button:focus-visible, textarea:focus-visible, select:focus-visible,
a:focus-visible, [tabindex]:focus-visible { outline: 3px solid #1d4ed8 !important; outline-offset: 2px; }
#i2v-examples { max-width: 100%; overflow-x: auto; }
#i2v-examples table { table-layout: fixed; width: 100%; }
#i2v-examples td, #i2v-examples th { overflow-wrap: anywhere; white-space: normal; }
#i2v-signed-out { padding: .8rem 1rem; margin: .5rem 0; border: 2px solid #b91c1c; border-radius: 6px;
                  background: #fef2f2; color: #7f1d1d; font-weight: 600; }
#i2v-signed-out a { color: #1d4ed8; }
body.i2v-signed-out .toast-wrap { display: none; }
/* Phones: the header stacks instead of squeezing the title to a letter a line. */
@media (max-width: 640px) {
  #i2v-header { flex-direction: column; }
  #i2v-header > * { min-width: 0 !important; width: 100%; }
  #i2v-title h1 { font-size: 1.6rem; }
}
"""
# In the page's <head>: Ctrl+Enter submits; a 401 from any UI call (a session that expired or
# was revoked) shows "signed out: sign in again" over the form, which stays as it is; Gradio's
# empty placeholders get the role their aria-label needs.
HEAD = """<script>
(() => {
  const SIGNED_OUT = %(signed_out)s;
  const SIGN_IN = %(sign_in)s;
  const language = () => localStorage.getItem("i2v-language") || document.documentElement.lang || "en";
  const showSignedOut = () => {
    if (document.getElementById("i2v-signed-out")) return;
    const code = SIGNED_OUT[language()] ? language() : "en";
    const banner = document.createElement("div");
    banner.id = "i2v-signed-out";
    banner.setAttribute("role", "alert");
    banner.textContent = SIGNED_OUT[code] + " ";
    const link = document.createElement("a");
    link.href = "login?lang=" + code;
    link.target = "_blank";
    link.textContent = SIGN_IN[code];
    banner.appendChild(link);
    document.body.classList.add("i2v-signed-out");
    const app = document.querySelector(".gradio-container") || document.body;
    app.prepend(banner);
  };
  const fetchAsBefore = window.fetch;
  window.fetch = async (...args) => {
    const answer = await fetchAsBefore(...args);
    if (answer.status === 401) showSignedOut();
    return answer;
  };
  document.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      const generate = document.querySelector("#i2v-generate");
      if (generate && !generate.disabled) { event.preventDefault(); generate.click(); }
    }
  });
  new MutationObserver(() => {
    document.querySelectorAll("div.empty[aria-label]:not([role])").forEach((node) => node.setAttribute("role", "img"));
  }).observe(document.documentElement, {subtree: true, childList: true});
})();
</script>"""


def page_head() -> str:
    def by_language(key: str) -> str:
        return json.dumps({code: TEXTS[code][key] for code in LANGUAGES}, ensure_ascii=False)
    return HEAD % {"signed_out": by_language("signed_out"), "sign_in": by_language("sign_in_again")}


# Remember the language in the browser (localStorage): the page opens in it after a reload.
REMEMBER_LANGUAGE_JS = """(...inputs) => { localStorage.setItem("i2v-language", inputs[0]);
    document.documentElement.lang = inputs[0]; return inputs; }"""
REMEMBERED_LANGUAGE_JS = """() => { const code = localStorage.getItem("i2v-language") || "";
    if (code) document.documentElement.lang = code; return [code]; }"""
