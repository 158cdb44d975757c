// A deployment's page: state and what runs (refreshed), its settings, live charts from
// the server's metrics, and (write scope only) scale, batching, version and canary,
// undeploy.

import { h, field, notice, replace, table, when, actionButton, busy } from "../dom.js";
import { api, can, path } from "../api.js";
import { liveStats } from "./deployments_stats.js";
import { replicaCounts, servesText, stateBadge, tryHref } from "./deployments.js";

const STATUS_REFRESH_MS = 2000;

function versionsTable(status) {
  return table(
    [
      ["Version", (v) => String(v.version)],
      ["Role", (v) => v.role],
      ["Ready", (v) => String(v.replicas)],
      ["Starting", (v) => String(v.starting)],
      ["Desired", (v) => String(v.desired)],
      ["Queued", (v) => String(v.queued)],
      ["Error", (v) => (v.error ? h("span", { class: "error-text" }, v.error) : v.short_of_server_limit ? "short of the server's replica limit" : "")],
    ],
    status.versions || [],
    { empty: "Nothing runs yet.", caption: "Running versions" },
  );
}

function statusBlock(record) {
  const { ready, starting } = replicaCounts(record.status);
  return h(
    "div",
    { class: "deployment-status" },
    h(
      "p",
      { class: "status-line" },
      stateBadge(record.status),
      h("span", { class: "replicas", "data-ready": ready }, `${ready} ready`),
      starting ? h("span", {}, `${starting} starting`) : null,
    ),
    record.status.error ? notice("error", record.status.error) : null,
    versionsTable(record.status),
  );
}

const SETTINGS = [
  ["Serves", (r) => servesText(r)],
  ["Replicas", (r) => `${r.config.min_replicas}–${r.config.max_replicas}`],
  ["Max batch size", (r) => `${r.config.max_batch_size} rows`],
  ["Max queue delay", (r) => `${r.config.max_queue_delay_ms} ms`],
  ["Queue capacity", (r) => `${r.config.queue_capacity} requests`],
  ["Request timeout", (r) => `${r.config.request_timeout_ms} ms`],
  ["Threads per replica", (r) => String(r.config.threads_per_replica)],
  ["Target in-flight per replica", (r) => String(r.config.target_inflight_per_replica)],
  ["Scale up / down delay", (r) => `${r.config.scale_up_delay_s} s / ${r.config.scale_down_delay_s} s`],
  ["Idle to zero", (r) => `${r.config.idle_to_zero_s} s`],
  ["KV cache", (r) => (r.config.kv_cache_mb ? `${r.config.kv_cache_mb} MiB` : null)],
  ["Max model length", (r) => (r.config.max_model_len ? `${r.config.max_model_len} tokens` : null)],
  ["Updated", (r) => when(r.updated_at)],
];

function settingsList(record) {
  return h(
    "dl",
    { class: "settings" },
    SETTINGS.map(([label, value]) => {
      const text = value(record);
      return text === null ? null : [h("dt", {}, label), h("dd", { "data-setting": label }, text)];
    }),
  );
}

function numberInput(name, value, attrs = {}) {
  return h("input", { type: "number", name, value: value ?? "", step: 1, ...attrs });
}

/**
 * A small form that PATCHes the deployment: `controls` are [label, input, hint]; `body`
 * turns them into the request; `done(record)` shows the answer.
 */
function patchForm(name, { title, button, controls, body, done }) {
  const out = h("div", { class: "out", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card action-form", "aria-label": title },
    h("h3", {}, title),
    h("div", { class: "row" }, controls.map(([label, input, hint]) => field(label, input, hint))),
    h("button", { type: "submit", class: "primary" }, button),
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = form.querySelector("button[type=submit]");
    await busy(submit, out, async () => {
      const record = await api("PATCH", path`/api/v1/deployments/${name}`, { json: body() });
      replace(out, notice("ok", done(record)));
      form.dispatchEvent(new CustomEvent("deployment-changed", { bubbles: true, detail: record }));
    });
  });
  return form;
}

function integer(input) {
  const value = parseInt(input.value, 10);
  return Number.isNaN(value) ? undefined : value;
}

