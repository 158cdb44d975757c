// Training: datasets (training_datasets.js), the jobs list and the new-job form (here), and
// one job followed live (training_job.js).

import { h, field, notice, replace, busy } from "../dom.js";
import { api, can, path } from "../api.js";
import { renderDatasets, renderDataset } from "./training_datasets.js";
import { renderJob, jobsTable, ACTIVE } from "./training_job.js";

export const nav = [
  { href: "#/datasets", label: "Datasets", scope: "read" },
  { href: "#/jobs", label: "Training", scope: "read" },
];

export const routes = [
  { pattern: "/datasets", render: renderDatasets },
  { pattern: "/datasets/:name", render: renderDataset },
  { pattern: "/jobs", render: renderJobs },
  { pattern: "/jobs/new", render: renderNewJob },
  { pattern: "/jobs/:id", render: renderJob },
];

/** The model families POST /api/v1/jobs accepts (training/spec.py), with what each does. */
export const FAMILIES = [
  ["linear", "linear regression"],
  ["logistic", "logistic regression (classification)"],
  ["perceptron", "single-layer perceptron (classification)"],
  ["mlp", "multi-layer perceptron"],
  ["cnn", "convolutional network (images, or square feature counts)"],
  ["resnet", "small residual network (images)"],
  ["rnn", "recurrent network"],
  ["lstm", "LSTM"],
  ["gru", "GRU"],
];
const OPTIMIZERS = ["sgd", "adam", "adamw"];
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];
const TARGET_GUESSES = ["target", "label", "class", "species", "y"];
const REFRESH_MS = 3000;

