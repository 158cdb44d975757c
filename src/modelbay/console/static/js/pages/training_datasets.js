// Datasets: the list, an upload form with a progress bar (POST /api/v1/datasets/{name}/versions,
// multipart: file, or a bundled sample; format; description), and one dataset's statistics.

import { h, field, notice, replace, table, when, number, bytes } from "../dom.js";
import { api, can, path, upload } from "../api.js";
import { jobsTable, metric } from "./training_job.js";

const FORMATS = ["csv", "parquet", "npz", "images", "cifar10"];
const SAMPLES = ["digits", "iris", "wine", "breast_cancer", "diabetes"];
const ACCEPT = ".csv,.parquet,.pq,.npz,.zip,.bin";
const PREVIEW_ROWS = 10;
const PREVIEW_BYTES = 256 * 1024;

const schemaOf = (version) => (version && (version.schema || version.schema_)) || {};

/** Rows of a CSV text (quotes handled); at most `max` rows; a cut-off last line is dropped. */
export function parseCsv(text, max, complete) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < max; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      row.push(cell);
      cell = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell);
      if (row.length > 1 || row[0] !== "") rows.push(row);
      row = [];
      cell = "";
    } else cell += c;
  }
  if (complete && rows.length < max && (cell || row.length)) rows.push([...row, cell]);
  return rows;
}

async function csvPreview(file) {
  if (!/\.csv$/i.test(file.name)) return null;
  const text = await file.slice(0, PREVIEW_BYTES).text();
  const rows = parseCsv(text, PREVIEW_ROWS + 1, file.size <= PREVIEW_BYTES);
  return rows.length ? { header: rows[0], rows: rows.slice(1) } : null;
}

/** The first rows the server recorded with a tabular version's schema. */
function storedPreview(schema) {
  if (!Array.isArray(schema.preview) || !Array.isArray(schema.columns)) return null;
  return { header: schema.columns.map((c) => c.name), rows: schema.preview };
}

function previewTable(preview) {
  if (!preview) return null;
  return h(
    "div",
    { class: "tr-preview", "data-preview-rows": preview.rows.length },
    h("h3", {}, `Preview (first ${preview.rows.length} rows)`),
    table(
      preview.header.map((name, i) => [name, (r) => r[i] ?? ""]),
      preview.rows,
      { empty: "The file has a header and no rows." },
    ),
  );
}

function topValues(col) {
  const top = Object.entries(col.top || {}).slice(0, 5);
  return top.map(([value, count]) => `${value} (${count})`).join(", ");
}

