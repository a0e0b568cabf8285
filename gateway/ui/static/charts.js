// Time series drawn with uPlot (vendored, MIT): one chart per figure, sized to its box and
// redrawn when the box changes (window or phone rotation).

import { el } from "./dom.js";

const COLOURS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700"];

// An axis value: at most four significant digits, no trailing zeros (0.0001, 250, 1.5k).
function tick(v) {
  if (v == null) return "";
  if (Math.abs(v) >= 10000) return `${+(v / 1000).toPrecision(3)}k`;
  return String(+v.toPrecision(4));
}

// `xs`: bucket starts (Unix seconds); `series`: [{label, values}] of the same length;
// `unit` labels the y axis and the legend's values.
export function timeChart(title, unit, xs, series) {
  const box = el("div", { class: "chart" });
  const figure = el("figure", { class: "chart-figure" }, el("figcaption", {}, title), box);
  const options = {
    width: 400,
    height: 200,
    scales: { x: { time: true } },
    axes: [{}, { label: unit, size: 70, values: (u, splits) => splits.map(tick) }],
    series: [
      { label: "time (UTC)", value: (u, v) => (v == null ? "–" : new Date(v * 1000).toISOString().slice(0, 16).replace("T", " ")) },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: COLOURS[i % COLOURS.length],
        width: 2,
        spanGaps: false,
        // A series with gaps (no requests, no latency) marks its values: one alone is a dot.
        points: s.values.some((v) => v == null) ? { show: true, size: 5 } : {},
        value: (u, v) => (v == null ? "–" : `${+v.toFixed(4)} ${unit}`),
      })),
    ],
    tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
  };
  const data = [xs, ...series.map((s) => s.values)];
  // Drawn once the figure is in the page, at its width.
  requestAnimationFrame(() => {
    if (!box.isConnected) return;
    const plot = new window.uPlot({ ...options, width: box.clientWidth || 400 }, data, box);
    const resize = new ResizeObserver(() => {
      if (!box.isConnected) return resize.disconnect();
      plot.setSize({ width: box.clientWidth, height: 200 });
    });
    resize.observe(box);
  });
  figure.setAttribute("aria-label", `${title} (${unit}), ${xs.length} time buckets`);
  return figure;
}
