// Overview: what the cache did in a window: the totals of /admin/stats, each figure over
// time (/admin/stats/series) and by category, tenant or model.

import { api, query } from "../api.js";
import { timeChart } from "../charts.js";
import { el, heading, pagedTable, redo } from "../dom.js";
import { count, ms, percent, tokens, usd } from "../format.js";

const WINDOWS = { "1 hour": [3600, 60], "24 hours": [86400, 900], "7 days": [604800, 10800], "30 days": [2592000, 43200] };
const BREAKDOWNS = { by_category: "category", by_tenant: "tenant", by_model: "model" };
const state = { window: "24 hours", breakdown: "by_category", drawn: 0 };

// The figures every total and breakdown row has: [key, label, read, format].
const FIGURES = [
  ["requests", "Requests", (s) => s.requests, count],
  ["hit_rate", "Hit rate", (s) => s.hit_rate, percent],
  ["tokens_saved", "Tokens saved", (s) => s.tokens_saved, tokens],
  ["cost_saved_usd", "Saved", (s) => s.cost_saved_usd, usd],
  ["false_hits", "False hits (feedback)", (s) => s.false_hits, count],
  ["added_p50", "Added latency p50", (s) => s.added_latency_ms.p50, ms],
  ["added_p95", "Added latency p95", (s) => s.added_latency_ms.p95, ms],
];

function cards(totals) {
  return el("dl", { class: "cards" }, FIGURES.map(([key, label, read, format]) =>
    el("div", { class: "card" },
      el("dt", {}, label),
      el("dd", { dataset: { stat: key, value: String(read(totals) ?? "") } }, format(read(totals))))));
}

// Every bucket of the window, empty ones included (zero requests; no latency).
function buckets(points, since, until, bucket) {
  const byStart = new Map(points.map((p) => [p.start, p]));
  const xs = [];
  for (let t = Math.floor(since / bucket) * bucket; t < until; t += bucket) xs.push(t);
  const at = (read, empty) => xs.map((t) => (byStart.has(t) ? read(byStart.get(t)) : empty));
  return { xs, at };
}

function charts(points, since, until, bucket) {
  const { xs, at } = buckets(points, since, until, bucket);
  const per = `per ${bucket >= 3600 ? `${bucket / 3600} h` : `${bucket / 60} min`}`;
  return el("div", { class: "charts" },
    timeChart(`Requests and hits ${per}`, "requests", xs, [
      { label: "requests", values: at((p) => p.requests, 0) },
      { label: "hits", values: at((p) => p.hits, 0) },
    ]),
    timeChart("Hit rate", "%", xs, [{ label: "hit rate", values: at((p) => 100 * p.hit_rate, null) }]),
    timeChart(`Money saved ${per}`, "USD", xs, [{ label: "saved", values: at((p) => p.cost_saved_usd, 0) }]),
    timeChart(`Tokens saved ${per}`, "tokens", xs, [{ label: "tokens saved", values: at((p) => p.tokens_saved, 0) }]),
    timeChart(`False hits ${per}`, "hits", xs, [{ label: "false hits", values: at((p) => p.false_hits, 0) }]),
    timeChart("Gateway-added latency", "ms", xs, [
      { label: "p50", values: at((p) => p.added_latency_ms.p50, null) },
      { label: "p95", values: at((p) => p.added_latency_ms.p95, null) },
    ]));
}

function breakdown(stats) {
  const groups = stats[state.breakdown];
  const rows = Object.entries(groups).map(([name, figures]) => ({ name, figures }))
    .sort((a, b) => b.figures.requests - a.figures.requests || a.name.localeCompare(b.name));
  const label = BREAKDOWNS[state.breakdown];
  return pagedTable(`By ${label}`, [
    [label, (r) => (label === "tenant" ? el("code", {}, r.name) : r.name)],
    ...FIGURES.map(([, title, read, format]) => [title, (r) => format(read(r.figures)), { numeric: true }]),
  ], rows, `No requests in this window.`);
}

function choice(id, label, options, value, onchange) {
  return el("label", { for: id, class: "inline" }, label,
    el("select", { id, onchange: (e) => onchange(e.target.value) },
      Object.entries(options).map(([key, text]) => el("option", { value: key, selected: key === value }, text))));
}

export async function overview(root) {
  const drawing = ++state.drawn; // a slower, older draw that answers last is dropped
  const [span, bucket] = WINDOWS[state.window];
  const until = Date.now() / 1000;
  const since = until - span;
  const range = { since: since.toFixed(3), until: until.toFixed(3) };
  const [stats, series] = await Promise.all([
    api(`/admin/stats${query(range)}`),
    api(`/admin/stats/series${query({ ...range, bucket })}`),
  ]);
  if (drawing !== state.drawn) return;
  const redraw = () => redo(() => overview(root));
  const windows = Object.fromEntries(Object.keys(WINDOWS).map((k) => [k, `last ${k}`]));
  const groupings = Object.fromEntries(Object.entries(BREAKDOWNS).map(([k, v]) => [k, `by ${v}`]));
  root.replaceChildren(
    heading("Overview",
      choice("window", "Window ", windows, state.window, (v) => { state.window = v; redraw(); }),
      el("button", { type: "button", onclick: redraw }, "Refresh")),
    cards(stats.totals),
    charts(series.data, since, until, bucket),
    el("div", { class: "view-head" }, el("h3", {}, "Breakdown"),
      choice("breakdown", "Group ", groupings, state.breakdown, (v) => { state.breakdown = v; redraw(); })),
    breakdown(stats));
}
