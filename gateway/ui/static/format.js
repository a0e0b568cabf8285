// Numbers with their units.

const integer = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });

export const count = (n) => (n === null || n === undefined ? "–" : integer.format(n));
export const tokens = (n) => `${count(n)} tokens`;
export const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
export const ms = (x) => (x === null || x === undefined ? "–" : `${x.toFixed(x < 10 ? 1 : 0)} ms`);

export function usd(x) {
  if (x === null || x === undefined) return "–";
  if (x === 0) return "$0";
  if (Math.abs(x) >= 100) return `$${x.toFixed(2)}`;
  if (Math.abs(x) >= 0.01) return `$${x.toFixed(4)}`;
  return `$${x.toPrecision(2)}`; // fractions of a cent: two significant digits
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  for (const [unit, size] of units) {
    if (seconds >= size && seconds % size === 0) return `${count(seconds / size)} ${unit}`;
  }
  return `${seconds} s`;
}

export function moment(unix) {
  if (unix === null || unix === undefined) return "–";
  return new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

export function ago(unix) {
  if (unix === null || unix === undefined) return "never";
  const seconds = Math.max(0, Date.now() / 1000 - unix);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}
