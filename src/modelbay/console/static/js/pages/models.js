// Models: the list (with a search over names) and the push form; a model's own page is in
// models_detail.js. The list endpoint has no search parameter, so the filter runs here,
// on rows built once: typing hides and shows rows, it never rebuilds the table.

import { h, field, notice, replace } from "../dom.js";
import { api, can } from "../api.js";
import { renderModel } from "./models_detail.js";
import { pushForm } from "./models_push.js";

export const nav = [{ href: "#/models", label: "Models", scope: "read" }];

export const routes = [
  { pattern: "/models", render: renderList },
  { pattern: "/models/:name", render: renderModel },
];

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A date as the list shows it (one formatter for every row: Intl objects are costly). */
export function shortDate(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : dateFormat.format(date);
}

/** The hash link of a model's page. */
export function modelHref(name) {
  return `#/models/${encodeURIComponent(name)}`;
}

/** Badges of a model's aliases: "production → 3". */
export function aliasBadges(aliases) {
  return Object.entries(aliases || {}).map(([alias, version]) =>
    h("span", { class: "badge alias" }, `${alias} → ${version}`),
  );
}

export function visibilityBadge(model) {
  if (model.visibility === "public") return h("span", { class: "badge ok" }, "public");
  if (model.shared_with && model.shared_with.length) return h("span", { class: "badge warn" }, "shared");
  return h("span", { class: "badge" }, "private");
}

function cell(tr, className, ...children) {
  const td = document.createElement("td");
  if (className) td.className = className;
  for (const child of children) {
    if (child === null || child === undefined || child === "") continue;
    td.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  tr.append(td);
}

function row(model) {
  // Plain DOM calls: 500 rows of this must appear well within a second.
  const tr = document.createElement("tr");
  tr.dataset.name = model.name;
  const link = document.createElement("a");
  link.href = modelHref(model.name);
  link.className = "model-link";
  link.textContent = model.name;
  cell(tr, "name", link);
  cell(tr, "description", model.description);
  cell(tr, "", model.task);
  cell(tr, "num", model.latest_version ?? "none");
  cell(tr, "", ...aliasBadges(model.aliases));
  cell(tr, "", visibilityBadge(model), " ", model.tenant);
  cell(tr, "when", shortDate(model.updated_at));
  return tr;
}

function modelTable(models) {
  const tbody = document.createElement("tbody");
  const fragment = document.createDocumentFragment();
  for (const model of models) fragment.append(row(model));
  tbody.append(fragment);
  const headings = ["Name", "Description", "Task", "Latest", "Aliases", "Access", "Updated"];
  const tableEl = h(
    "table",
    { class: "models", "aria-label": "Models" },
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
    tbody,
  );
  return { wrap: h("div", { class: "table-wrap" }, tableEl), tbody };
}

async function renderList(main, params, query, flash, pushCard) {
  const { models } = await api("GET", "/api/v1/models");
  const here = location.hash.split("?")[0];
  let push = pushCard || null;
  if (!push && can("write")) {
    push = h(
      "details",
      { class: "card push-new" },
      h("summary", {}, "Push a model"),
      pushForm({
        onDone: (record) => {
          if (location.hash.split("?")[0] !== here) return;
          const message = [`Pushed ${record.model} version ${record.version}: `, h("a", { href: modelHref(record.model) }, "open it")];
          renderList(main, params, new URLSearchParams(location.hash.split("?")[1] || ""), message, push).catch((err) =>
            replace(main, notice("error", err.message)),
          );
        },
      }),
    );
  }
  const search = h("input", {
    type: "search",
    name: "q",
    value: query.get("q") || "",
    autocomplete: "off",
    placeholder: "name contains…",
  });
  const count = h("p", { class: "hint model-count", role: "status", "aria-live": "polite" });
  const { wrap, tbody } = modelTable(models);
  const rows = Array.from(tbody.rows);
  const names = models.map((model) => model.name.toLowerCase());

  const filter = () => {
    const q = search.value.trim().toLowerCase();
    let shown = 0;
    for (let i = 0; i < rows.length; i += 1) {
      const match = !q || names[i].includes(q);
      rows[i].hidden = !match;
      if (match) shown += 1;
    }
    count.textContent = q
      ? `${shown} of ${models.length} models match “${search.value.trim()}”`
      : `${models.length} model${models.length === 1 ? "" : "s"}`;
    // Keep the search in the address (without a new history entry or a redraw).
    const hash = q ? `#/models?q=${encodeURIComponent(search.value.trim())}` : "#/models";
    if (location.hash !== hash) history.replaceState(null, "", hash);
  };
  search.addEventListener("input", filter);

  const parts = [
    h(
      "div",
      { class: "models-head" },
      h("h1", {}, "Models"),
      h("div", { class: "models-search" }, field("Search models by name", search)),
    ),
  ];
  if (flash) parts.push(notice("ok", flash));
  if (push) parts.push(push);
  parts.push(count);
  parts.push(
    models.length
      ? wrap
      : notice("info", "No models yet.", can("write") ? " Push one with the form above." : ""),
  );
  replace(main, parts);
  filter();
}
