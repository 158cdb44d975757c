// A deployment's live charts. GET /api/v1/deployments/{name}/stats answers cumulative
// counters and histogram buckets (the server's own Prometheus metrics, summed over its
// frontend processes); rates and quantiles come from the difference between two reads,
// as Prometheus' rate() and histogram_quantile() would compute them.

import { h, notice, replace } from "../dom.js";
import { api, path } from "../api.js";
import { lineChart } from "../charts.js";

export const POLL_MS = 1500;

/**
 * The q-quantile of what a histogram observed between two reads (null when nothing was),
 * interpolated linearly within its bucket; `floor` is the least possible value.
 * Observations past the last bound count as the last bound (as Prometheus does).
 */
export function quantile(q, before, after, floor = 0) {
  const bounds = after.bounds;
  const total = after.count - (before ? before.count : 0);
  if (!(total > 0)) return null;
  const rank = q * total;
  let below = 0;
  for (let i = 0; i < bounds.length; i += 1) {
    const upTo = after.cumulative[i] - (before ? before.cumulative[i] || 0 : 0);
    if (upTo >= rank) {
      const lower = Math.max(floor, i ? bounds[i - 1] : floor);
      const upper = Math.max(lower, bounds[i]);
      const inBucket = upTo - below;
      return inBucket > 0 ? lower + (upper - lower) * ((rank - below) / inBucket) : upper;
    }
    below = upTo;
  }
  return bounds.length ? bounds[bounds.length - 1] : null;
}

/** The mean of what a histogram observed between two reads (null when nothing was). */
export function mean(before, after) {
  const count = after.count - before.count;
  return count > 0 ? (after.sum - before.sum) / count : null;
}

function sumValues(object) {
  return Object.values(object || {}).reduce((n, v) => n + v, 0);
}

function okCount(requests) {
  return Object.entries(requests || {}).reduce((n, [status, v]) => (status.startsWith("2") ? n + v : n), 0);
}

/**
 * What changed between two reads: requests/s (answered, errors), latency and queue wait
 * p50/p99 in ms, batch rows (mean, p99) and the queue now. Null when the counters went
 * back (the server restarted): the next pair of reads is compared instead.
 */
export function between(before, after) {
  const seconds = after.collected_at - before.collected_at;
  const requests = sumValues(after.requests) - sumValues(before.requests);
  if (!(seconds > 0) || requests < 0 || after.latency_seconds.count < before.latency_seconds.count) return null;
  const ok = okCount(after.requests) - okCount(before.requests);
  const ms = (v) => (v === null ? null : v * 1000);
  return {
    at: after.collected_at,
    rps: requests / seconds,
    okRps: ok / seconds,
    errorRps: (requests - ok) / seconds,
    p50: ms(quantile(0.5, before.latency_seconds, after.latency_seconds)),
    p99: ms(quantile(0.99, before.latency_seconds, after.latency_seconds)),
    batchMean: mean(before.batch_size, after.batch_size),
    batchP99: quantile(0.99, before.batch_size, after.batch_size, 1),
    batchesPerSecond: (after.batch_size.count - before.batch_size.count) / seconds,
    queueP50: ms(quantile(0.5, before.queue_wait_seconds, after.queue_wait_seconds)),
    queueP99: ms(quantile(0.99, before.queue_wait_seconds, after.queue_wait_seconds)),
    queued: after.queue_depth,
  };
}

function fixed(value, digits, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return `${value.toFixed(digits)}${unit}`;
}

const FIGURES = [
  ["requests-per-second", "Requests/s", (d) => fixed(d.rps, 2)],
  ["latency-p50", "Latency p50", (d) => fixed(d.p50, 1, " ms")],
  ["latency-p99", "Latency p99", (d) => fixed(d.p99, 1, " ms")],
  ["batch-mean", "Mean batch", (d) => fixed(d.batchMean, 1, " rows")],
  ["queue-wait-p99", "Queue wait p99", (d) => fixed(d.queueP99, 1, " ms")],
  ["queued", "Queued now", (d) => String(d.queued)],
];

/**
 * Draw the live figures and charts into `container` and poll every `interval` ms until
 * the returned function is called. A 404 (the deployment is gone) stops the polling.
 */
export function liveStats(container, name, { interval = POLL_MS, onGone } = {}) {
  const values = {};
  const summary = h(
    "dl",
    { class: "live-figures", "aria-label": "Live figures" },
    FIGURES.map(([key, label]) =>
      h("div", { class: "figure" }, h("dt", {}, label), (values[key] = h("dd", { "data-stat": key }, "–"))),
    ),
  );
  const problem = h("div", { class: "out" });
  const grid = h("div", { class: "chart-grid" });
  container.append(summary, problem, grid);
  const cell = () => {
    const box = h("div", { class: "chart-cell" });
    grid.append(box);
    return box;
  };
  const charts = {
    requests: lineChart(cell(), { title: "Requests per second", series: [{ label: "answered", unit: "req/s" }, { label: "errors", unit: "req/s" }] }),
    latency: lineChart(cell(), { title: "Latency", series: [{ label: "p50", unit: "ms" }, { label: "p99", unit: "ms" }] }),
    batch: lineChart(cell(), { title: "Batch size", series: [{ label: "mean", unit: "rows" }, { label: "p99", unit: "rows" }] }),
    queue: lineChart(cell(), { title: "Queue wait", series: [{ label: "p50", unit: "ms" }, { label: "p99", unit: "ms" }] }),
  };

  let previous = null;
  let stopped = false;
  let timer = null;
  const controller = new AbortController();

  const show = (d) => {
    charts.requests.push(d.at, [d.okRps, d.errorRps]);
    charts.latency.push(d.at, [d.p50, d.p99]);
    charts.batch.push(d.at, [d.batchMean, d.batchP99]);
    charts.queue.push(d.at, [d.queueP50, d.queueP99]);
    for (const [key, , format] of FIGURES) values[key].textContent = format(d);
    values["requests-per-second"].dataset.value = String(d.rps);
  };

  const poll = async () => {
    try {
      const now = await api("GET", path`/api/v1/deployments/${name}/stats`, { signal: controller.signal });
      if (stopped) return;
      const change = previous ? between(previous, now) : null;
      if (change) show(change);
      previous = now;
      replace(problem);
    } catch (err) {
      if (stopped) return;
      if (err.status === 404) {
        stopped = true;
        if (onGone) onGone();
        return;
      }
      replace(problem, notice("error", `Could not read the figures: ${err.message}`));
    }
    if (!stopped) timer = setTimeout(poll, interval);
  };
  poll();

  return () => {
    stopped = true;
    clearTimeout(timer);
    controller.abort();
    for (const chart of Object.values(charts)) chart.destroy();
  };
}
