// Deployments: the list (state, replicas, batching, queue; refreshed every few seconds)
// and the deploy form (write scope only). A deployment's own page, with its live charts
// and its actions, is in deployments_detail.js.

import { h, field, notice, replace, table, busy } from "../dom.js";
import { api, can, path } from "../api.js";
import { renderDeployment } from "./deployments_detail.js";

export const nav = [{ href: "#/deployments", label: "Deployments", scope: "read" }];

export const routes = [
  { pattern: "/deployments", render: renderList },
  { pattern: "/deployments/:name", render: renderDeployment },
];

const LIST_REFRESH_MS = 3000;

export function deploymentHref(name) {
  return `#/deployments/${encodeURIComponent(name)}`;
}

export function tryHref(model) {
  return `#/try/${encodeURIComponent(model)}`;
}

/** The state as a badge: ready (green), starting/pending (amber), error (red). */
export function stateBadge(status) {
  const state = (status && status.state) || "pending";
  const kind = state === "ready" ? "ok" : state === "error" ? "bad" : "warn";
  return h("span", { class: `badge ${kind}`, "data-state": state }, state);
}

/** Ready replicas over every version, and the replicas starting. */
export function replicaCounts(status) {
  const versions = (status && status.versions) || [];
  return {
    ready: versions.reduce((n, v) => n + (v.replicas || 0), 0),
    starting: versions.reduce((n, v) => n + (v.starting || 0), 0),
    queued: versions.reduce((n, v) => n + (v.queued || 0), 0),
  };
}

/** What a deployment serves: "latest", "3", "production → canary 4 (10%)". */
export function servesText(record) {
  const canary = record.canary_target ? ` · canary ${record.canary_target} (${record.canary_weight}%)` : "";
  return `${record.target}${canary}`;
}

function listTable(deployments) {
  return table(
    [
      ["Name", (d) => h("a", { href: deploymentHref(d.name), class: "deployment-link" }, d.name)],
      ["Model", (d) => h("a", { href: tryHref(d.model), title: `Try ${d.model}` }, d.model)],
      ["Serves", (d) => servesText(d)],
      ["State", (d) => stateBadge(d.status)],
      [
        "Replicas",
        (d) => {
          const { ready, starting } = replicaCounts(d.status);
          return h(
            "span",
            { class: "replicas", "data-ready": ready },
            `${ready} ready${starting ? `, ${starting} starting` : ""} (${d.config.min_replicas}–${d.config.max_replicas})`,
          );
        },
      ],
      ["Batching", (d) => `≤ ${d.config.max_batch_size} rows, ${d.config.max_queue_delay_ms} ms`],
      ["Queue", (d) => `${replicaCounts(d.status).queued} / ${d.config.queue_capacity}`],
    ],
    deployments,
    { empty: "No deployments yet.", caption: "Deployments" },
  );
}

function numberInput(name, value, { min, max, step = 1 } = {}) {
  return h("input", { type: "number", name, value: value ?? "", min, max, step, inputMode: "numeric" });
}

