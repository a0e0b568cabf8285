// Entries: search by meaning (`q`), filter by category, tenant, model and age, page through
// by id, open one (prompt, answer, hits), delete it, purge what matches, or mark it wrong.

import { api, query } from "../api.js";
import { confirmDialog, el, heading, redo, say, table } from "../dom.js";
import { ago, count, duration, moment, tokens, usd } from "../format.js";

const PAGE = 25;
const AGES = { "": "any age", 3600: "1 hour", 86400: "24 hours", 604800: "7 days" };
// The filters and the pages seen (the `after` of each), kept while the tab is open.
const state = { filters: { q: "", category: "", tenant: "", model: "", newer_than_s: "", older_than_s: "" }, pages: [0] };

function text(content) {
  return typeof content === "string" ? content : JSON.stringify(content, null, 2);
}

function prompt(request) {
  if (Array.isArray(request.messages)) {
    return request.messages.map((m) => `${m.role}: ${text(m.content)}`).join("\n\n");
  }
  return text(request.prompt ?? request);
}

function answer(response) {
  const choice = response.choices?.[0];
  return text(choice?.message?.content ?? choice?.text ?? response);
}

async function open(id, root) {
  const entry = await api(`/admin/entries/${id}`);
  const panel = root.querySelector("#entry");
  const facts = [
    ["Category", entry.category], ["Model", entry.model], ["Tenant", entry.tenant],
    ["Created", `${moment(entry.created_at)} (${ago(entry.created_at)})`],
    ["Expires", moment(entry.expires_at)],
    ["Hits", `${count(entry.hit_count)} (last ${ago(entry.last_hit_at)})`],
    ["Tokens", `${tokens(entry.prompt_tokens)} in, ${tokens(entry.completion_tokens)} out`],
    ["Cost of one answer", usd(entry.cost_usd)],
    ["Answered by", entry.upstream_model ?? "–"],
    ["Demoted (marked wrong)", entry.demoted ? "yes" : "no"],
  ];
  const note = el("input", { id: "feedback-note", type: "text", maxlength: 4096, placeholder: "why it is wrong (optional)" });
  panel.replaceChildren(
    el("h3", { tabindex: "-1", id: "entry-title" }, `Entry ${entry.id}`),
    el("dl", { class: "facts" }, facts.map(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])),
    el("h4", {}, "Prompt"), el("pre", { class: "prompt" }, prompt(entry.request)),
    el("h4", {}, "Answer"), el("pre", { class: "answer" }, answer(entry.response)),
    el("div", { class: "actions" },
      el("label", { for: "feedback-note", class: "visually-hidden" }, "Note"), note,
      el("button", { type: "button", id: "mark-wrong", onclick: () => redo(() => markWrong(entry, note.value, root)) }, "Mark hit wrong"),
      el("button", { type: "button", id: "delete-entry", class: "danger", onclick: () => redo(() => remove(entry, root)) }, "Delete entry"),
      el("button", { type: "button", class: "secondary", onclick: () => panel.replaceChildren() }, "Close")));
  panel.querySelector("#entry-title").focus();
}

async function markWrong(entry, note, root) {
  const result = await api("/admin/feedback", { method: "POST", body: { verdict: "wrong", entry_id: entry.id, note } });
  say(result.demoted
    ? `Entry ${entry.id} marked wrong: no paraphrase is served it again.`
    : `Entry ${entry.id} marked wrong (it was already demoted).`);
  await open(entry.id, root);
}

async function remove(entry, root) {
  if (!(await confirmDialog("Delete this entry?", `Entry ${entry.id} leaves the cache and every index.`, "Delete"))) return;
  await api(`/admin/entries/${entry.id}`, { method: "DELETE" });
  say(`Entry ${entry.id} deleted.`);
  await entries(root);
}

function filters() {
  const f = state.filters;
  const params = { category: f.category, tenant: f.tenant, model: f.model };
  if (f.newer_than_s) params.newer_than_s = Number(f.newer_than_s);
  if (f.older_than_s) params.older_than_s = Number(f.older_than_s);
  return params;
}

