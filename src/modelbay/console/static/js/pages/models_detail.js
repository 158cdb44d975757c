// A model's page: description, labels, aliases (and moving one), sharing, pushing a new
// version, every version with its files (digests), signature, metrics and lineage, and
// deleting a version or the whole model.

import { h, field, notice, replace, table, when, number, bytes, actionButton } from "../dom.js";
import { api, can, path, session } from "../api.js";
import { pushForm } from "./models_push.js";

/** Key/value pairs as a definition list; objects show as JSON text. */
function pairs(object, { className = "pairs", render } = {}) {
  const entries = Object.entries(object || {});
  if (!entries.length) return null;
  return h(
    "dl",
    { class: className },
    entries.map(([key, value]) => [
      h("dt", {}, key),
      h("dd", {}, render ? render(key, value) : plain(value)),
    ]),
  );
}

function plain(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return number(value);
  if (typeof value === "object") return h("code", { class: "json" }, JSON.stringify(value));
  return String(value);
}

/** A lineage value; a training job's job and dataset link to their pages. */
function lineageValue(key, value, lineage) {
  if (key === "job" && Number.isInteger(value)) return h("a", { href: `#/jobs/${value}` }, `job ${value}`);
  if (key === "dataset" && typeof value === "string" && "dataset_version" in lineage) {
    return h("a", { href: `#/datasets/${encodeURIComponent(value)}` }, value);
  }
  return plain(value);
}

function shape(dims) {
  return `[${dims.join(", ")}]`;
}

function signatureTable(signature) {
  const rows = [
    ...signature.inputs.map((spec) => ({ kind: "input", ...spec })),
    ...signature.outputs.map((spec) => ({ kind: "output", ...spec })),
  ];
  return table(
    [
      ["", (r) => r.kind],
      ["Name", (r) => h("code", {}, r.name)],
      ["Datatype", (r) => r.datatype],
      ["Shape", (r) => h("code", {}, shape(r.shape))],
    ],
    rows,
    { empty: "No signature recorded.", caption: "Signature" },
  );
}

function filesTable(record, owner) {
  return table(
    [
      [
        "Path",
        (f) =>
          owner
            ? h("a", { href: path`/api/v1/models/${record.model}/versions/${String(record.version)}/files/` + f.path.split("/").map(encodeURIComponent).join("/"), download: f.path.split("/").pop() }, f.path)
            : f.path,
      ],
      ["Size", (f) => bytes(f.size)],
      ["SHA-256", (f) => h("code", { class: "digest" }, f.digest)],
    ],
    record.files,
    { caption: "Files" },
  );
}

/** Delete one version, after the browser's confirmation; the API's refusal (a deployment
 * serves it) shows in place. */
function deleteVersion(record, redraw) {
  const out = h("div", { class: "out" });
  const button = actionButton(
    `Delete version ${record.version}`,
    async () => {
      await api("DELETE", path`/api/v1/models/${record.model}/versions/${String(record.version)}`);
      redraw(`Deleted version ${record.version}.`);
    },
    {
      out,
      kind: "danger",
      confirmText: `Delete version ${record.version} of ${record.model}? Its files are removed; this cannot be undone.`,
    },
  );
  return h("div", { class: "version-actions" }, button, out);
}

function deleteModelCard(model, versions) {
  const out = h("div", { class: "out" });
  const count = `${versions.length} version${versions.length === 1 ? "" : "s"}`;
  const button = actionButton(
    "Delete model",
    async () => {
      await api("DELETE", path`/api/v1/models/${model.name}`);
      location.hash = "#/models";
    },
    { out, kind: "danger", confirmText: `Delete ${model.name} and its ${count}? A deployment of it stops at once. This cannot be undone.` },
  );
  return h(
    "section",
    { class: "card danger-zone", "aria-labelledby": "delete-h" },
    h("h2", { id: "delete-h" }, "Delete"),
    h("p", { class: "hint" }, `Removes the model, its ${count} and their files, and stops a deployment of it.`),
    button,
    out,
  );
}

