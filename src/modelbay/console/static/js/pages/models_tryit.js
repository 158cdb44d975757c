// Helpers of the Try it page that touch no page state: reading numbers and shapes, turning
// an image file into an input tensor, the top classes of an output, and the curl command.

const INTEGER_TYPES = new Set(["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]);
const FLOAT_TYPES = new Set(["FP16", "FP32", "FP64"]);

export function isNumeric(datatype) {
  return INTEGER_TYPES.has(datatype) || FLOAT_TYPES.has(datatype);
}

export function shapeText(dims) {
  return `[${dims.join(", ")}]`;
}

/** The values typed for one input: numbers (comma, space or newline separated; brackets of
 * pasted JSON are ignored), booleans, or for BYTES one string a line. Throws on a bad one. */
export function parseValues(text, datatype) {
  if (datatype === "BYTES") return text.split("\n").filter((line) => line.length > 0);
  const tokens = text.replace(/[[\]()]/g, " ").split(/[\s,;]+/).filter(Boolean);
  return tokens.map((token) => {
    if (datatype === "BOOL") {
      if (/^(true|1)$/i.test(token)) return true;
      if (/^(false|0)$/i.test(token)) return false;
      throw new Error(`'${token}' is not a boolean (true, false, 1 or 0)`);
    }
    const value = Number(token);
    if (!Number.isFinite(value)) throw new Error(`'${token}' is not a number`);
    if (INTEGER_TYPES.has(datatype) && !Number.isInteger(value)) {
      throw new Error(`'${token}' is not an integer (the input is ${datatype})`);
    }
    return value;
  });
}

/** A shape the user typed: "[1, 4]", "1, 4" or "1x4"; empty → null (work it out). */
export function parseShape(text) {
  const tokens = text.replace(/[[\]()]/g, " ").split(/[\s,x×]+/).filter(Boolean);
  if (!tokens.length) return null;
  return tokens.map((token) => {
    const n = Number(token);
    if (!Number.isInteger(n) || n < 0) throw new Error(`'${token}' is no dimension`);
    return n;
  });
}

/**
 * The shape to send `count` values as, for a signature shape with -1 for any size. One
 * variable dimension takes what the fixed ones leave; with several (e.g. [-1, -1]), the
 * last takes it and the others are 1 (one row). An explicit shape must hold `count` values.
 */
export function resolveShape(spec, count, explicit) {
  if (explicit) {
    const size = explicit.reduce((a, b) => a * b, 1);
    if (size !== count) throw new Error(`shape ${shapeText(explicit)} holds ${size} values, not ${count}`);
    return explicit;
  }
  const fixed = spec.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const variable = spec.map((d, i) => (d === -1 ? i : -1)).filter((i) => i >= 0);
  if (!variable.length) {
    if (count !== fixed) throw new Error(`the model expects exactly ${fixed} values (shape ${shapeText(spec)}), got ${count}`);
    return spec.slice();
  }
  if (fixed === 0 || count % fixed !== 0 || count === 0) {
    throw new Error(`${count} values do not make whole rows of ${fixed} (shape ${shapeText(spec)})`);
  }
  const last = variable[variable.length - 1];
  return spec.map((d, i) => (d !== -1 ? d : i === last ? count / fixed : 1));
}

/**
 * Whether an input takes an image, and how: channels-first [-1, C, H, W] (C 1 or 3),
 * channels-last [-1, H, W, C], a grayscale [-1, H, W], or a flattened square grayscale
 * [-1, H*W] (e.g. 64 values for scikit-learn's 8x8 digits). Returns {layout, channels,
 * height, width, shape} or null.
 */
export function imageLayout(spec) {
  if (!isNumeric(spec.datatype) || spec.datatype.startsWith("INT") || spec.shape[0] !== -1) return null;
  const dims = spec.shape.slice(1);
  if (dims.some((d) => d < 1)) return null;
  if (dims.length === 3 && (dims[0] === 1 || dims[0] === 3)) {
    return { layout: "chw", channels: dims[0], height: dims[1], width: dims[2], shape: [1, ...dims] };
  }
  if (dims.length === 3 && (dims[2] === 1 || dims[2] === 3)) {
    return { layout: "hwc", channels: dims[2], height: dims[0], width: dims[1], shape: [1, ...dims] };
  }
  if (dims.length === 2 && dims[0] > 1 && dims[1] > 1) {
    return { layout: "hw", channels: 1, height: dims[0], width: dims[1], shape: [1, ...dims] };
  }
  if (dims.length === 1 && dims[0] >= 16) {
    const side = Math.round(Math.sqrt(dims[0]));
    if (side * side === dims[0]) return { layout: "hw", channels: 1, height: side, width: side, shape: [1, dims[0]] };
  }
  return null;
}

export const RANGES = {
  "0-1": [0, 1],
  "0-16": [0, 16],
  "0-255": [0, 255],
  "-1-1": [-1, 1],
};

/**
 * The value range an image input expects: the version's metadata `input_range` [lo, hi]
 * when it has one; else 0..255 for UINT8, 0..16 for a flat 64-value input (scikit-learn's
 * 8x8 digits, whose pixels are 0..16), and 0..1 otherwise (what models trained on image
 * datasets here take: pixels / 255).
 */
export function defaultRange(spec, image, metadata) {
  const hint = metadata && metadata.input_range;
  if (Array.isArray(hint) && hint.length === 2 && hint.every(Number.isFinite)) return hint;
  if (spec.datatype === "UINT8") return RANGES["0-255"];
  if (image.layout === "hw" && spec.shape.length === 2 && spec.shape[1] === 64) return RANGES["0-16"];
  return RANGES["0-1"];
}

/** Draw `bitmap` into a width×height canvas (halving first, so a large image is not
 * aliased), on white: transparent pixels count as paper. */
function drawScaled(bitmap, width, height) {
  let source = bitmap;
  let w = bitmap.width;
  let hgt = bitmap.height;
  while (w / 2 >= width * 2 && hgt / 2 >= height * 2) {
    w = Math.round(w / 2);
    hgt = Math.round(hgt / 2);
    const step = document.createElement("canvas");
    step.width = w;
    step.height = hgt;
    const ctx = step.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, hgt);
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(source, 0, 0, w, hgt);
    source = step;
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height).data;
}

/**
 * An image as an input tensor: resized to the model's H×W (stretched), grayscale when it
 * takes one channel, inverted when asked (digit datasets are light strokes on dark), then
 * scaled from 0..1 to `range`. Returns {values, shape, pixels (0..1, per channel),
 * brightness (the mean, 0..1, before inverting)}.
 */
export function imageTensor(bitmap, image, range, invert) {
  const { width, height, channels, layout } = image;
  const rgba = drawScaled(bitmap, width, height);
  const plane = width * height;
  const pixels = new Float32Array(plane * channels);
  let sum = 0;
  for (let p = 0; p < plane; p += 1) {
    const r = rgba[p * 4] / 255;
    const g = rgba[p * 4 + 1] / 255;
    const b = rgba[p * 4 + 2] / 255;
    if (channels === 1) {
      const gray = 0.299 * r + 0.587 * g + 0.114 * b;
      pixels[p] = gray;
      sum += gray;
    } else {
      pixels[p] = r;
      pixels[plane + p] = g;
      pixels[2 * plane + p] = b;
      sum += (r + g + b) / 3;
    }
  }
  const [lo, hi] = range;
  const values = new Array(pixels.length);
  for (let c = 0; c < channels; c += 1) {
    for (let p = 0; p < plane; p += 1) {
      let v = pixels[c * plane + p];
      if (invert) v = 1 - v;
      const scaled = lo + v * (hi - lo);
      // channels-first (and grayscale) is plane by plane; channels-last interleaves.
      const at = layout === "hwc" ? p * channels + c : c * plane + p;
      values[at] = Math.round(scaled * 10000) / 10000;
    }
  }
  return { values, shape: image.shape, pixels, brightness: sum / plane };
}

/** Paint what is sent (0..1 per channel, inverted as sent) into `canvas`, one cell a pixel. */
export function paintPreview(canvas, image, pixels, invert) {
  const { width, height, channels } = image;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(width, height);
  const plane = width * height;
  for (let p = 0; p < plane; p += 1) {
    for (let c = 0; c < 3; c += 1) {
      let v = pixels[(channels === 1 ? 0 : c) * plane + p];
      if (invert) v = 1 - v;
      data.data[p * 4 + c] = Math.round(v * 255);
    }
    data.data[p * 4 + 3] = 255;
  }
  ctx.putImageData(data, 0, 0);
}

/** Whether an output is a score per class worth ranking: numeric, a class axis of 2 or more,
 * and labels of that length, or a classifier's task, or a name such as probabilities/logits. */
export function isClassScores(output, labels, task) {
  if (!isNumeric(output.datatype) || !output.shape.length) return false;
  const k = output.shape[output.shape.length - 1];
  if (k < 2) return false;
  if (labels && labels.length === k) return true;
  return task === "classification" || /prob|logit|score|softmax/i.test(output.name);
}

/** The top `n` classes of the first row: [{index, label, score, probability}]. Scores that
 * are not already probabilities (outside 0..1, or not summing to 1) get a softmax too. */
export function topClasses(output, labels, n = 5) {
  const k = output.shape[output.shape.length - 1];
  const row = output.data.slice(0, k).map(Number);
  const sum = row.reduce((a, b) => a + b, 0);
  const probabilities = row.every((v) => v >= 0 && v <= 1) && Math.abs(sum - 1) < 1e-3;
  let softmax = null;
  if (!probabilities) {
    const max = Math.max(...row);
    const exps = row.map((v) => Math.exp(v - max));
    const total = exps.reduce((a, b) => a + b, 0);
    softmax = exps.map((v) => v / total);
  }
  return row
    .map((score, index) => ({
      index,
      label: labels && index < labels.length ? labels[index] : "",
      score,
      probability: softmax ? softmax[index] : score,
    }))
    .sort((a, b) => b.score - a.score || a.index - b.index)
    .slice(0, n);
}

function shellQuote(text) {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The same V2 request as a curl command; the key is the shell's $MODELBAY_API_KEY. */
export function curlCommand(url, body) {
  return [
    `curl -X POST ${shellQuote(url)} \\`,
    `  -H "Authorization: Bearer $MODELBAY_API_KEY" \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -d ${shellQuote(JSON.stringify(body))}`,
  ].join("\n");
}
