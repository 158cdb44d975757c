// Live line charts (uPlot, served from this package): lineChart(el, {...}).push(t, values).

import { h } from "./dom.js";

/**
 * A chart of a few series over time (or over epochs, with `x: "epoch"`).
 * series: [{label, unit}] ; keep: how many points to keep (a sliding window).
 * Returns {push(x, values), set(xs, columns), destroy(), points()}.
 */
export function lineChart(container, { title, series, x = "time", keep = 120, height = 200 }) {
  const box = h("figure", { class: "chart", "data-chart": title });
  const caption = h("figcaption", {}, title);
  box.append(caption);
  container.append(box);
  const data = [[], ...series.map(() => [])];
  const colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"];
  let plot = null;
  const width = () => Math.max(220, Math.min((box.clientWidth || 616) - 16, 900)); // less its padding
  if (window.uPlot) {
    plot = new window.uPlot(
      {
        width: width(),
        height,
        scales: { x: { time: x === "time" } },
        axes: [{}, { size: 60 }],
        series: [
          { label: x === "time" ? "time" : x },
          ...series.map((s, i) => ({ label: s.unit ? `${s.label} (${s.unit})` : s.label, stroke: colors[i % colors.length], width: 2, spanGaps: true })),
        ],
      },
      data,
      box,
    );
    // Follow the figure's own width (a grid reflowing, a phone turned), not only the window's.
    let last = 0;
    const observer = new ResizeObserver(() => {
      const now = width();
      if (plot && Math.abs(now - last) > 1) {
        last = now;
        plot.setSize({ width: now, height });
      }
    });
    observer.observe(box);
    box.addEventListener("chart-destroy", () => observer.disconnect());
  } else {
    box.append(h("p", { class: "hint" }, "charts need uPlot (make install fetches it)"));
  }
  const redraw = () => {
    box.dataset.points = String(data[0].length);
    if (plot) plot.setData(data);
  };
  return {
    push(xValue, values) {
      data[0].push(xValue);
      values.forEach((v, i) => data[i + 1].push(v === undefined || Number.isNaN(v) ? null : v));
      if (data[0].length > keep) data.forEach((column) => column.shift());
      redraw();
    },
    set(xs, columns) {
      data[0] = [...xs];
      columns.forEach((column, i) => (data[i + 1] = [...column]));
      redraw();
    },
    points: () => data[0].length,
    destroy() {
      box.dispatchEvent(new Event("chart-destroy"));
      if (plot) plot.destroy();
    },
  };
}
