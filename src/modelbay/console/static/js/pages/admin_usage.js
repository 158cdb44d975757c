// Usage per day, per key and per tenant (GET /api/v1/usage), and the audit log with the
// verification of its hash chain (GET /api/v1/audit, /api/v1/audit/verify; admins).

import { h, field, notice, replace, table, when, number } from "../dom.js";
import { api, can, session } from "../api.js";
import { lineChart } from "../charts.js";
import { frame } from "./admin_frame.js";

const DAY_S = 86400;
const MAX_DAYS = 731;
const COUNTS = ["requests", "prompt_tokens", "completion_tokens", "compute_seconds", "training_seconds"];

const isoDay = (date) => date.toISOString().slice(0, 10);
const daySeconds = (day) => Date.parse(`${day}T00:00:00Z`) / 1000;

function sum(rows, keyOf) {
  const totals = new Map();
  for (const row of rows) {
    const key = keyOf(row);
    const total = totals.get(key) || { key, tenant: row.tenant, key_id: row.key_id, ...Object.fromEntries(COUNTS.map((c) => [c, 0])) };
    for (const c of COUNTS) total[c] += row[c] || 0;
    totals.set(key, total);
  }
  return [...totals.values()];
}

const countColumns = [
  ["Requests", (r) => number(r.requests)],
  ["Prompt tokens", (r) => number(r.prompt_tokens)],
  ["Completion tokens", (r) => number(r.completion_tokens)],
  ["Compute s", (r) => number(r.compute_seconds, 4)],
  ["Training s", (r) => number(r.training_seconds, 4)],
];

export async function renderUsage(main, params, query) {
  const admin = can("admin");
  const here = location.hash;
  if (!frame(main, { title: "Usage", current: "#/admin/usage" })) return;
  const [tenantList, keyList] = await Promise.all([
    admin ? api("GET", "/api/v1/tenants") : Promise.resolve({ tenants: [{ name: session.current.tenant }] }),
    api("GET", "/api/v1/keys"),
  ]);
  if (location.hash !== here) return; // the user went elsewhere meanwhile
  const names = new Map(keyList.keys.map((k) => [k.key_id, k.name]));
  const tenants = tenantList.tenants.map((t) => t.name);
  const today = new Date();
  const tenant = h("select", { name: "tenant" }, admin ? h("option", { value: "" }, "every tenant") : null, tenants.map((t) => h("option", { value: t }, t)));
  tenant.value = tenants.includes(query.get("tenant")) ? query.get("tenant") : admin ? "" : session.current.tenant;
  const key = h("select", { name: "key" }, h("option", { value: "" }, "every key"), keyList.keys.map((k) => h("option", { value: k.key_id }, `${k.name} (${k.key_id})`)));
  key.value = names.has(query.get("key")) ? query.get("key") : "";
  const since = h("input", { type: "date", name: "since", value: query.get("since") || isoDay(new Date(today.getTime() - 29 * DAY_S * 1000)) });
  const until = h("input", { type: "date", name: "until", value: query.get("until") || isoDay(today) });
  const show = h("button", { type: "submit", class: "primary" }, "Show");
  const form = h("form", { class: "row card adm-filters" }, field("Tenant", tenant), field("Key", key), field("Since", since), field("Until", until), show);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    for (const [name, input] of [["tenant", tenant], ["key", key], ["since", since], ["until", until]]) if (input.value) q.set(name, input.value);
    location.hash = `#/admin/usage?${q}`;
  });
  const charts = h("div", { class: "adm-charts" });
  const tables = h("div");
  frame(main, { title: "Usage", current: "#/admin/usage" }, form, charts, tables);

  const q = new URLSearchParams();
  if (tenant.value) q.set("tenant", tenant.value);
  if (key.value) q.set("key_id", key.value);
  if (since.value) q.set("since", since.value);
  if (until.value) q.set("until", until.value);
  const { usage } = await api("GET", `/api/v1/usage?${q}`);
  if (location.hash !== here) return; // the user went elsewhere meanwhile

  // One point per day of the period asked (else of the days with use), zero where none.
  const byDay = new Map(sum(usage, (r) => r.day).map((t) => [t.key, t]));
  const days = [...byDay.keys()].sort();
  const first = since.value || days[0];
  const last = until.value || days[days.length - 1];
  const xs = [];
  if (first && last) {
    for (let t = daySeconds(first); t <= daySeconds(last) && xs.length < MAX_DAYS; t += DAY_S) xs.push(t);
  }
  const column = (name) => xs.map((t) => (byDay.get(isoDay(new Date(t * 1000))) || {})[name] || 0);
  const made = [
    lineChart(charts, { title: "Requests per day", series: [{ label: "requests" }], keep: MAX_DAYS }),
    lineChart(charts, { title: "Tokens per day", series: [{ label: "prompt" }, { label: "completion" }], keep: MAX_DAYS }),
    lineChart(charts, { title: "Seconds per day", series: [{ label: "compute", unit: "s" }, { label: "training", unit: "s" }], keep: MAX_DAYS }),
  ];
  // The charts measured their width one by one as the grid filled: size them again now.
  window.dispatchEvent(new Event("resize"));
  made[0].set(xs, [column("requests")]);
  made[1].set(xs, [column("prompt_tokens"), column("completion_tokens")]);
  made[2].set(xs, [column("compute_seconds"), column("training_seconds")]);

  const perKey = sum(usage, (r) => r.key_id).sort((a, b) => b.requests - a.requests);
  const perTenant = sum(usage, (r) => r.tenant).sort((a, b) => b.requests - a.requests);
  replace(
    tables,
    h("h2", {}, "Per day"),
    table([["Day (UTC)", (r) => r.key], ...countColumns], days.map((d) => byDay.get(d)).reverse(), { empty: "No use in this period." }),
    h("h2", {}, "Per key"),
    table([["Key", (r) => names.get(r.key_id) || ""], ["Key id", (r) => h("code", {}, r.key_id)], ["Tenant", (r) => r.tenant], ...countColumns], perKey, {
      empty: "No use in this period.",
    }),
    h("h2", {}, "Per tenant"),
    table([["Tenant", (r) => r.key], ...countColumns], perTenant, { empty: "No use in this period." }),
  );
  return () => made.forEach((chart) => chart.destroy());
}

