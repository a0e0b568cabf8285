// Building the page from data: elements and text nodes only (no HTML from data), tables
// that page, and a confirmation dialog.

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

export function heading(title, ...actions) {
  return el("div", { class: "view-head" },
    el("h2", { tabindex: "-1", id: "view-title" }, title),
    el("div", { class: "actions" }, ...actions));
}

// A table: `columns` are [label, (row) => cell content, {numeric}]; `empty` when no rows.
export function table(caption, columns, rows, empty = "Nothing to show.") {
  if (!rows.length) return el("p", { class: "empty" }, empty);
  const head = el("tr", {}, columns.map(([label, , opts = {}]) =>
    el("th", { scope: "col", class: opts.numeric ? "num" : undefined }, label)));
  const body = rows.map((row) => el("tr", {}, columns.map(([, cell, opts = {}]) =>
    el("td", { class: opts.numeric ? "num" : undefined }, cell(row)))));
  return el("div", { class: "scroll" },
    el("table", {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, body)));
}

// A question with a confirming and a cancelling button: resolves true when confirmed.
export function confirmDialog(title, message, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = el("dialog", { "aria-labelledby": "confirm-title", class: "confirm" },
      el("h2", { id: "confirm-title" }, title),
      el("p", {}, message),
      el("form", { method: "dialog", class: "actions" },
        el("button", { value: "cancel", type: "submit", autofocus: true }, "Cancel"),
        el("button", { value: "confirm", type: "submit", class: "danger" }, confirmLabel)));
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function say(message, kind = "info") {
  const alert = document.getElementById("alert");
  alert.textContent = message;
  alert.className = `alert ${kind}`;
  alert.hidden = !message;
}

// Runs an action or a view's redraw (call it once, at the control): shows an error instead
// of throwing it, and when the redraw took the focus away (its control was replaced), puts
// it back on the control that asked, or else on the view's heading.
export async function redo(work) {
  const focused = document.activeElement?.id;
  try {
    await work();
  } catch (error) {
    say(error.message, "error");
  }
  const now = document.activeElement;
  if (now && now !== document.body && now.isConnected) return; // the work placed it
  const again = (focused && document.getElementById(focused)) || document.getElementById("view-title");
  again?.focus();
}

// A table of rows already here, `size` a page, with its own Previous and Next buttons.
export function pagedTable(caption, columns, rows, empty, size = 20) {
  if (rows.length <= size) return table(caption, columns, rows, empty);
  const box = el("div", { class: "paged" });
  const show = (at) => {
    const pages = Math.ceil(rows.length / size);
    const focused = document.activeElement?.dataset?.pager;
    box.replaceChildren(
      table(`${caption} (${rows.length}, page ${at + 1} of ${pages})`, columns, rows.slice(at * size, (at + 1) * size)),
      el("nav", { class: "pager", "aria-label": `Pages of ${caption}` },
        el("button", { type: "button", dataset: { pager: "previous" }, disabled: at === 0, onclick: () => show(at - 1) }, "← Previous"),
        el("span", {}, `Page ${at + 1} of ${pages}`),
        el("button", { type: "button", dataset: { pager: "next" }, disabled: at === pages - 1, onclick: () => show(at + 1) }, "Next →")));
    if (focused) box.querySelector(`[data-pager=${focused}]:not(:disabled)`)?.focus()
      ?? box.querySelector("[data-pager]:not(:disabled)")?.focus(); // the end: the other way
  };
  show(0);
  return box;
}
