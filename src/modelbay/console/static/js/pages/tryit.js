// Try it: call a tensor model with a V2 JSON request built from a form (numbers per input,
// or an image file for an image-shaped input), show its outputs, the top classes with the
// model's labels, and the same request as a curl command. Keys without `infer` see the
// form read-only.

import { h, field, notice, replace, number, busy } from "../dom.js";
import { api, can, path } from "../api.js";
import { checkbox } from "./models_push.js";
import {
  RANGES,
  curlCommand,
  defaultRange,
  imageLayout,
  imageTensor,
  isClassScores,
  paintPreview,
  parseShape,
  parseValues,
  resolveShape,
  shapeText,
  topClasses,
} from "./models_tryit.js";

export const nav = [];
export const routes = [{ pattern: "/try/:name", render }];

const SHOWN_VALUES = 200;

function inferPath(name, ref) {
  return ref ? path`/v2/models/${name}/versions/${ref}/infer` : path`/v2/models/${name}/infer`;
}

/** Zeros for one row of a fixed-size input, so the form starts with a valid request. */
function example(spec) {
  if (spec.datatype === "BYTES") return "hello";
  const dims = spec.shape.map((d) => (d === -1 ? 1 : d));
  const size = dims.reduce((a, b) => a * b, 1);
  if (size > 4096) return "";
  return new Array(size).fill(spec.datatype === "BOOL" ? "false" : "0").join(", ");
}

/** One input's controls: values, optional shape, and for an image input a file picker. */
function inputBlock(spec, metadata, readOnly, onChange) {
  const image = imageLayout(spec);
  const values = h("textarea", { name: `values-${spec.name}`, rows: 4, class: "mono", readOnly, value: example(spec) });
  const shapeInput = h("input", { type: "text", name: `shape-${spec.name}`, placeholder: "auto", autocomplete: "off", readOnly, class: "mono" });
  values.addEventListener("input", onChange);
  shapeInput.addEventListener("input", onChange);
  const what = spec.datatype === "BYTES" ? "one string a line" : "numbers, comma or space separated";
  const parts = [
    h("legend", {}, h("code", {}, spec.name), ` ${spec.datatype} ${shapeText(spec.shape)}`),
    field(`Values of ${spec.name}`, values, `Expected shape ${shapeText(spec.shape)} (-1: any size); ${what}.`),
    field(`Shape of ${spec.name}`, shapeInput, "Leave empty to work it out from the number of values"),
  ];
  const block = { spec, values, shapeInput, image: null };
  if (image && !readOnly) {
    const file = h("input", { type: "file", name: `image-${spec.name}`, accept: "image/*" });
    const range = defaultRange(spec, image, metadata);
    const rangeSelect = h(
      "select",
      { name: `range-${spec.name}` },
      Object.entries(RANGES).map(([key, [lo, hi]]) => h("option", { value: key }, `${lo} to ${hi}`)),
    );
    const known = Object.entries(RANGES).find(([, r]) => r[0] === range[0] && r[1] === range[1]);
    if (known) rangeSelect.value = known[0];
    else rangeSelect.append(h("option", { value: "metadata", selected: true }, `${range[0]} to ${range[1]} (from the version)`));
    const invert = h("input", { type: "checkbox", name: `invert-${spec.name}` });
    const preview = h("canvas", { class: "preview", width: image.width, height: image.height, "aria-label": `What is sent as ${spec.name}`, role: "img" });
    const out = h("div", { class: "out" });
    let bitmap = null;
    const redo = () => {
      if (!bitmap) return;
      const chosen = rangeSelect.value === "metadata" ? range : RANGES[rangeSelect.value];
      const tensor = imageTensor(bitmap, image, chosen, invert.checked);
      values.value = tensor.values.join(", ");
      shapeInput.value = shapeText(tensor.shape);
      paintPreview(preview, image, tensor.pixels, invert.checked);
      preview.hidden = false;
      onChange();
    };
    file.addEventListener("change", async () => {
      replace(out);
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      try {
        bitmap = await createImageBitmap(chosen);
      } catch {
        replace(out, notice("error", `${chosen.name} is not an image this browser can read.`));
        return;
      }
      // Digit datasets are light strokes on a dark ground: a light grayscale picture
      // (dark ink on paper) is inverted to match; the box can undo it.
      if (image.channels === 1) invert.checked = imageTensor(bitmap, image, [0, 1], false).brightness > 0.5;
      redo();
    });
    rangeSelect.addEventListener("change", redo);
    invert.addEventListener("change", redo);
    preview.hidden = true;
    parts.push(
      h(
        "div",
        { class: "image-input" },
        h(
          "div",
          { class: "row" },
          field(`Image file for ${spec.name}`, file, `Resized to ${image.width}×${image.height}${image.channels === 1 ? ", grayscale" : ", RGB"}`),
          field("Pixel values", rangeSelect, "The range the model was trained on"),
        ),
        checkbox(invert, "Invert (dark strokes on a light background)"),
        preview,
        out,
      ),
    );
    block.image = image;
  }
  block.element = h("fieldset", { class: "tensor-input" }, parts);
  return block;
}