function verifyBox(report) {
  const box = h("div", { class: "adm-verify", "data-verify": report.ok ? "ok" : "broken" });
  if (report.ok) {
    box.append(notice("ok", h("strong", {}, "Audit chain intact: "), `all ${number(report.checked)} events verified.`));
  } else {
    box.append(
      notice(
        "error",
        h("strong", {}, "Audit chain BROKEN: "),
        `event #${report.first_bad_seq} does not match its hash chain (${report.reason || "altered"}); ${number(report.checked)} events checked.`,
      ),
    );
  }
  return box;
}

function describeTarget(target) {
  return Object.entries(target || {})
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(" ");
}

export async function renderAudit(main, params, query) {
  if (!frame(main, { title: "Audit log", current: "#/admin/audit", scope: "admin" })) return;
  const limit = [50, 100, 200, 500].includes(Number(query.get("limit"))) ? Number(query.get("limit")) : 100;
  const before = /^\d+$/.test(query.get("before") || "") ? Number(query.get("before")) : null;
  const verify = h("div");
  const recheck = h("button", { type: "button" }, "Verify again");
  const runVerify = async () => {
    recheck.disabled = true;
    try {
      replace(verify, verifyBox(await api("GET", "/api/v1/audit/verify")));
    } catch (err) {
      replace(verify, notice("error", `Verification failed: ${err.message}`));
    } finally {
      recheck.disabled = false;
    }
  };
  recheck.addEventListener("click", runVerify);

  const size = h("select", { name: "limit" }, [50, 100, 200, 500].map((n) => h("option", { value: String(n) }, String(n))));
  size.value = String(limit);
  size.addEventListener("change", () => (location.hash = `#/admin/audit?limit=${size.value}`));
  const search = h("input", { type: "search", name: "filter", autocomplete: "off", placeholder: "actor, action, target…" });
  const list = h("div");
  const pager = h("div", { class: "row adm-pager" });
  frame(
    main,
    { title: "Audit log", current: "#/admin/audit" },
    h("section", { class: "card tr-card" }, h("h2", {}, "Integrity"), verify, recheck),
    h("div", { class: "row" }, field("Events per page", size), field("Filter this page", search)),
    list,
    pager,
  );
  const [{ events }] = await Promise.all([
    api("GET", `/api/v1/audit?limit=${limit}${before ? `&before=${before}` : ""}`),
    runVerify(),
  ]);
  const draw = () => {
    const words = search.value.trim().toLowerCase();
    const shown = words
      ? events.filter((e) => `${e.seq} ${e.actor} ${e.action} ${describeTarget(e.target)} ${e.result} ${e.client || ""}`.toLowerCase().includes(words))
      : events;
    replace(
      list,
      table(
        [
          ["#", (e) => String(e.seq)],
          ["When", (e) => when(e.at)],
          ["Actor", (e) => e.actor],
          ["Action", (e) => e.action],
          ["Target", (e) => describeTarget(e.target)],
          ["Result", (e) => h("span", { class: `badge ${e.result < 400 ? "ok" : "bad"}` }, String(e.result))],
          ["Client", (e) => e.client || ""],
        ],
        shown,
        { empty: words ? "No event on this page matches." : "No audit events." },
      ),
    );
  };
  search.addEventListener("input", draw);
  draw();
  const links = [];
  if (before) links.push(h("a", { class: "tr-button", href: `#/admin/audit?limit=${limit}` }, "Newest"));
  const oldest = events.length ? events[events.length - 1].seq : null;
  if (events.length === limit && oldest > 1) links.push(h("a", { class: "tr-button", href: `#/admin/audit?limit=${limit}&before=${oldest}` }, "Older events"));
  replace(pager, links);
}
