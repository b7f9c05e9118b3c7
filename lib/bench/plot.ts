/**
 * `ringtree bench --plot FILE.svg`: bus bandwidth and latency against message
 * size, one line per (collective, algorithm), log-log, with labelled axes, a
 * legend and the ring/tree crossover marked. Hand-written SVG, no dependencies.
 *
 * @module
 */
import { formatBytes, type BenchRow, type CrossoverResult } from './report.js';

/** One line of the plot. */
export interface PlotSeries {
  /** Legend text, e.g. `allreduce ring`. */
  label: string;
  /** Ascending sizes (bytes) with out-of-place busbw (GB/s) and time (us). */
  points: { size: number; busbw: number; time: number }[];
}

/** A vertical marker, e.g. a crossover. */
export interface PlotMarker {
  size: number;
  label: string;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22'];
const DASHES = ['', '6 3', '2 2', '8 3 2 3'];

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[ch]!);
}

/** The series of `rows` (out-of-place), one per collective and algorithm, in first-seen order. */
export function seriesFromRows(rows: readonly BenchRow[], prefixCollective: boolean): PlotSeries[] {
  const byKey = new Map<string, PlotSeries>();
  for (const r of rows) {
    const label = prefixCollective ? `${r.collective} ${r.algorithm}` : r.algorithm;
    let s = byKey.get(label);
    if (!s) byKey.set(label, (s = { label, points: [] }));
    if (r.size > 0) s.points.push({ size: r.size, busbw: r.outOfPlace.busbw, time: r.outOfPlace.time });
  }
  return [...byKey.values()];
}

/** Markers for the crossovers that exist. */
export function crossoverMarkers(crossovers: Readonly<Record<string, CrossoverResult>>, prefixCollective: boolean): PlotMarker[] {
  return Object.entries(crossovers)
    .filter(([, c]) => c.bytes !== null)
    .map(([coll, c]) => ({ size: c.bytes!, label: `crossover${prefixCollective ? ` (${coll})` : ''}: ${formatBytes(c.bytes!)}` }));
}

interface Axis {
  lo: number;
  hi: number;
}

/** Log-scale range covering `values` (positive only), padded to whole powers of `base`. */
function logRange(values: number[], base: number): Axis {
  const pos = values.filter((v) => v > 0 && Number.isFinite(v));
  if (pos.length === 0) return { lo: 1, hi: base };
  let lo = Math.floor(Math.log(Math.min(...pos)) / Math.log(base));
  let hi = Math.ceil(Math.log(Math.max(...pos)) / Math.log(base));
  if (hi === lo) hi = lo + 1;
  return { lo: base ** lo, hi: base ** hi };
}

function formatDecade(v: number, unit: string): string {
  if (v >= 1) return `${v >= 1e4 ? v.toExponential(0).replace('+', '') : String(Math.round(v))}${unit}`;
  return `${Number(v.toPrecision(1))}${unit}`;
}

/**
 * Render the SVG document.
 * @param title the heading, e.g. `ringtree bench: allreduce, 2 ranks, float32 sum`.
 */