/** A dataset version's statistics: rows, and per column its type, range and frequent values. */
export function statistics(schema) {
  const facts = [
    ["Rows", number(schema.rows)],
    ["Kind", schema.kind || ""],
    ["Format", schema.format || ""],
  ];
  if (schema.image_shape) facts.push(["Image shape", schema.image_shape.join(" × ")]);
  const parts = [h("dl", { class: "tr-facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))];
  if (schema.columns && schema.columns.length) {
    parts.push(
      table(
        [
          ["Column", (c) => c.name],
          ["Type", (c) => c.dtype || ""],
          ["Numeric", (c) => (c.numeric ? "yes" : "no")],
          ["Missing", (c) => number(c.missing)],
          ["Unique", (c) => number(c.unique)],
          ["Min", (c) => metric(c.min)],
          ["Max", (c) => metric(c.max)],
          ["Mean", (c) => metric(c.mean)],
          ["Std", (c) => metric(c.std)],
          ["Most frequent", topValues],
        ],
        schema.columns,
        { caption: "Columns" },
      ),
    );
  }
  if (schema.class_balance) {
    parts.push(table([["Class", ([k]) => k], ["Images", ([, n]) => number(n)]], Object.entries(schema.class_balance), { caption: "Class balance" }));
  }
  return h("div", { class: "tr-stats", "data-rows": schema.rows ?? "" }, parts);
}

function uploadForm(onUploaded) {
  const name = h("input", { type: "text", name: "name", required: true, autocomplete: "off", maxLength: 128 });
  const file = h("input", { type: "file", name: "file", accept: ACCEPT });
  const sample = h("select", { name: "sample" }, h("option", { value: "" }, "none: upload the file"), SAMPLES.map((s) => h("option", { value: s }, s)));
  const format = h("select", { name: "format" }, h("option", { value: "" }, "from the file's name"), FORMATS.map((f) => h("option", { value: f }, f)));
  const description = h("input", { type: "text", name: "description", autocomplete: "off" });
  const bar = h("progress", { max: 1, value: 0, class: "tr-progress" });
  const percent = h("output", { class: "tr-percent", "aria-live": "polite" }, "");
  const out = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Upload");
  let preview = null;

  file.addEventListener("change", async () => {
    const chosen = file.files[0];
    if (!chosen) return;
    if (!name.value) name.value = chosen.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 128);
    preview = await csvPreview(chosen);
    replace(out, previewTable(preview));
  });

  const form = h(
    "form",
    { class: "card tr-card tr-upload", "aria-labelledby": "upload-title" },
    h("h2", { id: "upload-title" }, "Upload a dataset"),
    h(
      "div",
      { class: "grid" },
      field("File", file, "CSV, Parquet, .npz, a .zip of image folders, or CIFAR-10 .bin."),
      field("Dataset name", name, "Letters, digits, '.', '_' or '-'. An existing name gets a new version."),
      field("Format", format),
      field("Or a bundled sample", sample, "Instead of a file: a scikit-learn dataset."),
    ),
    field("Description", description),
    h("div", { class: "tr-progress-row" }, field("Upload progress", bar), percent),
    submit,
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    const body = new FormData();
    if (chosen && !sample.value) body.append("file", chosen);
    else if (sample.value) body.append("sample", sample.value);
    else {
      replace(out, notice("error", "Choose a file to upload (or a bundled sample)."));
      return;
    }
    if (format.value && !sample.value) body.append("format", format.value);
    if (description.value) body.append("description", description.value);
    const dataset = name.value.trim();
    bar.value = 0;
    percent.textContent = "0%";
    form.removeAttribute("data-done");
    submit.disabled = true;
    const shown = sample.value ? null : preview;
    try {
      const record = await upload("POST", path`/api/v1/datasets/${dataset}/versions`, body, (fraction) => {
        bar.value = fraction;
        percent.textContent = `${Math.round(fraction * 100)}%`;
      });
      bar.value = 1;
      percent.textContent = "100% — done";
      form.dataset.done = "true";
      replace(
        out,
        notice("ok", `Uploaded ${dataset} version ${record.version} (${bytes(record.size)}). `, h("a", { href: `#/datasets/${encodeURIComponent(dataset)}` }, "Open the dataset")),
        h("h3", {}, "Statistics"),
        statistics(schemaOf(record)),
        previewTable(storedPreview(schemaOf(record)) || shown),
      );
      onUploaded();
    } catch (err) {
      percent.textContent = "failed";
      replace(out, notice("error", err.message), previewTable(shown));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function datasetsTable(datasets) {
  return table(
    [
      ["Name", (d) => h("a", { href: `#/datasets/${encodeURIComponent(d.name)}` }, d.name)],
      ["Tenant", (d) => d.tenant],
      ["Versions", (d) => number(d.versions)],
      ["Rows", (d) => number(schemaOf(d.latest).rows)],
      ["Format", (d) => (d.latest ? d.latest.format : "")],
      ["Size", (d) => (d.latest ? bytes(d.latest.size) : "")],
      ["Updated", (d) => when(d.updated_at)],
    ],
    datasets,
    { empty: "No datasets yet." },
  );
}

export async function renderDatasets(main) {
  const list = h("div", { class: "tr-datasets" });
  const load = async () => replace(list, datasetsTable((await api("GET", "/api/v1/datasets")).datasets));
  const here = location.hash;
  await load();
  if (location.hash !== here) return; // the user went elsewhere meanwhile
  replace(
    main,
    h("h1", {}, "Datasets"),
    can("write") ? uploadForm(() => load().catch((err) => replace(list, notice("error", err.message)))) : null,
    h("h2", {}, "Datasets"),
    list,
  );
}

export async function renderDataset(main, params) {
  const name = params.name;
  const here = location.hash;
  const [record, { versions }, { jobs }] = await Promise.all([
    api("GET", path`/api/v1/datasets/${name}`),
    api("GET", path`/api/v1/datasets/${name}/versions`),
    api("GET", "/api/v1/jobs?limit=1000"),
  ]);
  if (location.hash !== here) return; // the user went elsewhere meanwhile
  const out = h("div");
  const actions = [];
  if (can("write")) {
    actions.push(h("a", { class: "tr-button primary", href: `#/jobs/new?dataset=${encodeURIComponent(name)}` }, "Train a model"));
    const remove = h("button", { type: "button", class: "danger" }, "Delete dataset");
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete dataset ${name} and all its versions?`)) return;
      try {
        await api("DELETE", path`/api/v1/datasets/${name}`);
        location.hash = "#/datasets";
      } catch (err) {
        replace(out, notice("error", err.message));
      }
    });
    actions.push(remove);
  }
  const latest = record.latest;
  replace(
    main,
    h("p", {}, h("a", { href: "#/datasets" }, "← All datasets")),
    h("h1", {}, `Dataset ${record.name}`),
    record.description ? h("p", { class: "tr-description" }, record.description) : null,
    h("div", { class: "row tr-actions" }, actions),
    out,
    latest
      ? h(
          "section",
          { class: "card tr-card" },
          h("h2", {}, `Statistics of version ${latest.version}`),
          h("p", { class: "hint" }, `${latest.filename} · ${bytes(latest.size)} · sha256 `, h("code", {}, latest.digest.slice(0, 16)), "…"),
          statistics(schemaOf(latest)),
          previewTable(storedPreview(schemaOf(latest))),
        )
      : notice("info", "This dataset has no version yet."),
    h("h2", {}, "Versions"),
    table(
      [
        ["Version", (v) => String(v.version)],
        ["File", (v) => v.filename],
        ["Format", (v) => v.format],
        ["Rows", (v) => number(schemaOf(v).rows)],
        ["Size", (v) => bytes(v.size)],
        ["Uploaded", (v) => when(v.created_at)],
      ],
      versions,
    ),
    h("h2", {}, "Jobs on this dataset"),
    jobsTable(jobs.filter((j) => j.dataset === name), "No job has trained on it yet."),
  );
}
