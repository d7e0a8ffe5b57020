// Small SVG charts drawn from the dashboard's buckets: lines, stacked columns and horizontal
// bars. Each chart is an <svg role="img"> with a title and a description that states the
// numbers that matter, so a screen reader gets the chart's point without the drawing.

import { h, s, nextId } from './dom.js';

const W = 640;
const H = 220;
const M = { left: 72, right: 30, top: 12, bottom: 28 };

/** A round upper bound for an axis, and its tick step (whole steps for counts). */
function niceScale(max, integer) {
  if (!(max > 0)) return integer ? { top: 1, step: 1 } : { top: 1, step: 0.25 };
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw) ?? 10 * mag;
  if (integer) step = Math.max(1, Math.ceil(step));
  return { top: step * Math.ceil(max / step), step };
}

function frame(title, summary, yTop, yStep, yFormat, xs, xFormat) {
  const titleId = nextId('chart');
  const descId = `${titleId}-desc`;
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-labelledby': `${titleId} ${descId}`,
    class: 'chart',
    preserveAspectRatio: 'xMidYMid meet',
  });
  svg.append(s('title', { id: titleId }, title), s('desc', { id: descId }, summary));
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const y = (v) => M.top + plotH - (v / yTop) * plotH;
  const grid = s('g', { class: 'grid', 'aria-hidden': 'true' });
  for (let v = 0; v <= yTop + yStep / 2; v += yStep) {
    grid.append(
      s('line', { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }),
      s('text', { x: M.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, yFormat(v)),
    );
  }
  const n = xs.length;
  const labels = Math.min(6, n);
  for (let i = 0; i < labels; i += 1) {
    const k = labels === 1 ? 0 : Math.round((i * (n - 1)) / (labels - 1));
    const x = M.left + ((k + 0.5) / n) * plotW;
    grid.append(s('text', { x, y: H - 8, 'text-anchor': 'middle' }, xFormat(xs[k])));
  }
  svg.append(grid);
  return { svg, y, plotW, plotH, x: (i) => M.left + ((i + 0.5) / n) * plotW, slot: plotW / Math.max(n, 1) };
}

function legend(series) {
  return h(
    'ul',
    { class: 'legend' },
    series.map((se) => h('li', {}, h('span', { class: `swatch ${se.cls}`, 'aria-hidden': 'true' }), se.label)),
  );
}

/**
 * Lines over buckets. `series`: [{label, values (number or null per bucket), cls}].
 */
export function lineChart({ title, xs, series, yFormat = String, xFormat = String, summary, integer = false }) {
  const max = Math.max(0, ...series.flatMap((se) => se.values.filter((v) => v !== null && v !== undefined)));
  const { top, step } = niceScale(max, integer);
  const c = frame(title, summary, top, step, yFormat, xs, xFormat);
  for (const se of series) {
    let d = '';
    let pen = false;
    const dots = s('g', { class: `dots ${se.cls}` });
    se.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${c.x(i).toFixed(1)} ${c.y(v).toFixed(1)} `;
      pen = true;
      if (v > 0) {
        dots.append(
          s('circle', { cx: c.x(i).toFixed(1), cy: c.y(v).toFixed(1), r: 2.5 },
            s('title', {}, `${se.label} ${xFormat(xs[i])}: ${yFormat(v)}`)),
        );
      }
    });
    c.svg.append(s('path', { d: d.trim() || `M${M.left} ${c.y(0)}`, class: `line ${se.cls}${se.dashed ? ' dashed' : ''}`, fill: 'none' }), dots);
  }
  return h('figure', { class: 'figure' }, c.svg, legend(series));
}

/**
 * Stacked columns over buckets. `series`: [{label, values, cls}], bottom first.
 */
export function columnChart({ title, xs, series, yFormat = String, xFormat = String, summary }) {
  const totals = xs.map((_, i) => series.reduce((sum, se) => sum + (se.values[i] || 0), 0));
  // Columns count requests: whole numbers on the axis.
  const { top, step } = niceScale(Math.max(0, ...totals), true);
  const c = frame(title, summary, top, step, yFormat, xs, xFormat);
  const width = Math.max(1, c.slot * 0.72);
  const bars = s('g', { class: 'bars' });
  xs.forEach((x, i) => {
    let base = 0;
    for (const se of series) {
      const v = se.values[i] || 0;
      if (v > 0) {
        bars.append(
          s('rect', {
            class: `bar ${se.cls}`,
            x: (c.x(i) - width / 2).toFixed(1),
            y: c.y(base + v).toFixed(1),
            width: width.toFixed(1),
            height: Math.max(0.5, c.y(base) - c.y(base + v)).toFixed(1),
          }, s('title', {}, `${se.label} ${xFormat(x)}: ${yFormat(v)}`)),
        );
      }
      base += v;
    }
  });
  c.svg.append(bars);
  return h('figure', { class: 'figure' }, c.svg, legend(series));
}

/**
 * Horizontal bars, one per entry: [{label, value, note}].
 */
export function barList({ title, entries, format = String, empty = 'Nothing yet.' }) {
  if (!entries.length) return h('p', { class: 'empty' }, empty);
  const rowH = 30;
  const height = entries.length * rowH + 8;
  const labelW = 200;
  const max = Math.max(...entries.map((e) => e.value), 1);
  const titleId = nextId('bars');
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${height}`,
    role: 'img',
    'aria-labelledby': titleId,
    class: 'chart bars-chart',
  });
  svg.append(s('title', { id: titleId }, `${title}: ${entries.map((e) => `${e.label} ${format(e.value)}`).join(', ')}`));
  entries.forEach((e, i) => {
    const y = 4 + i * rowH;
    const w = ((W - labelW - 160) * e.value) / max;
    const label = e.label.length > 30 ? `${e.label.slice(0, 29)}…` : e.label;
    svg.append(
      s('text', { x: labelW - 8, y: y + 19, 'text-anchor': 'end', class: 'bar-label' }, label, s('title', {}, e.label)),
      s('rect', { x: labelW, y: y + 5, width: Math.max(1, w).toFixed(1), height: rowH - 10, class: `bar ${e.cls || 'c1'}` }),
      s('text', { x: labelW + w + 6, y: y + 19, class: 'bar-value' }, e.note ?? format(e.value)),
    );
  });
  return h('figure', { class: 'figure' }, svg);
}