function requestBody(blocks) {
  return {
    inputs: blocks.map(({ spec, values, shapeInput }) => {
      try {
        const data = parseValues(values.value, spec.datatype);
        const shape = resolveShape(spec.shape, data.length, parseShape(shapeInput.value));
        return { name: spec.name, datatype: spec.datatype, shape, data };
      } catch (err) {
        throw new Error(`${spec.name}: ${err.message}`);
      }
    }),
  };
}

function valuesText(output) {
  const data = output.data || [];
  const shown = data.slice(0, SHOWN_VALUES).map((v) => (typeof v === "number" ? number(v, 6) : String(v)));
  const more = data.length > SHOWN_VALUES ? ` … and ${data.length - SHOWN_VALUES} more` : "";
  return shown.join(", ") + more;
}

function outputBlock(output, model, labels) {
  const parts = [
    h("h3", {}, h("code", {}, output.name), h("span", { class: "hint" }, ` ${output.datatype} ${shapeText(output.shape)}`)),
    h("pre", { class: "values" }, valuesText(output)),
  ];
  if (isClassScores(output, labels, model.task) && output.data && output.data.length) {
    const rows = output.shape.length > 1 ? output.shape[0] : 1;
    parts.push(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "top-classes" },
          h("caption", {}, `Top classes of ${output.name}${rows > 1 ? " (first row)" : ""}`),
          h("thead", {}, h("tr", {}, ["Rank", "Class", "Label", "Score", "Probability"].map((t) => h("th", { scope: "col" }, t)))),
          h(
            "tbody",
            {},
            topClasses(output, labels).map((c, i) =>
              h(
                "tr",
                {},
                h("td", {}, String(i + 1)),
                h("td", {}, String(c.index)),
                h("td", { class: "label" }, c.label),
                h("td", {}, number(c.score, 4)),
                h("td", {}, `${(c.probability * 100).toFixed(1)}%`),
              ),
            ),
          ),
        ),
      ),
    );
  } else if (labels && output.data && output.data.length && Number.isInteger(output.data[0]) && output.shape.length <= 2) {
    const index = output.data[0];
    if (index >= 0 && index < labels.length) parts.push(h("p", { class: "predicted" }, `Predicted class ${index}: `, h("strong", {}, labels[index])));
  }
  return h("div", { class: "tensor-output", "data-output": output.name }, parts);
}

