// The push form: upload model files as a new version (multipart, as `modelbay push` does),
// with a progress bar fed by upload()'s callback. Without a fixed model name it also
// creates a model: the push route creates one that does not exist yet.

import { h, field, notice, replace, bytes, busy } from "../dom.js";
import { api, upload, path } from "../api.js";

const FORMATS = [
  ["", "Detect from the files"],
  ["torchscript", "TorchScript (.pt)"],
  ["torch_export", "torch.export (.pt2)"],
  ["onnx", "ONNX (.onnx)"],
  ["sklearn", "scikit-learn (.skops)"],
  ["llm", "LLM (GGUF, or a Hugging Face directory as an archive)"],
  ["sentence_transformers", "Sentence Transformers (an archive)"],
];

let checkCount = 0;

/** A checkbox with its label beside it. */
export function checkbox(input, label) {
  if (!input.id) input.id = `check${++checkCount}`;
  return h("div", { class: "check" }, input, h("label", { for: input.id }, label));
}

const NAME_PATTERN = "[A-Za-z0-9][A-Za-z0-9._\\-]*";

function jsonObject(text, what) {
  if (!text.trim()) return null;
  let value;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new Error(`${what} is not valid JSON: ${err.message}`);
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value;
}

/**
 * pushForm({model, onDone}) → a <form>. With `model` the files become its next version;
 * without, the form asks for a name (and optionally class labels, which create the model
 * first). onDone(versionRecord) runs after a successful push.
 */
export function pushForm({ model = null, onDone } = {}) {
  const nameInput = model
    ? null
    : h("input", { type: "text", name: "name", required: true, pattern: NAME_PATTERN, maxLength: 128, autocomplete: "off" });
  const files = h("input", { type: "file", name: "files", multiple: true, required: true });
  const format = h("select", { name: "format" }, FORMATS.map(([value, label]) => h("option", { value }, label)));
  const description = h("textarea", { name: "description", rows: 2, maxLength: 10000 });
  const archive = h("input", { type: "checkbox", name: "archive" });
  const signature = h("textarea", {
    name: "signature",
    rows: 3,
    class: "mono",
    placeholder: '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": [...]}',
  });
  const metrics = h("textarea", { name: "metrics", rows: 2, class: "mono", placeholder: '{"accuracy": 0.97}' });
  const metadata = h("textarea", { name: "metadata", rows: 2, class: "mono", placeholder: '{"input_range": [0, 16]}' });
  const labels = model ? null : h("input", { type: "text", name: "labels", autocomplete: "off" });
  const progress = h("progress", { max: 1, value: 0, class: "push-progress", "aria-label": "Upload progress" });
  const progressText = h("span", { class: "hint progress-text" }, "");
  const out = h("div", { class: "out" });
  const submit = h("button", { type: "submit", class: "primary" }, model ? "Push version" : "Push model");

  const form = h(
    "form",
    { class: "push-form", "aria-label": model ? `Push a new version of ${model}` : "Push a new model" },
    h(
      "div",
      { class: "row" },
      nameInput ? field("Model name", nameInput, "Letters, digits, '.', '_', '-'; a new name creates the model") : null,
      field("Model files", files, "One model file, or several files of one version"),
      field("Format", format),
    ),
    checkbox(archive, "The file is a .zip / .tar / .tar.gz archive of the version's files"),
    field("Description", description),
    labels ? field("Class labels", labels, "Comma-separated class names, by index (for a classifier); optional") : null,
    h(
      "details",
      { class: "more" },
      h("summary", {}, "Signature, metrics and metadata (optional)"),
      field("Signature (JSON)", signature, "Needed when the format cannot tell its inputs and outputs (TorchScript)"),
      field("Metrics (JSON)", metrics),
      field("Metadata (JSON)", metadata, "input_range [low, high] tells Try it the pixel values an image input takes"),
    ),
    h("div", { class: "row push-actions" }, submit, h("div", { class: "progress-box" }, progress, progressText)),
    out,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(out);
    const name = model || nameInput.value.trim();
    const chosen = Array.from(files.files || []);
    if (!name || !chosen.length) {
      replace(out, notice("error", "Choose a model name and at least one file."));
      return;
    }
    const data = new FormData();
    try {
      for (const file of chosen) data.append("files", file, file.name);
      if (format.value) data.append("format", format.value);
      if (description.value.trim()) data.append("description", description.value);
      if (archive.checked) data.append("archive", "true");
      const sig = jsonObject(signature.value, "The signature");
      if (sig) data.append("signature", JSON.stringify(sig));
      const met = jsonObject(metrics.value, "The metrics");
      if (met) data.append("metrics", JSON.stringify(met));
      const meta = jsonObject(metadata.value, "The metadata");
      if (meta) data.append("metadata", JSON.stringify(meta));
    } catch (err) {
      replace(out, notice("error", err.message));
      return;
    }
    const total = chosen.reduce((sum, file) => sum + file.size, 0);
    await busy(submit, out, async () => {
      progress.value = 0;
      form.dataset.state = "uploading";
      progressText.textContent = `0% of ${bytes(total)}`;
      try {
        const classes = labels ? labels.value.split(",").map((s) => s.trim()).filter(Boolean) : [];
        if (classes.length) {
          // Labels live on the model record: create it with them, then push its first version.
          await api("POST", "/api/v1/models", {
            json: { name, labels: classes, description: description.value },
          });
        }
        const record = await upload("POST", path`/api/v1/models/${name}/versions`, data, (fraction) => {
          progress.value = fraction;
          progressText.textContent = fraction >= 1 ? "Uploaded; checking the model…" : `${Math.round(fraction * 100)}% of ${bytes(total)}`;
        });
        progress.value = 1;
        form.dataset.state = "done";
        progressText.textContent = "Done";
        replace(out, notice("ok", `Pushed version ${record.version} of ${record.model} (${record.format}).`));
        form.reset();
        if (onDone) onDone(record);
      } catch (err) {
        form.dataset.state = "failed";
        progressText.textContent = "Failed";
        throw err; // busy() shows it in `out`
      }
    });
  });
  return form;
}