/** The deploy form: model, version or alias, replicas, batching, and an optional canary. */
function deployForm(models, preselect) {
  const model = h(
    "select",
    { name: "model", required: true },
    h("option", { value: "" }, "Choose a model…"),
    models.map((m) => h("option", { value: m.name, selected: m.name === preselect }, m.name)),
  );
  const refs = h("datalist", { id: "deploy-refs" });
  const version = h("input", { type: "text", name: "version", value: "latest", required: true, autocomplete: "off" });
  version.setAttribute("list", "deploy-refs");
  const minReplicas = numberInput("min_replicas", 1, { min: 0, max: 64 });
  const maxReplicas = numberInput("max_replicas", 1, { min: 1, max: 64 });
  const maxBatch = numberInput("max_batch_size", 16, { min: 1, max: 4096 });
  const maxDelay = numberInput("max_queue_delay_ms", 2, { min: 0, max: 10000, step: "any" });
  const canary = h("input", { type: "text", name: "canary_version", autocomplete: "off", placeholder: "none" });
  canary.setAttribute("list", "deploy-refs");
  const weight = numberInput("canary_weight", 0, { min: 0, max: 100 });
  const out = h("div", { class: "out", "aria-live": "polite" });

  const fillRefs = async () => {
    replace(refs);
    if (!model.value) return;
    try {
      const record = await api("GET", path`/api/v1/models/${model.value}`);
      const options = ["latest", ...Object.keys(record.aliases || {})];
      for (let v = record.latest_version || 0; v >= 1 && options.length < 50; v -= 1) options.push(String(v));
      replace(refs, options.map((value) => h("option", { value })));
    } catch {
      // the suggestions are a convenience; the server checks what is sent
    }
  };
  model.addEventListener("change", fillRefs);
  if (preselect) fillRefs();

  const form = h(
    "form",
    { class: "deploy-form", "aria-label": "Deploy a model" },
    h(
      "div",
      { class: "row" },
      field("Model", model),
      field("Version or alias", version, "a number, an alias (followed as it moves) or latest"),
      refs,
    ),
    h(
      "div",
      { class: "row" },
      field("Min replicas", minReplicas, "0 scales to zero when idle"),
      field("Max replicas", maxReplicas),
      field("Max batch size", maxBatch, "rows per batch"),
      field("Max queue delay (ms)", maxDelay, "how long a batch waits to fill"),
    ),
    h(
      "details",
      { class: "canary-options" },
      h("summary", {}, "Canary (optional)"),
      h("div", { class: "row" }, field("Canary version", canary), field("Canary weight (%)", weight, "share of requests the canary gets")),
    ),
    h("button", { type: "submit", class: "primary" }, "Deploy"),
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const body = {
      model: model.value,
      version: version.value.trim() || "latest",
      min_replicas: parseInt(minReplicas.value, 10),
      max_replicas: parseInt(maxReplicas.value, 10),
      max_batch_size: parseInt(maxBatch.value, 10),
      max_queue_delay_ms: Number(maxDelay.value),
    };
    for (const [key, value] of Object.entries(body)) if (Number.isNaN(value)) delete body[key];
    if (canary.value.trim()) {
      body.canary_version = canary.value.trim();
      body.canary_weight = parseInt(weight.value, 10) || 0;
    }
    replace(out, notice("info", `Deploying ${body.model}…`));
    await busy(button, out, async () => {
      const record = await api("POST", "/api/v1/deployments", { json: body });
      location.hash = deploymentHref(record.name);
    });
  });
  return form;
}

async function renderList(main, _params, query) {
  const { deployments } = await api("GET", "/api/v1/deployments");
  const listBox = h("div", { class: "deployment-list", "aria-live": "polite" }, listTable(deployments));
  const problem = h("div", { class: "out" });
  const parts = [h("h1", {}, "Deployments")];
  if (can("write")) {
    const { models } = await api("GET", "/api/v1/models");
    const preselect = query.get("model") || "";
    parts.push(
      h(
        "details",
        { class: "card deploy-new", open: Boolean(preselect) || !deployments.length },
        h("summary", {}, "Deploy a model"),
        deployForm(models, preselect),
      ),
    );
  }
  parts.push(problem, listBox);
  replace(main, parts);

  // The state changes as replicas start: read the list again every few seconds.
  let stopped = false;
  let timer = null;
  const refresh = async () => {
    try {
      const fresh = await api("GET", "/api/v1/deployments");
      if (stopped) return;
      replace(listBox, listTable(fresh.deployments));
      replace(problem);
    } catch (err) {
      if (stopped) return;
      replace(problem, notice("error", `Could not refresh: ${err.message}`));
    }
    if (!stopped) timer = setTimeout(refresh, LIST_REFRESH_MS);
  };
  timer = setTimeout(refresh, LIST_REFRESH_MS);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
