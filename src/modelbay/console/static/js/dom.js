// Building the page: every text a user typed goes in as a text node, never as HTML.
// The console never parses strings as markup, so a name holding <script> shows as text.

/**
 * h("button", {class: "primary", onclick: fn, disabled: true}, "Save", child, [more])
 * Attributes: `class`, `for`, `data-*`, `aria-*`, any DOM property; `on<event>` adds a
 * listener; null, undefined and false are left out. Children: strings and numbers become
 * text nodes, arrays are flattened, null and false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "for") {
      el.htmlFor = value;
    } else if (name.startsWith("data-") || name.startsWith("aria-") || name === "role") {
      el.setAttribute(name, value === true ? "" : String(value));
    } else if (name in el) {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything inside `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

let fieldCount = 0;

/** A labelled form field: h-attributes for the control, and its label text. */
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++fieldCount}`;
  return h(
    "div",
    { class: "field" },
    h("label", { for: control.id }, label),
    control,
    hint ? h("small", { class: "hint" }, hint) : null,
  );
}

/** A table: `columns` is [[heading, row => cell content], ...]. */
export function table(columns, rows, { empty = "Nothing here yet.", caption } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map(([heading]) => h("th", { scope: "col" }, heading)))),
      h(
        "tbody",
        {},
        rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row))))),
      ),
    ),
  );
}

/** A message box: kind is "error", "ok" or "info". Errors are announced to screen readers. */
export function notice(kind, ...text) {
  return h("div", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function when(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

export function number(value, digits = 4) {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString() : value.toPrecision(digits);
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

/**
 * busy(button, out, async () => ...) → what the action returns, or undefined if it threw.
 * `button` is disabled while the action runs and enabled again after; a thrown error's
 * message is shown in `out` (without `out` the error is thrown on).
 */
export async function busy(button, out, action) {
  button.disabled = true;
  try {
    return await action();
  } catch (err) {
    if (!out) throw err;
    replace(out, notice("error", err.message));
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A button that runs an async action, disabled while it runs, its error shown in `out`. */
export function actionButton(label, action, { out, kind = "", confirmText } = {}) {
  const button = h("button", { type: "button", class: kind });
  button.textContent = label;
  button.addEventListener("click", async () => {
    if (confirmText && !window.confirm(confirmText)) return;
    await busy(button, out, action);
  });
  return button;
}
