// Admin (scope manage): API keys (admin_keys.js), usage and the audit log (admin_usage.js),
// and here tenants (admins: list, create, edit limits) and a tenant's accounts.

import { h, field, notice, replace, table, when, number, busy } from "../dom.js";
import { api, can, path, session } from "../api.js";
import { frame, statusBadge, limitInputs, limitText, LIMITS } from "./admin_frame.js";
import { renderKeys } from "./admin_keys.js";
import { renderUsage, renderAudit } from "./admin_usage.js";

export const nav = [{ href: "#/admin", label: "Admin", scope: "manage" }];

export const routes = [
  { pattern: "/admin", render: renderKeys },
  { pattern: "/admin/keys", render: renderKeys },
  { pattern: "/admin/tenants", render: renderTenants },
  { pattern: "/admin/tenants/:name", render: renderTenant },
  { pattern: "/admin/usage", render: renderUsage },
  { pattern: "/admin/audit", render: renderAudit },
];

function tenantForm(onCreated) {
  const name = h("input", { type: "text", name: "tenant", required: true, autocomplete: "off", maxLength: 64 });
  const limits = limitInputs();
  const out = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Create tenant");
  const form = h(
    "form",
    { class: "card tr-card", "aria-labelledby": "new-tenant-title" },
    h("h2", { id: "new-tenant-title" }, "New tenant"),
    field("Tenant name", name, "Lowercase letters, digits, '_' or '-'."),
    h("details", {}, h("summary", {}, "Limits (empty: unlimited)"), h("div", { class: "grid" }, LIMITS.map(([, label], i) => field(label, limits.inputs[i])))),
    submit,
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(submit, out, async () => {
      const body = { name: name.value.trim() };
      for (const [key, value] of Object.entries(limits.read())) if (value !== null) body[key] = value;
      const record = await api("POST", "/api/v1/tenants", { json: body });
      replace(out, notice("ok", `Created tenant ${record.name}.`));
      name.value = "";
      await onCreated();
    });
  });
  return form;
}

async function renderTenants(main) {
  const list = h("div");
  const load = async () => {
    const { tenants } = await api("GET", "/api/v1/tenants");
    replace(
      list,
      table(
        [
          ["Tenant", (t) => h("a", { href: `#/admin/tenants/${encodeURIComponent(t.name)}` }, t.name)],
          ...LIMITS.map(([key, label]) => [label, (t) => limitText(t, key)]),
          ["Created", (t) => when(t.created_at)],
        ],
        tenants,
        { empty: "No tenants." },
      ),
    );
  };
  if (!frame(main, { title: "Tenants", current: "#/admin/tenants", scope: "admin" }, tenantForm(load), h("h2", {}, "Tenants"), list)) return;
  await load();
}

function limitsCard(tenant) {
  if (!can("admin")) {
    return h(
      "section",
      { class: "card tr-card" },
      h("h2", {}, "Limits"),
      h("dl", { class: "tr-facts" }, LIMITS.map(([key, label]) => [h("dt", {}, label), h("dd", {}, limitText(tenant, key))])),
      h("p", { class: "hint" }, "Only an administrator changes a tenant's limits."),
    );
  }
  const limits = limitInputs(tenant);
  const out = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Save limits");
  const form = h(
    "form",
    { class: "card tr-card", "aria-labelledby": "limits-title" },
    h("h2", { id: "limits-title" }, "Limits"),
    h("p", { class: "hint" }, "Empty means unlimited."),
    h("div", { class: "grid" }, LIMITS.map(([, label], i) => field(label, limits.inputs[i]))),
    submit,
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(submit, out, async () => {
      const record = await api("PATCH", path`/api/v1/tenants/${tenant.name}`, { json: limits.read() });
      replace(out, notice("ok", `Saved the limits of ${record.name}.`));
    });
  });
  return form;
}

function accountForm(tenant, onCreated) {
  const name = h("input", { type: "text", name: "account", required: true, autocomplete: "off", maxLength: 128 });
  const kind = h("select", { name: "kind" }, h("option", { value: "user" }, "user (a person)"), h("option", { value: "service" }, "service"));
  const out = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Create account");
  const form = h(
    "form",
    { class: "card tr-card", "aria-labelledby": "new-account-title" },
    h("h2", { id: "new-account-title" }, "New account"),
    h("div", { class: "row" }, field("Account name", name, "An e-mail address or a service's name."), field("Kind", kind)),
    submit,
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(submit, out, async () => {
      const record = await api("POST", path`/api/v1/tenants/${tenant}/accounts`, { json: { name: name.value.trim(), kind: kind.value } });
      replace(out, notice("ok", `Created account ${record.name}.`));
      name.value = "";
      await onCreated();
    });
  });
  return form;
}

async function renderTenant(main, params) {
  const name = params.name;
  const current = can("admin") ? "#/admin/tenants" : `#/admin/tenants/${encodeURIComponent(session.current.tenant)}`;
  if (!can("manage")) return frame(main, { title: `Tenant ${name}`, current });
  const here = location.hash;
  const tenant = await api("GET", path`/api/v1/tenants/${name}`);
  if (location.hash !== here) return; // the user went elsewhere meanwhile
  const list = h("div");
  const out = h("div");
  const load = async () => {
    const { accounts } = await api("GET", path`/api/v1/tenants/${name}/accounts`);
    const remove = (account) => {
      if (account.status !== "active") return "";
      const button = h("button", { type: "button", class: "danger" }, "Delete");
      button.setAttribute("aria-label", `Delete account ${account.name}`);
      button.addEventListener("click", async () => {
        if (!window.confirm(`Delete account ${account.name}? It is disabled and all its keys are revoked.`)) return;
        // On success load() draws a new table: this button is gone, enabled or not.
        await busy(button, out, async () => {
          await api("DELETE", path`/api/v1/tenants/${name}/accounts/${account.name}`);
          replace(out, notice("ok", `Deleted account ${account.name}; its keys are revoked.`));
          await load();
        });
      });
      return button;
    };
    replace(
      list,
      table(
        [
          ["Account", (a) => a.name],
          ["Kind", (a) => a.kind],
          ["Status", (a) => statusBadge(a.status)],
          ["Active keys", (a) => number(a.active_keys)],
          ["Created", (a) => when(a.created_at)],
          ["Disabled", (a) => when(a.disabled_at)],
          ["Actions", remove],
        ],
        accounts,
        { empty: "No accounts yet." },
      ),
    );
  };
  frame(
    main,
    { title: `Tenant ${tenant.name}`, current },
    h("p", {}, h("a", { href: `#/admin/keys?tenant=${encodeURIComponent(tenant.name)}` }, "Its API keys"), " · ", h("a", { href: `#/admin/usage?tenant=${encodeURIComponent(tenant.name)}` }, "Its usage")),
    limitsCard(tenant),
    h("h2", {}, "Accounts"),
    out,
    list,
    accountForm(name, load),
  );
  await load();
}