function versionBlock(record, open, owner, redraw) {
  const lineage = record.source || {};
  return h(
    "details",
    { class: "card version", open, "data-version": record.version },
    h(
      "summary",
      {},
      h("strong", {}, `Version ${record.version}`),
      " ",
      record.aliases.map((alias) => h("span", { class: "badge alias" }, alias)),
      h("span", { class: "hint" }, ` ${record.format} · ${when(record.created_at)}`),
    ),
    pairs(
      {
        Format: record.format,
        Entrypoint: record.entrypoint,
        Created: when(record.created_at),
        "Created by": record.created_by || "",
      },
      { className: "pairs compact" },
    ),
    record.description ? h("p", { class: "description" }, record.description) : null,
    filesTable(record, owner),
    signatureTable(record.signature),
    Object.keys(record.metrics || {}).length ? [h("h3", {}, "Metrics"), pairs(record.metrics, { className: "pairs metrics" })] : null,
    Object.keys(lineage).length
      ? [
          h("h3", {}, "Lineage"),
          pairs(lineage, {
            className: "pairs lineage",
            render: (key, value) => lineageValue(key, value, lineage),
          }),
        ]
      : null,
    Object.keys(record.metadata || {}).length ? [h("h3", {}, "Metadata"), pairs(record.metadata)] : null,
    Object.keys(record.tags || {}).length ? [h("h3", {}, "Tags"), pairs(record.tags)] : null,
    can("write") ? deleteVersion(record, redraw) : null,
  );
}

function aliasCard(model, versions, redraw) {
  const aliases = Object.entries(model.aliases || {});
  const list = aliases.length
    ? h("ul", { class: "aliases" }, aliases.map(([alias, version]) => h("li", {}, h("code", {}, alias), ` → version ${version}`)))
    : h("p", { class: "empty" }, "No aliases.");
  const parts = [h("h2", {}, "Aliases"), list];
  if (can("write") && versions.length) {
    const NEW = "\u0000new";
    const aliasSelect = h(
      "select",
      { name: "alias" },
      aliases.map(([alias]) => h("option", { value: alias }, alias)),
      h("option", { value: NEW }, "New alias…"),
    );
    const newName = h("input", { type: "text", name: "new_alias", autocomplete: "off", pattern: "[A-Za-z][A-Za-z0-9._\\-]*" });
    const newField = field("New alias name", newName);
    const versionSelect = h(
      "select",
      { name: "version" },
      versions.map((v) => h("option", { value: String(v.version) }, `version ${v.version}${v.aliases.length ? ` (${v.aliases.join(", ")})` : ""}`)),
    );
    const syncVersion = () => {
      newField.hidden = aliasSelect.value !== NEW;
      const current = model.aliases[aliasSelect.value];
      if (current !== undefined) versionSelect.value = String(current);
    };
    aliasSelect.addEventListener("change", syncVersion);
    syncVersion();
    const out = h("div", { class: "out" });
    const form = h(
      "form",
      { class: "alias-form", "aria-label": "Move an alias" },
      h("div", { class: "row" }, field("Alias", aliasSelect), newField, field("Points to", versionSelect), h("button", { type: "submit", class: "primary" }, "Save alias")),
      out,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const alias = aliasSelect.value === NEW ? newName.value.trim() : aliasSelect.value;
      if (!alias) {
        replace(out, notice("error", "Name the new alias."));
        return;
      }
      try {
        const version = Number(versionSelect.value);
        await api("PUT", path`/api/v1/models/${model.name}/aliases/${alias}`, { json: { version } });
        redraw(`Alias ${alias} now points to version ${version}.`);
      } catch (err) {
        replace(out, notice("error", err.message));
      }
    });
    parts.push(form);
  }
  return withHeadingId(parts, "aliases-h");
}

function withHeadingId(parts, id) {
  parts[0].id = id;
  return h("section", { class: "card", "aria-labelledby": id }, parts);
}

function accessText(model) {
  const shared = model.shared_with.length ? `; shared with ${model.shared_with.join(", ")}` : "";
  return model.visibility === "public"
    ? `Public: every tenant may see it and infer with it${shared}.`
    : `Private to tenant ${model.tenant}${shared}.`;
}

function accessCard(model, redraw) {
  const parts = [h("h2", {}, "Access"), h("p", { class: "access-now" }, accessText(model))];
  const owner = can("admin") || (session.current && session.current.tenant === model.tenant);
  if (can("manage") && owner) {
    const visibility = h(
      "select",
      { name: "visibility" },
      h("option", { value: "private", selected: model.visibility !== "public" }, "Private"),
      h("option", { value: "public", selected: model.visibility === "public" }, "Public"),
    );
    const shared = h("input", { type: "text", name: "shared_with", value: model.shared_with.join(", "), autocomplete: "off" });
    const out = h("div", { class: "out" });
    const form = h(
      "form",
      { class: "access-form", "aria-label": "Share the model" },
      h(
        "div",
        { class: "row" },
        field("Visibility", visibility),
        field("Shared with tenants", shared, "Comma-separated tenant names"),
        h("button", { type: "submit", class: "primary" }, "Save access"),
      ),
      out,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const tenants = shared.value.split(",").map((s) => s.trim()).filter(Boolean);
      try {
        await api("PUT", path`/api/v1/models/${model.name}/access`, {
          json: { visibility: visibility.value, shared_with: tenants },
        });
        redraw(`Access saved: ${visibility.value}.`);
      } catch (err) {
        replace(out, notice("error", err.message));
      }
    });
    parts.push(form);
  }
  return withHeadingId(parts, "access-h");
}

