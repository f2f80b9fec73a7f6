// Heed console: the little the pages do with a script. Every page works
// without it; the Content-Security-Policy allows this file and no inline
// script. Each part looks for its markup and does nothing without it.
"use strict";

// The Events page's live tail: the server sends each new event as the
// table row the page itself would show (escaped by the server's
// templates), over server-sent events.
function liveTail() {
  const table = document.querySelector("table[data-stream]");
  if (!table || !window.EventSource) return;
  const body = table.tBodies[0];
  const status = document.querySelector("p.live");
  const say = (text) => { if (status) { status.hidden = false; status.textContent = text; } };
  const src = new EventSource(table.dataset.stream);
  src.addEventListener("open", () => say("Live: new events appear at the end of the table."));
  src.addEventListener("event", (e) => {
    // A template holds the row without running or fetching anything.
    const t = document.createElement("template");
    t.innerHTML = e.data;
    const row = t.content.firstElementChild;
    if (!row) return;
    row.classList.add("new");
    body.appendChild(row);
    const empty = document.querySelector("p.empty");
    if (empty) empty.remove();
  });
  src.addEventListener("end", () => {
    src.close();
    say("Live updates stopped: your session is ending. Reload the page to go on.");
  });
  src.addEventListener("error", () => {
    if (src.readyState === EventSource.CLOSED) say("Live updates stopped. Reload the page to go on.");
  });
}

// Copy buttons beside the DNS records. They are hidden in the markup,
// so a page without this script (or without a clipboard, outside a
// secure context) shows only the records, still selectable text.
function copyButtons() {
  if (!navigator.clipboard) return;
  const status = document.getElementById("copy-status");
  for (const b of document.querySelectorAll("button.copy[data-copy]")) {
    b.hidden = false;
    b.addEventListener("click", async () => {
      const src = document.getElementById(b.dataset.copy);
      try {
        await navigator.clipboard.writeText(src.textContent);
        if (status) status.textContent = "Copied: " + src.textContent;
      } catch (err) {
        if (status) status.textContent = "Could not copy; select the text and copy it.";
      }
    });
  }
}

// The CSV import's progress bar. The server reads the upload into the
// import as it arrives, never ahead of it, so the part of the file sent
// is the part read (less what the network holds): the bar follows the
// upload, then waits for the last rows, then the report replaces the
// page's main part, as the form's own answer would have.
function importProgress() {
  const form = document.querySelector("form.import");
  if (!form || !window.XMLHttpRequest || !window.DOMParser) return;
  const box = form.querySelector(".progress");
  const bar = form.querySelector("progress");
  const text = form.querySelector(".progress-text");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.responseType = "document";
    box.hidden = false;
    form.querySelector("button[type=submit]").disabled = true;
    xhr.upload.addEventListener("progress", (p) => {
      if (!p.lengthComputable) return;
      const pct = Math.floor(100 * p.loaded / p.total);
      bar.value = pct;
      text.textContent = pct + "% of the file sent and read";
    });
    xhr.upload.addEventListener("load", () => {
      bar.removeAttribute("value"); // indeterminate: the last rows
      text.textContent = "The whole file is sent; reading its last rows…";
    });
    xhr.addEventListener("load", () => {
      const doc = xhr.response;
      const main = doc && doc.querySelector("main");
      if (!main) { text.textContent = "The import ended with an error (" + xhr.status + "). Reload the page."; return; }
      document.title = doc.title;
      document.querySelector("main").replaceWith(document.adoptNode(main));
      const h = document.querySelector("main h2, main h1");
      if (h) { h.tabIndex = -1; h.focus(); }
      importProgress(); // the report's page has the form again
    });
    xhr.addEventListener("error", () => {
      text.textContent = "The upload failed. Check the connection and try again.";
      form.querySelector("button[type=submit]").disabled = false;
    });
    xhr.send(new FormData(form));
  });
}

document.addEventListener("DOMContentLoaded", () => {
  liveTail();
  copyButtons();
  importProgress();
});
