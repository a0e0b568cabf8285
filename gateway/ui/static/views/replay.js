// Replay: open a `gateway replay --json` file; the gateway draws its report with the code
// of `gateway replay --html` (/admin/replay/report), shown here in a sandboxed frame (no
// script runs in it).

import { api } from "../api.js";
import { el, heading, say } from "../dom.js";

let shown = null; // the last report, kept while the tab is open: {name, html}

function frame(report) {
  return el("iframe", { class: "report", title: `Replay report: ${report.name}`, sandbox: "", srcdoc: report.html });
}

export async function replay(root) {
  const area = el("div", { class: "report-area" }, shown ? frame(shown) : el("p", { class: "empty" }, "No report open."));
  const input = el("input", { id: "replay-file", type: "file", accept: ".json,application/json" });
  input.addEventListener("change", async () => {
    const file = input.files[0];
    if (!file) return;
    try {
      const html = await api("/admin/replay/report", { method: "POST", body: await file.text(), html: true });
      shown = { name: file.name, html };
      area.replaceChildren(frame(shown));
      say(`Opened ${file.name}.`);
    } catch (error) {
      area.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
    }
  });
  root.replaceChildren(
    heading("Replay"),
    el("p", {}, "Open the JSON file that ", el("code", {}, "gateway replay --json FILE"), " wrote."),
    el("label", { for: "replay-file" }, "Replay file "), input,
    area);
}
