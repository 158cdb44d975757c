// One training job, followed live: its state, loss and accuracy drawn as epochs finish
// (GET /api/v1/jobs/{id}/events?after=N, polled), its log, cancel, and deploy in one click.

import { h, notice, replace, table, when, actionButton } from "../dom.js";
import { api, can, path } from "../api.js";
import { lineChart } from "../charts.js";

export const ACTIVE = ["queued", "running"];
const FINISHED = ["succeeded", "failed", "cancelled"];
const POLL_MS = 1000;
const LOG_KEEP = 300;
const HIDDEN_METRICS = new Set(["test_indices", "test_predictions"]);

/** A metric for people: 4 significant digits, no exponent below a million, no trailing zeros. */
export function metric(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "" : String(value);
  if (Number.isInteger(value)) return value.toLocaleString();
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString();
  return String(Number(value.toPrecision(4)));
}

export function stateBadge(state) {
  const kind = { succeeded: "ok", failed: "bad", cancelled: "warn" }[state] || "";
  return h("span", { class: `badge tr-state ${kind}`, "data-state": state }, state);
}

/** The headline metric of a job: its test accuracy or r2, else its last epoch's loss. */
function headline(metrics) {
  if (!metrics) return "";
  for (const name of ["accuracy", "r2", "val_accuracy", "val_r2", "loss"]) {
    if (typeof metrics[name] === "number") return `${name} ${metric(metrics[name])}`;
  }
  return "";
}

