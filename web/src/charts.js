// Time-series charts (uPlot), coloured from the theme's CSS variables.

import uPlot from 'uplot';
import { h } from './dom.js';

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

/** The n-th series colour of the theme. */
export function seriesColor(i) {
  return cssVar(`--chart-${(i % 6) + 1}`);
}

function withAlpha(color, alpha) {
  // Colours are #rrggbb in the theme.
  if (/^#[0-9a-f]{6}$/i.test(color)) {
    const a = Math.round(alpha * 255).toString(16).padStart(2, '0');
    return color + a;
  }
  return color;
}

/**
 * A chart card: title, legend, and a uPlot time chart.
 *   x: unix seconds; series: [{label, values, color, kind: 'line'|'bars', fill}]
 *   yFormat: value → text for the axis and legend
 *   onSelect(fromSec, toSec): called after a drag selection (optional)
 * Returns {el, destroy()}.
 */
const pad = (n) => String(n).padStart(2, '0');

/** Axis labels for unix seconds: HH:MM:SS, or HH:MM over long spans. */
function timeLabels(u, splits) {
  const span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
  return splits.map((v) => {
    const d = new Date(v * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return span > 3600 * 2 ? hm : `${hm}:${pad(d.getSeconds())}`;
  });
}

export function timeChart({ title, subtitle, x, series, yFormat = (v) => String(v), height = 190, onSelect, yMin, log = false }) {
  const plot = h('div', { class: 'chart-plot' });
  const el = h('figure', { class: 'chart card' },
    h('figcaption', null, h('span', { class: 'chart-title' }, title), subtitle ? h('span', { class: 'chart-sub' }, subtitle) : null),
    plot);
  const fg = cssVar('--fg-muted');
  const grid = cssVar('--grid');
  const opts = {
    width: 400,
    height,
    legend: { show: true, live: true },
    cursor: { drag: { x: !!onSelect, y: false, setScale: false }, points: { size: 6 } },
    scales: {
      x: { time: true },
      y: log ? { distr: 3, log: 10 } : { range: (u, min, max) => [yMin ?? Math.min(0, min), max > 0 ? max * 1.1 : 1] },
    },
    axes: [
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, values: timeLabels },
      { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 60, values: (u, vals) => vals.map((v) => yFormat(v)) },
    ],
    series: [
      { value: (u, v) => (v === null ? '–' : timeLabels(u, [v])[0]) },
      ...series.map((s, i) => {
        const color = s.color ? (s.color.startsWith('--') ? cssVar(s.color) : s.color) : seriesColor(i);
        return {
          label: s.label,
          stroke: color,
          width: s.kind === 'bars' ? 0 : 1.6,
          fill: s.kind === 'bars' ? withAlpha(color, 0.75) : s.fill ? withAlpha(color, 0.12) : undefined,
          paths: s.kind === 'bars' ? uPlot.paths.bars({ size: [0.85, 40] }) : undefined,
          points: { show: x.length < 3 },
          spanGaps: true,
          value: (u, v) => (v === null || v === undefined ? '–' : yFormat(v)),
        };
      }),
    ],
    hooks: {
      setSelect: [
        (u) => {
          if (!onSelect || u.select.width < 4) return;
          const from = u.posToVal(u.select.left, 'x');
          const to = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          onSelect(from, to);
        },
      ],
    },
  };
  const data = [x, ...series.map((s) => s.values)];
  let chart = null;
  const ro = new ResizeObserver(() => {
    const w = Math.max(200, Math.floor(plot.clientWidth));
    if (!chart) chart = new uPlot({ ...opts, width: w }, data, plot);
    else if (Math.abs(chart.width - w) > 1) chart.setSize({ width: w, height });
  });
  ro.observe(plot);
  return {
    el,
    destroy() {
      ro.disconnect();
      if (chart) chart.destroy();
    },
  };
}