export function renderPlot(title: string, series: readonly PlotSeries[], markers: readonly PlotMarker[]): string {
  const width = 900, panelH = 300, left = 90, right = 200, top = 50, gap = 80;
  const plotW = width - left - right;
  const height = top + 2 * panelH + gap + 60;
  const sizes = series.flatMap((s) => s.points.map((p) => p.size)).concat(markers.map((m) => m.size));
  const x = logRange(sizes, 2);
  const xOf = (v: number): number => left + (Math.log2(v) - Math.log2(x.lo)) / (Math.log2(x.hi) - Math.log2(x.lo)) * plotW;
  const out: string[] = [];
  out.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="24" text-anchor="middle" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  const panels = [
    { key: 'busbw' as const, label: 'bus bandwidth (GB/s)', unit: '' },
    { key: 'time' as const, label: 'latency per op (us)', unit: '' },
  ];
  panels.forEach((panel, pi) => {
    const y0 = top + pi * (panelH + gap);
    const y = logRange(series.flatMap((s) => s.points.map((p) => p[panel.key])), 10);
    const yOf = (v: number): number => y0 + panelH - (Math.log10(v) - Math.log10(y.lo)) / (Math.log10(y.hi) - Math.log10(y.lo)) * panelH;
    out.push(`<g class="panel" id="${panel.key}">`);
    out.push(`<rect class="frame" x="${left}" y="${y0}" width="${plotW}" height="${panelH}" fill="none" stroke="#333"/>`);
    // y grid and ticks: decades.
    out.push(`<g class="axis y-axis">`);
    const d0 = Math.round(Math.log10(y.lo)), d1 = Math.round(Math.log10(y.hi));
    // With few decades, label 2x and 5x too so the scale can be read.
    const steps = d1 - d0 <= 2 ? [1, 2, 5] : [1];
    for (let e = d0; e <= d1; e++) {
      for (const k of steps) {
        const v = k * 10 ** e;
        if (v > y.hi * 1.0001) continue;
        const py = yOf(v);
        out.push(`<line x1="${left}" y1="${py.toFixed(1)}" x2="${left + plotW}" y2="${py.toFixed(1)}" stroke="${k === 1 ? '#ddd' : '#f3f3f3'}"/>`);
        out.push(`<text x="${left - 6}" y="${(py + 4).toFixed(1)}" text-anchor="end"${k === 1 ? '' : ' fill="#777"'}>${formatDecade(v, panel.unit)}</text>`);
      }
    }
    out.push(`<text class="axis-label" transform="translate(${left - 62},${y0 + panelH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(panel.label)}</text>`);
    out.push(`</g>`);
    // x grid and ticks: powers of 2, labelled every few so labels do not collide.
    out.push(`<g class="axis x-axis">`);
    const e0 = Math.round(Math.log2(x.lo)), e1 = Math.round(Math.log2(x.hi));
    const every = Math.max(1, Math.ceil((e1 - e0) / 10));
    for (let e = e0; e <= e1; e++) {
      const px = xOf(2 ** e);
      out.push(`<line x1="${px.toFixed(1)}" y1="${y0}" x2="${px.toFixed(1)}" y2="${y0 + panelH}" stroke="${(e - e0) % every === 0 ? '#ddd' : '#f3f3f3'}"/>`);
      if ((e - e0) % every === 0) out.push(`<text x="${px.toFixed(1)}" y="${y0 + panelH + 16}" text-anchor="middle">${escapeXml(formatBytes(2 ** e))}</text>`);
    }
    out.push(`<text class="axis-label" x="${left + plotW / 2}" y="${y0 + panelH + 36}" text-anchor="middle">message size (bytes, whole buffer)</text>`);
    out.push(`</g>`);
    // Crossover markers.
    markers.forEach((m, mi) => {
      const px = xOf(m.size).toFixed(1);
      // Near the right edge the label goes left of the line, clear of the legend.
      const leftOfLine = Number(px) > left + plotW * 0.7;
      out.push(`<g class="crossover"><line x1="${px}" y1="${y0}" x2="${px}" y2="${y0 + panelH}" stroke="#444" stroke-width="1.5" stroke-dasharray="5 4"/>` +
        `<text x="${(Number(px) + (leftOfLine ? -4 : 4)).toFixed(1)}" y="${y0 + 14 + 14 * mi}" fill="#444"${leftOfLine ? ' text-anchor="end"' : ''}>${escapeXml(m.label)}</text></g>`);
    });
    // Lines.
    series.forEach((s, si) => {
      const pts = s.points.filter((p) => p[panel.key] > 0 && Number.isFinite(p[panel.key]));
      if (pts.length === 0) return;
      const color = COLORS[si % COLORS.length]!, dash = DASHES[Math.floor(si / COLORS.length) % DASHES.length] || (si % 2 ? '6 3' : '');
      const d = pts.map((p, i) => `${i ? 'L' : 'M'}${xOf(p.size).toFixed(1)},${yOf(p[panel.key]).toFixed(1)}`).join(' ');
      out.push(`<path class="series" d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
      for (const p of pts) out.push(`<circle cx="${xOf(p.size).toFixed(1)}" cy="${yOf(p[panel.key]).toFixed(1)}" r="2.5" fill="${color}"/>`);
    });
    out.push(`</g>`);
  });
  // Legend.
  const lx = left + plotW + 20;
  out.push(`<g class="legend"><text x="${lx}" y="${top + 4}" font-weight="bold">legend</text>`);
  series.forEach((s, si) => {
    const ly = top + 22 + si * 20;
    const color = COLORS[si % COLORS.length]!, dash = DASHES[Math.floor(si / COLORS.length) % DASHES.length] || (si % 2 ? '6 3' : '');
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>` +
      `<text x="${lx + 34}" y="${ly + 4}">${escapeXml(s.label)}</text>`);
  });
  if (markers.length) {
    const ly = top + 22 + series.length * 20;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="#444" stroke-width="1.5" stroke-dasharray="5 4"/><text x="${lx + 34}" y="${ly + 4}">tree→ring crossover</text>`);
  }
  out.push(`</g>`);
  out.push(`<text x="${left}" y="${height - 12}" fill="#555">out-of-place medians; busbw per nccl-tests (GB = 1e9 B); log-log</text>`);
  out.push(`</svg>`);
  return `${out.join('\n')}\n`;
}