function actions(record, onGone) {
  const name = record.name;
  const c = record.config;
  const minReplicas = numberInput("min_replicas", c.min_replicas, { min: 0, max: 64 });
  const maxReplicas = numberInput("max_replicas", c.max_replicas, { min: 1, max: 64 });
  const scale = patchForm(name, {
    title: "Scale",
    button: "Scale",
    controls: [
      ["Min replicas", minReplicas, "0 scales to zero when idle"],
      ["Max replicas", maxReplicas],
    ],
    body: () => ({ min_replicas: integer(minReplicas), max_replicas: integer(maxReplicas) }),
    done: (r) => `Replicas set to ${r.config.min_replicas}–${r.config.max_replicas}.`,
  });

  const maxBatch = numberInput("max_batch_size", c.max_batch_size, { min: 1, max: 4096 });
  const maxDelay = numberInput("max_queue_delay_ms", c.max_queue_delay_ms, { min: 0, max: 10000, step: "any" });
  const capacity = numberInput("queue_capacity", c.queue_capacity, { min: 1 });
  const batching = patchForm(name, {
    title: "Batching",
    button: "Save batching",
    controls: [
      ["Max batch size", maxBatch, "rows per batch"],
      ["Max queue delay (ms)", maxDelay],
      ["Queue capacity", capacity, "requests beyond it get 429"],
    ],
    body: () => {
      const delay = Number(maxDelay.value);
      return {
        max_batch_size: integer(maxBatch),
        max_queue_delay_ms: maxDelay.value === "" || Number.isNaN(delay) ? undefined : delay,
        queue_capacity: integer(capacity),
      };
    },
    done: (r) => `Batches of up to ${r.config.max_batch_size} rows, waiting up to ${r.config.max_queue_delay_ms} ms.`,
  });

  const version = h("input", { type: "text", name: "version", value: record.target, autocomplete: "off" });
  const canary = h("input", { type: "text", name: "canary_version", value: record.canary_target || "", autocomplete: "off", placeholder: "none" });
  const weight = numberInput("canary_weight", record.canary_weight, { min: 0, max: 100 });
  const versions = patchForm(name, {
    title: "Version and canary",
    button: "Save versions",
    controls: [
      ["Version or alias", version, "what the deployment serves"],
      ["Canary version", canary, "empty: no canary"],
      ["Canary weight (%)", weight, "share of requests the canary gets"],
    ],
    body: () => ({
      version: version.value.trim() || undefined,
      canary_version: canary.value.trim(), // "" removes the canary
      canary_weight: integer(weight) ?? 0,
    }),
    done: (r) => `Serves ${servesText(r)}.`,
  });

  const out = h("div", { class: "out" });
  const undeploy = actionButton(
    "Undeploy",
    async () => {
      await api("DELETE", path`/api/v1/deployments/${name}`);
      onGone();
    },
    { out, kind: "danger", confirmText: `Undeploy ${name}? Queued requests are served first; then its replicas stop.` },
  );
  return h(
    "section",
    { class: "deployment-actions", "aria-labelledby": "actions-title" },
    h("h2", { id: "actions-title" }, "Change"),
    h("div", { class: "grid" }, scale, batching, versions),
    h("div", { class: "card danger-zone" }, h("h3", {}, "Undeploy"), h("p", { class: "hint" }, "Stops serving this deployment."), undeploy, out),
  );
}

export async function renderDeployment(main, { name }) {
  let record = await api("GET", path`/api/v1/deployments/${name}`);
  const statusBox = h("div", { "aria-live": "polite" }, statusBlock(record));
  const settingsBox = h("div", {}, settingsList(record));
  const charts = h("section", { class: "deployment-charts", "aria-labelledby": "charts-title" }, h("h2", { id: "charts-title" }, "Live"));
  const problem = h("div", { class: "out" });
  let stopped = false;
  let timer = null;
  let stopStats = () => {};

  const gone = () => {
    if (stopped) return;
    stopped = true;
    clearTimeout(timer);
    stopStats();
    replace(main, h("h1", {}, name), notice("info", `Deployment ${name} is gone.`), h("p", {}, h("a", { href: "#/deployments" }, "All deployments")));
  };

  const page = h(
    "div",
    { class: "deployment-page" },
    h("p", { class: "crumbs" }, h("a", { href: "#/deployments" }, "Deployments"), " / "),
    h("h1", {}, name),
    h(
      "p",
      { class: "deployment-links" },
      "Model ",
      h("a", { href: `#/models/${encodeURIComponent(record.model)}` }, record.model),
      " · ",
      h("a", { href: tryHref(record.model), class: "try-link" }, "Try it"),
    ),
    problem,
    h("div", { class: "grid" }, h("div", { class: "card" }, h("h2", {}, "State"), statusBox), h("div", { class: "card" }, h("h2", {}, "Settings"), settingsBox)),
    charts,
    can("write")
      ? actions(record, () => {
          gone();
          location.hash = "#/deployments";
        })
      : null,
  );
  page.addEventListener("deployment-changed", (event) => {
    record = { ...event.detail };
    replace(settingsBox, settingsList(record));
    replace(statusBox, statusBlock(record));
  });
  replace(main, page);
  stopStats = liveStats(charts, name, { onGone: gone });

  const refresh = async () => {
    try {
      const fresh = await api("GET", path`/api/v1/deployments/${name}`);
      if (stopped) return;
      record = fresh;
      replace(statusBox, statusBlock(record));
      replace(settingsBox, settingsList(record));
      replace(problem);
    } catch (err) {
      if (stopped) return;
      if (err.status === 404) return gone();
      replace(problem, notice("error", `Could not refresh: ${err.message}`));
    }
    if (!stopped) timer = setTimeout(refresh, STATUS_REFRESH_MS);
  };
  timer = setTimeout(refresh, STATUS_REFRESH_MS);

  return () => {
    stopped = true;
    clearTimeout(timer);
    stopStats();
  };
}