async function renderJobs(main, params, query) {
  const state = STATES.includes(query.get("state")) ? query.get("state") : "";
  const filter = h(
    "select",
    { name: "state", onchange: () => (location.hash = filter.value ? `#/jobs?state=${filter.value}` : "#/jobs") },
    h("option", { value: "" }, "every state"),
    STATES.map((s) => h("option", { value: s }, s)),
  );
  filter.value = state;
  const list = h("div", { class: "tr-jobs" });
  const out = h("div");
  replace(
    main,
    h(
      "div",
      { class: "tr-head" },
      h("h1", {}, "Training jobs"),
      can("write") ? h("a", { class: "tr-button primary", href: "#/jobs/new" }, "New job") : null,
    ),
    h("div", { class: "row" }, field("Show jobs in", filter)),
    out,
    list,
  );
  let timer = null;
  let stopped = false;
  const load = async () => {
    timer = null;
    try {
      const { jobs } = await api("GET", `/api/v1/jobs${state ? `?state=${state}` : ""}`);
      if (stopped) return;
      replace(list, jobsTable(jobs));
      replace(out);
      // Refresh while something is queued or running, so states change in place.
      if (jobs.some((j) => ACTIVE.includes(j.state))) timer = setTimeout(load, REFRESH_MS);
    } catch (err) {
      if (!stopped) replace(out, notice("error", err.message));
    }
  };
  await load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** `epochs=5 hidden=64,32` (spaces, newlines or ';' between) → {epochs: 5, hidden: "64,32"}. */
export function parseParams(text) {
  const params = {};
  for (const item of text.split(/[\s;]+/)) {
    if (!item) continue;
    const eq = item.indexOf("=");
    if (eq <= 0) throw new Error(`"${item}" is not key=value`);
    const key = item.slice(0, eq);
    const value = item.slice(eq + 1);
    if (key in params) throw new Error(`${key} is given twice`);
    if (/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(value)) params[key] = Number(value);
    else if (value === "true" || value === "false") params[key] = value === "true";
    else params[key] = value;
  }
  return params;
}

function option(value, label) {
  return h("option", { value }, label || value);
}

async function renderNewJob(main, params, query) {
  if (!can("write")) {
    replace(main, h("h1", {}, "New training job"), notice("error", "Your key cannot start training jobs (it needs the write scope)."));
    return;
  }
  const here = location.hash;
  const { datasets } = await api("GET", "/api/v1/datasets");
  if (location.hash !== here) return; // the user went elsewhere meanwhile
  if (!datasets.length) {
    replace(
      main,
      h("h1", {}, "New training job"),
      notice("info", "There is no dataset to train on yet. ", h("a", { href: "#/datasets" }, "Upload one first.")),
    );
    return;
  }
  const dataset = h("select", { name: "dataset", required: true }, datasets.map((d) => option(d.name)));
  const wanted = query.get("dataset");
  if (wanted && datasets.some((d) => d.name === wanted)) dataset.value = wanted;
  const target = h("select", { name: "target", required: true });
  const family = h("select", { name: "family", required: true }, FAMILIES.map(([name, what]) => option(name, `${name}: ${what}`)));
  family.value = "mlp";
  const epochs = h("input", { type: "number", name: "epochs", min: 1, max: 10000, step: 1, placeholder: "family default" });
  const batch = h("input", { type: "text", name: "batch_size", inputMode: "numeric", placeholder: "family default", autocomplete: "off" });
  const lr = h("input", { type: "number", name: "lr", min: 0, max: 10, step: "any", placeholder: "family default" });
  const optimizer = h("select", { name: "optimizer" }, option("", "family default (adam)"), OPTIMIZERS.map((o) => option(o)));
  const extra = h("textarea", { name: "params", rows: 3, placeholder: "hidden=64,32 dropout=0.1 early_stopping=5", spellcheck: false });
  const model = h("input", { type: "text", name: "model", autocomplete: "off", placeholder: "DATASET-FAMILY" });
  const deploy = h("input", { type: "checkbox", name: "deploy" });
  const out = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Start training");

  const loadColumns = async () => {
    replace(target, option("", "loading…"));
    try {
      const record = await api("GET", path`/api/v1/datasets/${dataset.value}`);
      const schema = (record.latest && (record.latest.schema || record.latest.schema_)) || {};
      const columns = schema.kind === "images" ? [{ name: "label", dtype: "class" }] : schema.columns || [];
      replace(target, columns.map((c) => option(c.name, c.dtype ? `${c.name} (${c.dtype})` : c.name)));
      const names = columns.map((c) => c.name);
      const guess = TARGET_GUESSES.find((n) => names.includes(n)) || names[names.length - 1];
      if (guess) target.value = guess;
    } catch (err) {
      replace(target);
      replace(out, notice("error", err.message));
    }
  };
  dataset.addEventListener("change", loadColumns);

  const form = h(
    "form",
    { class: "card tr-card tr-job-form", "aria-labelledby": "new-job-title" },
    h("div", { class: "grid" }, field("Dataset", dataset), field("Target column", target, "The column to predict ('label' for images)."), field("Model family", family)),
    h("h2", {}, "Hyperparameters"),
    h(
      "div",
      { class: "grid" },
      field("Epochs", epochs),
      field("Batch size", batch, "A number, or 'full'."),
      field("Learning rate", lr),
      field("Optimizer", optimizer),
    ),
    field("Other parameters (key=value)", extra, "Separated by spaces or new lines, e.g. hidden=64,32 validation_split=0.2 seed=1. The fields above win."),
    h("div", { class: "grid" }, field("Register as model", model, "Default: the dataset's name and the family."), field("Deploy the new version when it is ready", deploy)),
    submit,
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let hyper;
    try {
      hyper = parseParams(extra.value);
    } catch (err) {
      replace(out, notice("error", `Other parameters: ${err.message}`));
      return;
    }
    if (epochs.value) hyper.epochs = Number(epochs.value);
    const size = batch.value.trim();
    if (size) hyper.batch_size = /^\d+$/.test(size) ? Number(size) : size;
    if (lr.value) hyper.lr = Number(lr.value);
    if (optimizer.value) hyper.optimizer = optimizer.value;
    const body = { dataset: dataset.value, family: family.value, target: target.value, params: hyper, deploy: deploy.checked };
    if (model.value.trim()) body.name = model.value.trim();
    await busy(submit, out, async () => {
      const job = await api("POST", "/api/v1/jobs", { json: body });
      location.hash = `#/jobs/${job.id}`;
    });
  });
  replace(main, h("h1", { id: "new-job-title" }, "New training job"), form);
  await loadColumns();
}