async function purge(root, search) {
  take(search); // what the form says now, searched or not
  const named = Object.fromEntries(Object.entries(filters()).filter(([, v]) => v !== ""));
  const described = Object.entries(named).map(([k, v]) => `${k} = ${k.endsWith("_s") ? duration(v) : v}`).join(", ");
  const message = described
    ? `Every entry matching ${described} leaves the cache and every index. The search text is not a filter here.`
    : "No filter is set: EVERY entry of every tenant leaves the cache.";
  if (!(await confirmDialog("Purge entries?", message, "Purge"))) return;
  const result = await api("/admin/purge", { method: "POST", body: described ? named : { all: true } });
  say(`Purged ${count(result.deleted)} entries.`);
  state.pages = [0];
  await entries(root);
}

function take(search) {
  for (const name of Object.keys(state.filters)) state.filters[name] = search.elements[name].value;
}

function form(root, categories) {
  const f = state.filters;
  const field = (name, label, input) => el("div", { class: "field" }, el("label", { for: `filter-${name}` }, label), input);
  const select = (name, options) => el("select", { id: `filter-${name}`, name },
    Object.entries(options).map(([v, t]) => el("option", { value: v, selected: String(f[name]) === v }, t)));
  const search = el("form", { class: "filters", role: "search" },
    field("q", "Search by meaning", el("input", { id: "filter-q", name: "q", type: "search", value: f.q, maxlength: 4096 })),
    field("category", "Category", select("category", { "": "all", ...Object.fromEntries(categories.map((c) => [c, c])) })),
    field("tenant", "Tenant", el("input", { id: "filter-tenant", name: "tenant", type: "text", value: f.tenant, maxlength: 256 })),
    field("model", "Model", el("input", { id: "filter-model", name: "model", type: "text", value: f.model, maxlength: 256 })),
    field("newer_than_s", "Created within", select("newer_than_s", AGES)),
    field("older_than_s", "Created before", select("older_than_s", { "": "any time", 3600: "1 hour ago", 86400: "24 hours ago", 604800: "7 days ago" })),
    el("div", { class: "actions" },
      el("button", { type: "submit", id: "search" }, "Search"),
      el("button", { type: "button", id: "purge", class: "danger", onclick: () => redo(() => purge(root, search)) }, "Purge matching…")));
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    take(search);
    state.pages = [0];
    redo(() => entries(root));
  });
  return search;
}

function pager(root, page) {
  const shown = state.pages; // the pages up to this one: a second click goes to the same page
  const go = (pages) => { state.pages = pages; redo(() => entries(root)); };
  return el("nav", { class: "pager", "aria-label": "Pages" },
    el("button", { type: "button", id: "previous-page", disabled: shown.length <= 1, onclick: () => go(shown.slice(0, -1)) }, "← Previous"),
    el("span", {}, `Page ${shown.length}`),
    el("button", { type: "button", id: "next-page", disabled: !page.has_more, onclick: () => go([...shown, page.next_after]) }, "Next →"));
}

export async function entries(root) {
  const searching = state.filters.q.trim() !== "";
  const params = { ...filters(), limit: PAGE };
  if (searching) params.q = state.filters.q;
  else params.after = state.pages[state.pages.length - 1];
  const [page, policies] = await Promise.all([api(`/admin/entries${query(params)}`), api("/admin/policies")]);
  const columns = [
    ["Id", (e) => el("button", { type: "button", class: "link", onclick: () => redo(() => open(e.id, root)), "aria-label": `Open entry ${e.id}` }, String(e.id)), { numeric: true }],
    ...(searching ? [["Similarity", (e) => e.similarity.toFixed(3), { numeric: true }]] : []),
    ["Prompt", (e) => el("span", { class: "clip", title: e.text }, e.text)],
    ["Category", (e) => e.category],
    ["Model", (e) => e.model],
    ["Hits", (e) => count(e.hit_count), { numeric: true }],
    ["Created", (e) => ago(e.created_at)],
    ["Cost of one answer", (e) => usd(e.cost_usd), { numeric: true }],
  ];
  const parts = [
    heading("Entries", el("button", { type: "button", onclick: () => redo(() => entries(root)) }, "Refresh")),
    form(root, policies.data.map((p) => p.name)),
    table(searching ? `The ${PAGE} nearest entries` : `Entries, oldest first (${PAGE} a page)`, columns, page.data, "No entries match."),
    searching ? null : pager(root, page),
    el("section", { id: "entry", class: "entry", "aria-live": "polite" }),
  ];
  root.replaceChildren(...parts.filter(Boolean));
}
