// API keys: the list (a tenant's; admins: every tenant's, or one), a new key whose secret is
// shown once with a copy button, and revoking with a confirmation.

import { h, field, notice, replace, table, when, busy } from "../dom.js";
import { api, can, path, session } from "../api.js";
import { frame, statusBadge } from "./admin_frame.js";

const ROLES = ["viewer", "consumer", "developer", "owner", "admin"];

/** The box that shows a new key's secret, this once. */
function secretBox(created) {
  const value = h("code", { class: "adm-secret-value", "data-secret": "" }, created.secret);
  const copied = h("span", { class: "hint", "aria-live": "polite" });
  const copy = h("button", { type: "button", class: "primary" }, "Copy key");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(created.secret);
      copied.textContent = "Copied.";
    } catch {
      // No clipboard (an insecure origin, a denied permission): select it to copy by hand.
      const range = document.createRange();
      range.selectNodeContents(value);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      copied.textContent = "Selected: press Ctrl+C (⌘C) to copy.";
    }
  });
  const box = h(
    "div",
    { class: "secret adm-secret", role: "region", "aria-label": "New API key" },
    h("p", {}, h("strong", {}, `Key "${created.name}" created (${created.key_id}, role ${created.role}, tenant ${created.tenant}).`)),
    h("p", { class: "adm-warning" }, "Copy it now: this secret will not be shown again. The server keeps only a hash of it."),
    value,
    h("div", { class: "row" }, copy, copied),
  );
  const done = h("button", { type: "button" }, "I have copied it");
  done.addEventListener("click", () => box.remove());
  box.append(done);
  return box;
}

async function keyForm(tenants, onCreated) {
  const me = session.current;
  const name = h("input", { type: "text", name: "key_name", required: true, autocomplete: "off", maxLength: 128 });
  const roles = can("admin") ? ROLES : ROLES.filter((r) => r !== "admin");
  const role = h("select", { name: "role" }, roles.map((r) => h("option", { value: r }, r)));
  role.value = "developer";
  const tenant = h("select", { name: "tenant" }, tenants.map((t) => h("option", { value: t }, t)));
  tenant.value = me.tenant;
  const account = h("select", { name: "account" });
  const expires = h("input", { type: "text", name: "expires_in", autocomplete: "off", placeholder: "never", maxLength: 32 });
  const out = h("div");
  const secret = h("div");
  const submit = h("button", { type: "submit", class: "primary" }, "Create key");
  const loadAccounts = async () => {
    replace(account, h("option", { value: "" }, "none"));
    try {
      const { accounts } = await api("GET", path`/api/v1/tenants/${tenant.value}/accounts`);
      account.append(...accounts.filter((a) => a.status === "active").map((a) => h("option", { value: a.name }, `${a.name} (${a.kind})`)));
    } catch (err) {
      replace(out, notice("error", `Accounts of ${tenant.value}: ${err.message}`));
    }
  };
  tenant.addEventListener("change", loadAccounts);
  const form = h(
    "form",
    { class: "card tr-card", "aria-labelledby": "new-key-title" },
    h("h2", { id: "new-key-title" }, "New API key"),
    h(
      "div",
      { class: "grid" },
      field("Key name", name, "What the key is for."),
      field("Role", role),
      can("admin") ? field("Tenant", tenant) : field("Tenant", h("input", { type: "text", value: me.tenant, readOnly: true, name: "tenant_shown" })),
      field("Account", account, "The tenant's user or service account the key acts for."),
      field("Expires in", expires, "e.g. 30m, 12h, 90d, 4w; empty: never."),
    ),
    submit,
    out,
    secret,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { name: name.value, role: role.value, tenant: can("admin") ? tenant.value : me.tenant };
    if (account.value) body.account = account.value;
    if (expires.value.trim()) body.expires_in = expires.value.trim();
    replace(out);
    await busy(submit, out, async () => {
      const created = await api("POST", "/api/v1/keys", { json: body });
      replace(secret, secretBox(created));
      name.value = "";
      await onCreated();
    });
  });
  await loadAccounts();
  return form;
}

export async function renderKeys(main, params, query) {
  const me = session.current;
  const here = location.hash;
  if (!frame(main, { title: "API keys", current: "#/admin/keys" })) return;
  const tenants = can("admin") ? (await api("GET", "/api/v1/tenants")).tenants.map((t) => t.name) : [me.tenant];
  const chosen = can("admin") && tenants.includes(query.get("tenant")) ? query.get("tenant") : "";
  const list = h("div", { class: "adm-keys" });
  const out = h("div");
  const load = async () => {
    const { keys } = await api("GET", `/api/v1/keys${chosen ? `?tenant=${encodeURIComponent(chosen)}` : ""}`);
    const revoke = (key) => {
      if (key.status !== "active" || !can("manage") || (key.role === "admin" && !can("admin"))) return "";
      const button = h("button", { type: "button", class: "danger" }, "Revoke");
      button.setAttribute("aria-label", `Revoke key ${key.name} (${key.key_id})`);
      button.addEventListener("click", async () => {
        const mine = key.key_id === me.key_id ? " It is the key you are signed in with: you will be signed out." : "";
        if (!window.confirm(`Revoke key "${key.name}" (${key.key_id})? Requests with it are refused at once.${mine}`)) return;
        // On success load() draws a new table: this button is gone, enabled or not.
        await busy(button, out, async () => {
          await api("DELETE", path`/api/v1/keys/${key.key_id}`);
          replace(out, notice("ok", `Revoked key ${key.key_id}.`));
          await load();
        });
      });
      return button;
    };
    replace(
      list,
      table(
        [
          ["Name", (k) => k.name],
          ["Key id", (k) => h("code", {}, k.key_id)],
          ["Tenant", (k) => k.tenant],
          ["Account", (k) => k.account || ""],
          ["Role", (k) => k.role],
          ["Status", (k) => statusBadge(k.status)],
          ["Created", (k) => when(k.created_at)],
          ["Expires", (k) => when(k.expires_at) || "never"],
          ["Actions", revoke],
        ],
        keys,
        { empty: "No keys." },
      ),
    );
  };
  const filter = can("admin")
    ? h("select", { name: "tenant_filter" }, h("option", { value: "" }, "every tenant"), tenants.map((t) => h("option", { value: t }, t)))
    : null;
  if (filter) {
    filter.value = chosen;
    filter.addEventListener("change", () => (location.hash = filter.value ? `#/admin/keys?tenant=${encodeURIComponent(filter.value)}` : "#/admin/keys"));
  }
  const form = await keyForm(tenants, load);
  if (location.hash !== here) return; // the user went elsewhere meanwhile
  frame(
    main,
    { title: "API keys", current: "#/admin/keys" },
    form,
    h("h2", {}, can("admin") ? "Keys" : `Keys of ${me.tenant}`),
    filter ? h("div", { class: "row" }, field("Show keys of", filter)) : null,
    out,
    list,
  );
  await load();
}