async function render(main, params, query) {
  const name = params.name;
  const ref = query.get("version") || "";
  const [model, { versions }] = await Promise.all([
    api("GET", path`/api/v1/models/${name}`),
    api("GET", path`/api/v1/models/${name}/versions`),
  ]);
  versions.sort((a, b) => b.version - a.version);
  if (!versions.length) {
    replace(main, h("h1", {}, `Try ${name}`), notice("info", "This model has no version yet."));
    return null;
  }
  // The signature of what the request will reach: the V2 metadata of the reference.
  const metadataPath = ref ? path`/v2/models/${name}/versions/${ref}` : path`/v2/models/${name}`;
  let signature;
  try {
    signature = await api("GET", metadataPath);
  } catch {
    signature = versions[0].signature;
  }
  const aliasVersion = model.aliases[ref];
  const record = versions.find((v) => String(v.version) === ref || v.version === aliasVersion) || versions[0];
  // Class names live on the model record (training and `PATCH` set them); a version's
  // metadata may carry its own.
  const labels = model.labels || (Array.isArray(record.metadata.labels) ? record.metadata.labels.map(String) : null);
  const allowed = can("infer");
  const controller = new AbortController();

  const versionSelect = h(
    "select",
    { name: "version" },
    h("option", { value: "" }, "Default (what the server serves)"),
    Object.keys(model.aliases).map((alias) => h("option", { value: alias }, `${alias} (version ${model.aliases[alias]})`)),
    versions.map((v) => h("option", { value: String(v.version) }, `version ${v.version}`)),
  );
  versionSelect.value = ref;
  versionSelect.addEventListener("change", () => {
    const q = versionSelect.value ? `?version=${encodeURIComponent(versionSelect.value)}` : "";
    location.hash = `#/try/${encodeURIComponent(name)}${q}`;
  });

  const curl = h("code", {});
  const curlOut = h("div", { class: "out" });
  const url = `${location.origin}${inferPath(name, ref)}`;
  const updateCurl = () => {
    try {
      curl.textContent = curlCommand(url, requestBody(blocks));
      replace(curlOut);
    } catch (err) {
      replace(curlOut, notice("info", `Not a valid request yet: ${err.message}`));
    }
  };
  const blocks = signature.inputs.map((spec) => inputBlock(spec, record.metadata, !allowed, updateCurl));
  const result = h(
    "section",
    { class: "result", "aria-label": "Result", "aria-live": "polite" },
    h("p", { class: "empty" }, allowed ? "Run the model to see its outputs." : "Running needs a key with the infer scope."),
  );
  const run = h("button", { type: "submit", class: "primary" }, "Run");
  const form = h("form", { class: "try-form", "aria-label": "Inputs" }, blocks.map((b) => b.element), allowed ? run : null);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try {
      body = requestBody(blocks);
    } catch (err) {
      replace(result, notice("error", err.message));
      return;
    }
    updateCurl();
    await busy(run, result, async () => {
      replace(result, h("p", { class: "loading" }, "Running…"));
      const started = performance.now();
      try {
        const answer = await api("POST", inferPath(name, ref), { json: body, signal: controller.signal });
        const ms = performance.now() - started;
        replace(
          result,
          h("h2", {}, "Outputs"),
          h("p", { class: "hint" }, `Version ${answer.model_version} answered in ${ms.toFixed(0)} ms.`),
          answer.outputs.map((output) => outputBlock(output, model, labels)),
        );
      } catch (err) {
        if (err.name !== "AbortError") throw err; // busy() shows it in `result`
      }
    });
  });

  const copy = h("button", { type: "button", class: "copy" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(curl.textContent);
      copy.textContent = "Copied";
    } catch {
      window.getSelection().selectAllChildren(curl);
      copy.textContent = "Selected: press Ctrl+C";
    }
  });

  const llm = record.format === "llm" || model.task === "chat";
  replace(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/models" }, "Models"), " / ", h("a", { href: `#/models/${encodeURIComponent(name)}` }, name), " /"),
    h("h1", {}, `Try ${name}`),
    allowed ? null : notice("info", "Your key has no infer scope: you can see what the model takes and the request to send, but not run it here."),
    llm ? notice("info", "This is a language model: chat with it in the ", h("a", { href: `#/playground?model=${encodeURIComponent(name)}` }, "Playground"), ".") : null,
    h("div", { class: "row" }, field("Version", versionSelect)),
    h("div", { class: "try-grid" }, h("section", { class: "card" }, form), h("section", { class: "card" }, result)),
    h("section", { class: "card curl", "aria-labelledby": "curl-h" }, h("h2", { id: "curl-h" }, "The same request with curl"), h("pre", { class: "curl-command" }, curl), copy, curlOut),
  );
  updateCurl();
  return () => controller.abort();
}
