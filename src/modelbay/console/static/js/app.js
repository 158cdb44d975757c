// The console's shell: sign-in, navigation and a hash router. Pages live in pages/*.js;
// each exports `nav` (links) and `routes` ([{pattern: "/models/:name", render}]), where
// render(main, params, query) draws into `main` and may return a cleanup function, called
// when the user leaves the page (stop timers, close streams, destroy charts).

import { h, field, notice, replace } from "./dom.js";
import { can, restore, session, signIn, signOut, signedOut } from "./api.js";
// Each page is loaded on its own: a page that fails to load is reported, the rest work.
const PAGE_NAMES = ["models", "deployments", "tryit", "playground", "training", "admin"];
const loaded = await Promise.allSettled(PAGE_NAMES.map((name) => import(`./pages/${name}.js`)));
const PAGES = loaded.filter((r) => r.status === "fulfilled").map((r) => r.value);
loaded
  .filter((r) => r.status === "rejected")
  .forEach((r) => console.error(`a console page failed to load: ${r.reason}`));
const routes = PAGES.flatMap((page) => page.routes || []).map((route) => ({
  ...route,
  regex: new RegExp(`^${route.pattern.replace(/:[a-z_]+/g, "([^/]+)")}$`),
  names: (route.pattern.match(/:[a-z_]+/g) || []).map((name) => name.slice(1)),
}));

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let cleanup = null;

function drawSignIn(message) {
  replace(nav);
  replace(who);
  const input = h("input", { type: "password", name: "api_key", autocomplete: "off", required: true, placeholder: "mb_..." });
  const out = h("div", { class: "out" });
  if (message) out.append(notice("info", message));
  const form = h(
    "form",
    { class: "sign-in card", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in to modelbay"),
    field("API key", input, "Your key is exchanged for a session; it is not stored in the browser."),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await signIn(input.value.trim());
      input.value = "";
      if (!location.hash || location.hash === "#/" || location.hash === "#/sign-in") {
        location.hash = "#/models"; // the hashchange draws it
      } else {
        draw();
      }
    } catch (err) {
      replace(out, notice("error", err.message));
    }
  });
  replace(main, form);
  input.focus();
}

function drawChrome() {
  const links = PAGES.flatMap((page) => page.nav || []).filter((link) => !link.scope || can(link.scope));
  replace(
    nav,
    links.map((link) =>
      h("a", { href: link.href, "aria-current": location.hash.startsWith(link.href) ? "page" : null }, link.label),
    ),
  );
  const me = session.current;
  replace(
    who,
    h("span", { class: "who", title: me.key_id }, `${me.account || me.key_name} · ${me.tenant} · ${me.role}`),
    h("button", { type: "button", id: "sign-out", onclick: async () => { await signOut(); drawSignIn("You are signed out."); } }, "Sign out"),
  );
}

let generation = 0;

async function draw() {
  const mine = ++generation; // a render that ends after a newer one started is dropped
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.error(err);
    }
    cleanup = null;
  }
  if (!session.current) {
    drawSignIn();
    return;
  }
  if (!location.hash || location.hash === "#/" || location.hash === "#/sign-in") {
    location.hash = "#/models"; // the hashchange draws it
    return;
  }
  drawChrome();
  const [route, query] = location.hash.slice(1).split("?");
  for (const candidate of routes) {
    const match = candidate.regex.exec(route);
    if (!match) continue;
    const params = Object.fromEntries(candidate.names.map((name, i) => [name, decodeURIComponent(match[i + 1])]));
    // Each render draws into its own element, shown only while it is the newest one.
    const target = h("div", { class: "page" }, h("p", { class: "loading" }, "Loading…"));
    replace(main, target);
    let done = null;
    try {
      done = await candidate.render(target, params, new URLSearchParams(query || ""));
    } catch (err) {
      if (mine === generation) replace(target, notice("error", err.message));
    }
    if (mine !== generation) {
      if (typeof done === "function") done(); // the user moved on meanwhile
      return;
    }
    cleanup = typeof done === "function" ? done : null;
    main.focus({ preventScroll: true });
    return;
  }
  replace(main, notice("error", `No page at ${route}.`));
}

signedOut.addEventListener("signedout", () => drawSignIn("Your session ended: sign in again."));
window.addEventListener("hashchange", draw);
restore()
  .then(draw)
  .catch((err) => replace(main, notice("error", err.message)));
