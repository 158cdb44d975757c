// What the admin pages share: their heading and sub-navigation, the scope check, small forms.

import { h, notice, replace } from "../dom.js";
import { can, session } from "../api.js";

/** The admin sub-pages this key may open: [href, label]. */
function sections() {
  const me = session.current;
  const links = [["#/admin/keys", "API keys"]];
  if (can("admin")) links.push(["#/admin/tenants", "Tenants"]);
  else links.push([`#/admin/tenants/${encodeURIComponent(me.tenant)}`, "Tenant and accounts"]);
  links.push(["#/admin/usage", "Usage"]);
  if (can("admin")) links.push(["#/admin/audit", "Audit log"]);
  return links;
}

/**
 * Draw an admin page: heading, sub-navigation (`current` is the active href), content.
 * Returns false (and says why) when the key lacks `scope`.
 */
export function frame(main, { title, current, scope = "manage" }, ...content) {
  if (!can(scope)) {
    replace(
      main,
      h("h1", {}, "Admin"),
      notice("error", `This page needs the ${scope} scope; your key (role ${session.current.role}) does not have it.`),
    );
    return false;
  }
  const links = sections().map(([href, label]) =>
    h("a", { href, class: "adm-tab", "aria-current": href === current ? "page" : null }, label),
  );
  replace(main, h("nav", { class: "adm-tabs", "aria-label": "Admin sections" }, links), h("h1", {}, title), content);
  return true;
}

/** A badge for a key's or an account's status. */
export function statusBadge(status) {
  const kind = { active: "ok", revoked: "bad", disabled: "bad", expired: "warn" }[status] || "";
  return h("span", { class: `badge ${kind}`, "data-status": status }, status);
}

export const LIMITS = [
  ["rate_limit_rps", "Requests per second", "float"],
  ["daily_quota", "Requests per day", "int"],
  ["tokens_per_minute", "LLM tokens per minute", "int"],
  ["tokens_per_day", "LLM tokens per day", "int"],
  ["max_jobs", "Training jobs at once", "int"],
  ["training_seconds_per_day", "Training CPU seconds per day", "float"],
];

/** A number input for each limit, filled from `record`; read() → {field: number|null}. */
export function limitInputs(record = {}) {
  const inputs = LIMITS.map(([name, , kind]) => {
    const input = h("input", { type: "number", name, min: 0, step: kind === "int" ? 1 : "any", placeholder: "unlimited" });
    if (record[name] !== null && record[name] !== undefined) input.value = String(record[name]);
    return input;
  });
  return {
    inputs,
    read() {
      const values = {};
      LIMITS.forEach(([name, label, kind], i) => {
        const text = inputs[i].value.trim();
        if (!text) {
          values[name] = null;
          return;
        }
        const value = Number(text);
        if (!Number.isFinite(value) || (kind === "int" && !Number.isInteger(value))) {
          throw new Error(`${label}: ${kind === "int" ? "a whole number" : "a number"}, or empty for unlimited`);
        }
        values[name] = value;
      });
      return values;
    },
  };
}

export function limitText(record, name) {
  const value = record[name];
  return value === null || value === undefined ? "unlimited" : String(value);
}
