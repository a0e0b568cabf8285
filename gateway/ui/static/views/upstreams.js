// Upstreams: per model its load, latency and errors now (/admin/upstreams) and over the
// last 24 hours (/admin/stats by model); per route its members, the large model's pressure,
// and the share of misses sent to the small and the large model.

import { api } from "../api.js";
import { el, heading, redo, table } from "../dom.js";
import { count, ms, percent, usd } from "../format.js";

export async function upstreams(root) {
  const [now, stats] = await Promise.all([api("/admin/upstreams"), api("/admin/stats")]); // stats: the last 24 h
  const day = (model) => stats.by_model[model];
  const models = table("Models, now and over the last 24 hours", [
    ["Model", (u) => u.model],
    ["Tier", (u) => u.tier ?? "–"],
    ["Load", (u) => percent(u.load), { numeric: true }],
    ["In flight", (u) => `${count(u.inflight)} requests`, { numeric: true }],
    ["Latency (moving average)", (u) => ms(u.latency_ewma_ms), { numeric: true }],
    ["Recent errors", (u) => count(u.recent_errors), { numeric: true }],
    ["Requests (24 h)", (u) => count(day(u.model)?.requests ?? 0), { numeric: true }],
    ["Errors (24 h)", (u) => count(day(u.model)?.errors ?? 0), { numeric: true }],
    ["Hit rate (24 h)", (u) => percent(day(u.model)?.hit_rate), { numeric: true }], // – without requests
  ], now.data, "No models configured.");
  const routes = table("Routes: misses sent to the small and the large model (last 24 hours)", [
    ["Route", (r) => r.name],
    ["Small model", (r) => r.small],
    ["Large model", (r) => r.large],
    ["Large model's pressure", (r) => percent(r.large_pressure), { numeric: true }],
    ["Bar a small answer must reach", (r) => r.bar.toFixed(3), { numeric: true }],
    ["Sent to small", (r) => routing(day(r.name), "routed_small"), { numeric: true }],
    ["Sent to large", (r) => routing(day(r.name), "routed_large"), { numeric: true }],
    ["Share to small", (r) => percent(day(r.name)?.routing.offloaded_share ?? 0), { numeric: true }],
    ["Saved by routing", (r) => usd(day(r.name)?.routing.routing_saved_usd ?? 0), { numeric: true }],
  ], now.routes, "No routes configured: every miss goes to the model asked for.");
  root.replaceChildren(
    heading("Upstreams", el("button", { type: "button", onclick: () => redo(() => upstreams(root)) }, "Refresh")),
    models, routes);
}

function routing(figures, member) {
  return `${count(figures?.routing[member] ?? 0)} misses`;
}