export function jobsTable(jobs, empty = "No training jobs yet.") {
  return table(
    [
      ["Job", (j) => h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`)],
      ["State", (j) => stateBadge(j.state)],
      ["Kind", (j) => j.kind],
      ["Dataset", (j) => h("a", { href: `#/datasets/${encodeURIComponent(j.dataset)}` }, `${j.dataset} v${j.dataset_version}`)],
      ["Family", (j) => (j.spec && j.spec.family) || ""],
      ["Model", (j) => (j.model_version ? `${j.model} v${j.model_version}` : j.model)],
      ["Result", (j) => headline(j.metrics)],
      ["Created", (j) => when(j.created_at)],
    ],
    jobs,
    { empty },
  );
}

function describe(event) {
  const d = event.data || {};
  if (event.kind === "state") {
    const extra = ["reason", "error", "worker", "model_version", "resumed_from_epoch"]
      .filter((k) => d[k] !== undefined && d[k] !== null)
      .map((k) => `${k}: ${d[k]}`);
    return `state → ${d.state}${extra.length ? ` (${extra.join(", ")})` : ""}`;
  }
  if (event.kind === "metric") {
    const parts = Object.entries(d)
      .filter(([k]) => k !== "epoch")
      .map(([k, v]) => `${k} ${metric(v)}`);
    return `epoch ${d.epoch}: ${parts.join(", ")}`;
  }
  const rest = Object.entries(d).filter(([k]) => k !== "message");
  return `${d.message || ""}${rest.length ? ` ${JSON.stringify(Object.fromEntries(rest))}` : ""}`;
}

function summary(job) {
  const spec = job.spec || {};
  const rows = [
    ["Kind", job.kind],
    ["Dataset", h("a", { href: `#/datasets/${encodeURIComponent(job.dataset)}` }, `${job.dataset} v${job.dataset_version}`)],
    ["Family", spec.family || ""],
    ["Target", `${spec.target || ""}${spec.task ? ` (${spec.task})` : ""}`],
    ["Hyperparameters", ["epochs", "batch_size", "lr", "optimizer"].map((k) => `${k} ${spec[k] ?? "—"}`).join(" · ")],
    ["Model", job.model_version ? h("a", { href: `#/models/${encodeURIComponent(job.model)}` }, `${job.model} v${job.model_version}`) : job.model],
    ["Tenant", job.tenant],
    ["Created", when(job.created_at)],
    ["Started", when(job.started_at)],
    ["Finished", when(job.finished_at)],
    ["Attempts", String(job.attempts)],
    ["CPU seconds", metric(job.cpu_seconds)],
  ];
  return h("dl", { class: "tr-facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function metricsTable(metrics) {
  const entries = Object.entries(metrics || {}).filter(([k, v]) => !HIDDEN_METRICS.has(k) && typeof v !== "object");
  return table([["Metric", ([k]) => k], ["Value", ([, v]) => metric(v)]], entries, { empty: "No metrics yet." });
}

export async function renderJob(main, params) {
  const id = Number(params.id);
  if (!Number.isInteger(id) || id < 1) throw new Error(`No job ${params.id}.`);
  const here = location.hash;
  let job = await api("GET", `/api/v1/jobs/${id}`);
  if (location.hash !== here) return; // the user went elsewhere meanwhile
  const root = h("section", { class: "tr-job", "data-job": id });
  const badge = h("span", { class: "tr-badge-box" });
  const actions = h("div", { class: "row tr-actions" });
  const actionOut = h("div");
  const facts = h("div", { class: "card tr-card" });
  const charts = h("div", { class: "tr-charts" });
  const final = h("div", { class: "tr-final" });
  const trials = h("div");
  const log = h("ol", { class: "tr-log", role: "log", "aria-label": "Job events" });
  const pollOut = h("div");
  replace(
    root,
    h("div", { class: "tr-head" }, h("h1", {}, `Training job #${id}`), badge),
    actions,
    actionOut,
    pollOut,
    facts,
    h("h2", {}, "Learning curves"),
    charts,
    final,
    trials,
    h("h2", {}, "Events"),
    log,
  );
  replace(main, h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), root);

  const keep = 100000;
  const loss = lineChart(charts, { title: "Loss", x: "epoch", keep, series: [{ label: "loss" }, { label: "validation loss" }] });
  const regression = job.spec && job.spec.task === "regression";
  const scoreName = regression ? "val_r2" : "val_accuracy";
  const score = lineChart(charts, {
    title: regression ? "R²" : "Accuracy",
    x: "epoch",
    keep,
    series: [{ label: regression ? "validation R²" : "validation accuracy" }],
  });
  window.dispatchEvent(new Event("resize")); // both charts sized for their column of the grid
  const epochs = new Map(); // epoch -> metrics (a resumed job repeats epochs: last one wins)
  let lastEpoch = 0;

  const addMetric = (data) => {
    const epoch = Number(data.epoch);
    epochs.set(epoch, data);
    if (epoch > lastEpoch) {
      lastEpoch = epoch;
      loss.push(epoch, [data.loss, data.val_loss]);
      score.push(epoch, [data[scoreName]]);
    } else {
      const xs = [...epochs.keys()].sort((a, b) => a - b);
      loss.set(xs, [xs.map((e) => epochs.get(e).loss ?? null), xs.map((e) => epochs.get(e).val_loss ?? null)]);
      score.set(xs, [xs.map((e) => epochs.get(e)[scoreName] ?? null)]);
      lastEpoch = xs[xs.length - 1];
    }
  };

  const addEvent = (event) => {
    if (event.kind === "metric") addMetric(event.data || {});
    log.append(h("li", { class: `tr-event ${event.kind}`, "data-kind": event.kind }, h("time", { datetime: event.at }, when(event.at)), " ", describe(event)));
    while (log.childElementCount > LOG_KEEP) log.firstElementChild.remove();
  };

  const cancel = async () => {
    if (!window.confirm(`Cancel training job #${id}?`)) return;
    job = await api("POST", `/api/v1/jobs/${id}/cancel`);
    draw();
    replace(actionOut, notice("info", job.state === "cancelled" ? "The job is cancelled." : "Cancellation requested: the job stops within a batch."));
    poll();
  };

  const deploy = async () => {
    const version = String(job.model_version);
    let record;
    try {
      record = await api("POST", "/api/v1/deployments", { json: { model: job.model, version } });
    } catch (err) {
      if (err.status !== 409) throw err; // deployed already: serve this version now
      record = await api("PATCH", path`/api/v1/deployments/${job.model}`, { json: { version } });
    }
    replace(
      actionOut,
      notice("ok", `Deployed ${job.model} version ${version}. `, h("a", { href: `#/deployments/${encodeURIComponent(record.name)}` }, `Open deployment ${record.name}`)),
    );
  };

  const button = (label, action, kind) => actionButton(label, action, { out: actionOut, kind });

  function draw() {
    replace(badge, stateBadge(job.state), job.cancel_requested && ACTIVE.includes(job.state) ? h("span", { class: "badge warn" }, "cancelling") : null);
    const buttons = [];
    if (can("write") && ACTIVE.includes(job.state) && !job.cancel_requested) buttons.push(button("Cancel job", cancel, "danger"));
    if (can("write") && job.state === "succeeded" && job.model_version) buttons.push(button("Deploy", deploy, "primary"));
    if (job.model_version) buttons.push(h("a", { class: "tr-button", href: `#/models/${encodeURIComponent(job.model)}` }, "Open model"));
    replace(actions, buttons);
    replace(facts, summary(job), job.error ? notice("error", job.error) : null);
    const finished = FINISHED.includes(job.state);
    replace(final, finished ? [h("h2", {}, "Final metrics"), metricsTable(job.metrics)] : null);
  }
  draw();

  const drawTrials = async () => {
    if (job.kind !== "search") return;
    const { jobs } = await api("GET", `/api/v1/jobs?parent=${id}`);
    replace(trials, h("h2", {}, "Trials"), jobsTable(jobs, "No trials yet."));
  };

  let after = 0;
  let timer = null;
  let stopped = false;
  let finalPass = false;
  let polling = false;
  async function poll() {
    if (polling || stopped) return;
    polling = true;
    clearTimeout(timer);
    timer = null;
    let again = true;
    try {
      const { events } = await api("GET", `/api/v1/jobs/${id}/events?after=${after}`);
      if (stopped) return;
      for (const event of events) {
        after = Math.max(after, event.id);
        addEvent(event);
      }
      if (events.length) {
        job = await api("GET", `/api/v1/jobs/${id}`);
        draw();
        await drawTrials();
      }
      replace(pollOut);
      if (FINISHED.includes(job.state)) {
        // One more read after the end: events written just before it are in by then.
        again = !finalPass || events.length >= 1000;
        finalPass = true;
      }
    } catch (err) {
      replace(pollOut, notice("error", `Following the job: ${err.message}`));
      if ([401, 403, 404].includes(err.status)) again = false;
    } finally {
      polling = false;
    }
    if (again && !stopped && root.isConnected) timer = setTimeout(poll, finalPass ? 0 : POLL_MS);
  }
  await drawTrials();
  await poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
    loss.destroy();
    score.destroy();
  };
}
