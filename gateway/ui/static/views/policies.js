// Policies: every category's policy in force, edited through PATCH. The API validates; its
// message shows beside the field it names. Beside each policy: its effective threshold
// and TTL at each model's current load (/admin/upstreams).

import { api, ApiError } from "../api.js";
import { el, heading, redo, say } from "../dom.js";
import { duration, percent } from "../format.js";

// [field, label, kind, unit]; kind: number, integer, boolean or enum (options from the
// API's own OpenAPI document).
const CACHING = [
  ["enabled", "Enabled", "boolean"],
  ["threshold", "Threshold", "number", "cosine"],
  ["threshold_floor", "Threshold floor at full load", "number", "cosine"],
  ["ttl_seconds", "TTL", "number", "s"],
  ["ttl_ceiling_seconds", "TTL ceiling at full load", "number", "s"],
  ["quota", "Quota", "integer", "entries per tenant"],
  ["eviction", "Eviction", "enum"],
  ["guard", "Guard (negation, numbers, entities)", "boolean"],
  ["max_temperature", "Cached up to temperature", "number"],
  ["semantic", "Paraphrases served", "boolean"],
  ["pool", "Answers kept per prompt", "integer", "answers"],
];
const EXAMPLES = [
  ["examples", "In-context examples", "boolean"],
  ["example_floor", "Example floor", "number", "cosine"],
  ["example_budget_tokens", "Example budget", "integer", "tokens"],
  ["example_k_max", "Examples at most", "integer", "examples"],
  ["route", "Route member", "enum"],
];
const FIELDS = [...CACHING, ...EXAMPLES];

function control(policy, [field, label, kind, unit], options) {
  const id = `${policy.name}-${field}`;
  const error = el("span", { class: "field-error", id: `${id}-error`, "aria-live": "polite" });
  let input;
  if (kind === "boolean") {
    input = el("input", { id, name: field, type: "checkbox", checked: Boolean(policy[field]) });
  } else if (kind === "enum") {
    input = el("select", { id, name: field },
      (options[field] || [policy[field]]).map((v) => el("option", { value: v, selected: v === policy[field] }, v)));
  } else {
    // Text, not type=number: the API, not the browser, decides what is valid.
    input = el("input", { id, name: field, type: "text", inputmode: "decimal", value: String(policy[field]), size: 10 });
  }
  input.setAttribute("aria-describedby", `${id}-error`);
  return el("div", { class: `field ${kind}` },
    el("label", { for: id }, label, unit ? el("span", { class: "unit" }, ` (${unit})`) : null),
    input, error);
}

function read(form, policy) {
  const changed = {};
  for (const [field, , kind] of FIELDS) {
    const input = form.elements[field];
    let value;
    if (kind === "boolean") value = input.checked;
    else if (kind === "enum") value = input.value;
    else {
      const text = input.value.trim();
      value = text !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
    }
    if (value !== policy[field]) changed[field] = value;
  }
  return changed;
}

function effective(policy, upstreams) {
  const rows = upstreams.data.filter((u) => u.effective[policy.name]);
  if (!rows.length) return null;
  return el("div", { class: "effective" },
    el("h4", {}, "In force at the current load"),
    el("ul", {}, rows.map((u) => {
      const now = u.effective[policy.name];
      return el("li", { dataset: { model: u.model } },
        `${u.model} (load ${percent(u.load)}): threshold `,
        el("span", { class: "effective-threshold" }, now.threshold.toFixed(4)),
        `, TTL ${duration(now.ttl_seconds)}`);
    })));
}

function card(policy, upstreams, options, reload) {
  const status = el("p", { class: "form-status", role: "status" });
  const form = el("form", { class: "policy", id: `policy-${policy.name}`, dataset: { category: policy.name } },
    el("div", { class: "policy-head" },
      el("h3", {}, policy.name),
      policy.overridden ? el("span", { class: "badge", title: "changed at run time" }, "changed") : null),
    policy.description ? el("p", { class: "muted" }, policy.description) : null,
    el("div", { class: "fields" }, CACHING.map((f) => control(policy, f, options))),
    el("details", {}, el("summary", {}, "In-context examples and routing"),
      el("div", { class: "fields" }, EXAMPLES.map((f) => control(policy, f, options)))),
    effective(policy, upstreams),
    el("div", { class: "actions" },
      el("button", { type: "submit", id: `${policy.name}-save` }, "Save"),
      policy.overridden
        ? el("button", { type: "button", class: "secondary", id: `${policy.name}-revert`, onclick: () => redo(() => revert(policy, reload)) }, "Back to the policy file")
        : null),
    status);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    redo(() => save(form, policy, status, reload));
  });
  return form;
}

async function save(form, policy, status, reload) {
  for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  const changed = read(form, policy);
  if (!Object.keys(changed).length) {
    status.textContent = "Nothing changed.";
    return;
  }
  try {
    await api(`/admin/policies/${encodeURIComponent(policy.name)}`, { method: "PATCH", body: changed });
  } catch (error) {
    status.textContent = `Not saved: ${error.message}`;
    const input = error instanceof ApiError && error.param && form.elements[error.param];
    if (input) {
      input.setAttribute("aria-invalid", "true");
      document.getElementById(`${policy.name}-${error.param}-error`).textContent = error.message;
      input.focus();
    }
    return;
  }
  await reload(`Saved ${policy.name}: in force for the next request.`, form.id);
}

async function revert(policy, reload) {
  await api(`/admin/policies/${encodeURIComponent(policy.name)}`, { method: "DELETE" });
  await reload(`${policy.name} is back to its policy file.`, `policy-${policy.name}`);
}

function enums(openapi) {
  const schema = openapi.paths["/admin/policies/{category}"].patch.requestBody.content["application/json"].schema;
  return Object.fromEntries(Object.entries(schema.properties).filter(([, s]) => s.enum).map(([k, s]) => [k, s.enum]));
}

export async function policies(root) {
  const [list, upstreams, openapi] = await Promise.all([
    api("/admin/policies"), api("/admin/upstreams"), api("/admin/openapi.json"),
  ]);
  const options = enums(openapi);
  const reload = async (message, formId) => {
    await policies(root);
    say(message);
    root.querySelector(`#${formId} [role=status]`).textContent = message;
  };
  root.replaceChildren(
    heading("Policies", el("button", { type: "button", onclick: () => redo(() => policies(root)) }, "Refresh")),
    el("p", { class: "muted" }, "A change is validated by the gateway, stored, and in force for the next request on every gateway of this store."),
    el("div", { class: "policies" }, list.data.map((p) => card(p, upstreams, options, reload))));
}