function detailsForm(model, redraw) {
  const description = h("textarea", { name: "description", rows: 3, maxLength: 10000, value: model.description });
  const task = h("input", { type: "text", name: "task", value: model.task || "", autocomplete: "off", maxLength: 64 });
  const labels = h("textarea", { name: "labels", rows: 2, value: (model.labels || []).join(", ") });
  const out = h("div", { class: "out" });
  const form = h(
    "form",
    { class: "details-form" },
    field("Description", description),
    h("div", { class: "row" }, field("Task", task, "e.g. classification")),
    field("Class labels", labels, "Comma-separated, by class index; Try it shows them with the top classes"),
    h("button", { type: "submit", class: "primary" }, "Save details"),
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const names = labels.value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      await api("PATCH", path`/api/v1/models/${model.name}`, {
        json: { description: description.value, task: task.value.trim() || null, labels: names.length ? names : null },
      });
      redraw("Details saved.");
    } catch (err) {
      replace(out, notice("error", err.message));
    }
  });
  return h("details", { class: "edit-details" }, h("summary", {}, "Edit details"), form);
}

export async function renderModel(main, params, query, flash, pushSection) {
  const name = params.name;
  const [model, { versions }] = await Promise.all([
    api("GET", path`/api/v1/models/${name}`),
    api("GET", path`/api/v1/models/${name}/versions`),
  ]);
  versions.sort((a, b) => b.version - a.version);
  // After a change the page is drawn again; the push form is kept, with its progress.
  let push = pushSection || null;
  const here = location.hash;
  const redraw = (message) => {
    if (location.hash !== here) return; // the user has gone to another page meanwhile
    renderModel(main, params, query, message, push).catch((err) => replace(main, notice("error", err.message)));
  };
  if (!push && can("write")) {
    push = h(
      "section",
      { class: "card", "aria-labelledby": "push-h" },
      h("h2", { id: "push-h" }, "Push a new version"),
      pushForm({ model: model.name, onDone: (record) => redraw(`Pushed version ${record.version}.`) }),
    );
  }
  const owner = can("admin") || (session.current && session.current.tenant === model.tenant);
  const labels = model.labels || [];
  const tags = Object.entries(model.tags || {});

  const head = h(
    "div",
    { class: "model-head" },
    h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "Models"), " / "),
    h("h1", {}, model.name),
    h(
      "p",
      { class: "model-facts" },
      h("span", { class: `badge ${model.visibility === "public" ? "ok" : ""}` }, model.visibility),
      model.task ? h("span", { class: "badge" }, model.task) : null,
      `tenant ${model.tenant} · ${versions.length} version${versions.length === 1 ? "" : "s"} · updated ${when(model.updated_at)}`,
    ),
    versions.length
      ? h("p", { class: "model-actions" }, h("a", { class: "button", href: `#/try/${encodeURIComponent(model.name)}` }, "Try it"))
      : null,
  );
  const about = h(
    "section",
    { class: "card about", "aria-label": "About" },
    model.description
      ? h("p", { class: "description model-description" }, model.description)
      : h("p", { class: "empty" }, "No description."),
    labels.length
      ? h(
          "div",
          { class: "labels" },
          h("h3", {}, `Labels (${labels.length})`),
          h("ol", { class: "label-list" }, labels.map((label, i) => h("li", {}, h("span", { class: "index" }, String(i)), " ", h("span", { class: "label" }, label)))),
        )
      : null,
    tags.length ? [h("h3", {}, "Tags"), pairs(model.tags)] : null,
    can("write") ? detailsForm(model, redraw) : null,
  );

  const parts = [head];
  if (flash) parts.push(notice("ok", flash));
  parts.push(about);
  parts.push(h("div", { class: "grid" }, aliasCard(model, versions, redraw), accessCard(model, redraw)));
  if (push) parts.push(push);
  parts.push(h("h2", {}, "Versions"));
  parts.push(
    versions.length ? versions.map((v, i) => versionBlock(v, i === 0, owner, redraw)) : h("p", { class: "empty" }, "No versions yet."),
  );
  if (can("write")) parts.push(deleteModelCard(model, versions));
  replace(main, parts);
}
