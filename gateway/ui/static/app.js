// The dashboard: log in once per tab, then one view per hash (#overview, #policies,
// #entries, #upstreams, #replay). Each view renders into #view from the admin API.

import { api, ApiError, token } from "./api.js";
import { say } from "./dom.js";
import { overview } from "./views/overview.js";
import { policies } from "./views/policies.js";
import { entries } from "./views/entries.js";
import { upstreams } from "./views/upstreams.js";
import { replay } from "./views/replay.js";

const VIEWS = { overview, policies, entries, upstreams, replay };
const login = document.getElementById("login");
const nav = document.getElementById("nav");
const logout = document.getElementById("logout");
const view = document.getElementById("view");

function showLogin(message = "") {
  token.clear();
  login.hidden = false;
  nav.hidden = true;
  logout.hidden = true;
  view.replaceChildren();
  document.getElementById("login-error").textContent = message;
  document.getElementById("token").focus();
}

async function show() {
  if (!token.get()) return showLogin();
  login.hidden = true;
  nav.hidden = false;
  logout.hidden = false;
  const name = location.hash.slice(1) in VIEWS ? location.hash.slice(1) : "overview";
  for (const link of nav.querySelectorAll("a")) {
    if (link.hash === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  const container = document.createElement("section");
  container.className = `view view-${name}`;
  container.setAttribute("aria-labelledby", "view-title");
  view.replaceChildren(container);
  try {
    await VIEWS[name](container);
    document.getElementById("view-title")?.focus();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) say(error.message, "error");
  }
}

login.addEventListener("submit", async (event) => {
  event.preventDefault();
  const value = document.getElementById("token").value.trim();
  if (!value) return;
  token.set(value);
  try {
    await api("/admin/upstreams"); // the cheapest authenticated call: is the token right?
  } catch (error) {
    return showLogin(error.message);
  }
  document.getElementById("token").value = "";
  await show();
});

logout.addEventListener("click", () => showLogin());
window.addEventListener("gateway:unauthorized", (event) => {
  if (!login.hidden) return; // the log-in form shows its own error
  showLogin(event.detail);
});
window.addEventListener("hashchange", show);
window.addEventListener("load", show);
