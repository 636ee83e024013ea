/**
 * Turning per-viewer summaries and the per-second timeline into the outputs: the summary line
 * (the issue's exact field names), a terminal table, the JSON report and a self-contained HTML
 * report with inline SVG charts (no scripts, no external assets).
 */
import type { ViewerSummary } from './meter.ts';
import { histogram, percentile, round } from './metrics.ts';

export type Scenario = 'steady' | 'storm' | 'churn' | 'chaos';

export interface TimelinePoint {
  /** Seconds since the run started. */
  t: number;
  joined: number;
  withMedia: number;
  pps: number;
  kbps: number;
  latencyP50: number | null;
  latencyP95: number | null;
  lossPct: number | null;
  frozen: number;
}

export interface KillInfo {
  relay: string;
  /** ms since start */
  atMs: number;
  affected: number;
  recovered: number;
  recoveryP50Ms: number | null;
  recoveryP95Ms: number | null;
  recoveryMaxMs: number | null;
}

export interface Summary {
  bench: 'loadtest';
  scenario: Scenario;
  viewers: number;
  connected: number;
  ttff_p50_ms: number | null;
  ttff_p95_ms: number | null;
  latency_p50_ms: number | null;
  latency_p95_ms: number | null;
  loss_pct: number | null;
  freezes: number;
  affected?: number;
  recovered?: number;
  recovery_p95_ms?: number | null;
}

export interface Report {
  summary: Summary;
  meta: Record<string, unknown>;
  totals: Record<string, number | null>;
  kill: KillInfo | undefined;
  broadcaster: Record<string, unknown>;
  timeline: TimelinePoint[];
  viewers: ViewerSummary[];
}

export interface BuildInput {
  scenario: Scenario;
  viewersRequested: number;
  /** Final session of every slot (what "connected" counts). */
  finalSessions: ViewerSummary[];
  /** Every session (churn makes several per slot). */
  allSessions: ViewerSummary[];
  latencySamples: readonly number[];
  timeline: TimelinePoint[];
  kill: { relay: string; atMs: number } | undefined;
  meta: Record<string, unknown>;
  broadcaster: Record<string, unknown>;
}

const nz = (xs: Array<number | null>): number[] => xs.filter((x): x is number => x !== null && Number.isFinite(x));

export function buildReport(i: BuildInput): Report {
  const all = i.allSessions;
  const ttffs = nz(all.map((v) => v.ttffMs));
  const joins = nz(all.map((v) => v.joinMs));
  let lost = 0;
  let expected = 0;
  let freezes = 0;
  let packets = 0;
  let bytes = 0;
  let retx = 0;
  let verified = 0;
  let corrupt = 0;
  let audioVerified = 0;
  let audioCorrupt = 0;
  for (const v of all) {
    lost += v.lost;
    expected += v.expected;
    freezes += v.freezes;
    packets += v.packets;
    bytes += v.bytes;
    retx += v.retransmissions;
    verified += v.framesVerified;
    corrupt += v.framesCorrupt;
    audioVerified += v.audioVerified;
    audioCorrupt += v.audioCorrupt;
  }
  const summary: Summary = {
    bench: 'loadtest',
    scenario: i.scenario,
    viewers: i.viewersRequested,
    connected: i.finalSessions.filter((v) => v.connected).length,
    ttff_p50_ms: round(percentile(ttffs, 50)),
    ttff_p95_ms: round(percentile(ttffs, 95)),
    latency_p50_ms: round(percentile(i.latencySamples, 50)),
    latency_p95_ms: round(percentile(i.latencySamples, 95)),
    loss_pct: expected > 0 ? round((100 * lost) / expected, 3) : null,
    freezes,
  };
  let kill: KillInfo | undefined;
  if (i.kill) {
    const affected = all.filter((v) => v.affected);
    const rec = nz(affected.map((v) => v.recoveryMs));
    kill = {
      relay: i.kill.relay,
      atMs: Math.round(i.kill.atMs),
      affected: affected.length,
      recovered: rec.length,
      recoveryP50Ms: round(percentile(rec, 50)),
      recoveryP95Ms: round(percentile(rec, 95)),
      recoveryMaxMs: rec.length ? round(Math.max(...rec)) : null,
    };
  }
  if (i.scenario === 'chaos') {
    summary.affected = kill?.affected ?? 0;
    summary.recovered = kill?.recovered ?? 0;
    summary.recovery_p95_ms = kill?.recoveryP95Ms ?? null;
  }
  return {
    summary,
    meta: i.meta,
    totals: {
      sessions: all.length,
      join_p50_ms: round(percentile(joins, 50)),
      join_p95_ms: round(percentile(joins, 95)),
      ttff_max_ms: ttffs.length ? round(Math.max(...ttffs)) : null,
      latency_max_ms: i.latencySamples.length ? round(Math.max(...i.latencySamples)) : null,
      latency_samples: i.latencySamples.length,
      jitter_p50_ms: round(percentile(nz(all.map((v) => v.jitterMs)), 50), 2),
      packets,
      bytes,
      lost,
      expected,
      retransmissions: retx,
      seq_restarts: all.reduce((a, v) => a + (v.seqRestarts ?? 0), 0),
      freeze_ms: round(all.reduce((a, v) => a + v.freezeMs, 0), 0),
      frames_verified: verified,
      frames_corrupt: corrupt,
      audio_verified: audioVerified,
      audio_corrupt: audioCorrupt,
      errors: all.filter((v) => v.error).length,
      join_retries: all.reduce((a, v) => a + (v.joinErrors ?? 0), 0),
    },
    kill,
    broadcaster: i.broadcaster,
    timeline: i.timeline,
    viewers: all,
  };
}

/** One line, the issue's field names in the issue's order. */
export function summaryLine(s: Summary): string {
  return JSON.stringify(s);
}

// ---------------------------------------------------------------------------------------------
// Terminal

export function table(r: Report): string {
  const s = r.summary;
  const t = r.totals;
  const f = (v: unknown, unit = '') => (v === null || v === undefined ? '-' : `${v}${unit}`);
  const rows: Array<[string, string, string]> = [
    ['viewers connected', `${s.connected} / ${s.viewers}`, `${f(t.sessions)} sessions, ${f(t.errors)} failed, ${f(t.join_retries)} join retries`],
    ['join (request to first packet)', `p50 ${f(t.join_p50_ms, ' ms')}`, `p95 ${f(t.join_p95_ms, ' ms')}`],
    ['time to first frame (keyframe)', `p50 ${f(s.ttff_p50_ms, ' ms')}`, `p95 ${f(s.ttff_p95_ms, ' ms')}  max ${f(t.ttff_max_ms, ' ms')}`],
    ['glass-to-glass latency', `p50 ${f(s.latency_p50_ms, ' ms')}`, `p95 ${f(s.latency_p95_ms, ' ms')}  max ${f(t.latency_max_ms, ' ms')}`],
    ['loss', f(s.loss_pct, ' %'), `${f(t.lost)} of ${f(t.expected)} packets`],
    ['jitter (RFC 3550, video)', `p50 ${f(t.jitter_p50_ms, ' ms')}`, ''],
    ['freezes (>500 ms without a frame)', f(s.freezes), `${f(t.freeze_ms, ' ms')} frozen in total`],
    ['retransmissions received', f(t.retransmissions), `${f(t.seq_restarts)} sequence restarts (relay discontinuities)`],
    ['payloads verified (decrypting sample)', `${f(t.frames_verified)} frames`, `${f(t.frames_corrupt)} corrupt; audio ${f(t.audio_verified)} ok / ${f(t.audio_corrupt)} corrupt`],
    ['received', `${f(t.packets)} packets`, `${((t.bytes ?? 0) / 1e6).toFixed(1)} MB`],
  ];
  if (r.kill) {
    rows.push([`relay killed (${r.kill.relay} at ${(r.kill.atMs / 1000).toFixed(1)} s)`, `${r.kill.recovered} / ${r.kill.affected} recovered`, `p50 ${f(r.kill.recoveryP50Ms, ' ms')}  p95 ${f(r.kill.recoveryP95Ms, ' ms')}  max ${f(r.kill.recoveryMaxMs, ' ms')}`]);
  }
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const title = `canopy loadtest: ${s.scenario}, ${s.viewers} viewers${r.meta.partial ? ' (PARTIAL: interrupted)' : ''}`;
  return [title, '-'.repeat(title.length), ...rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`.trimEnd())].join('\n');
}

// ---------------------------------------------------------------------------------------------
// HTML with inline SVG

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

interface Series {
  name: string;
  color: string;
  points: Array<[number, number | null]>;
}

const W = 720;
const H = 240;
const PAD = { l: 56, r: 16, t: 16, b: 36 };

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function axes(xMax: number, yMax: number, xLabel: string, yLabel: string, xTicks: number[]): string {
  const x = (v: number) => PAD.l + (v / (xMax || 1)) * (W - PAD.l - PAD.r);
  const y = (v: number) => H - PAD.b - (v / yMax) * (H - PAD.t - PAD.b);
  const parts: string[] = [];
  for (let k = 0; k <= 4; k++) {
    const v = (yMax * k) / 4;
    parts.push(`<line x1="${PAD.l}" x2="${W - PAD.r}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    parts.push(`<text x="${PAD.l - 6}" y="${y(v) + 4}" text-anchor="end">${round(v, 1)}</text>`);
  }
  for (const v of xTicks) parts.push(`<text x="${x(v)}" y="${H - PAD.b + 16}" text-anchor="middle">${round(v, 1)}</text>`);
  parts.push(`<text x="${(W + PAD.l) / 2}" y="${H - 4}" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(`<text x="12" y="${(H - PAD.b + PAD.t) / 2}" transform="rotate(-90 12 ${(H - PAD.b + PAD.t) / 2})" text-anchor="middle">${esc(yLabel)}</text>`);
  parts.push(`<line x1="${PAD.l}" x2="${PAD.l}" y1="${PAD.t}" y2="${H - PAD.b}" stroke="#888"/><line x1="${PAD.l}" x2="${W - PAD.r}" y1="${H - PAD.b}" y2="${H - PAD.b}" stroke="#888"/>`);
  return parts.join('');
}

function svg(body: string, title: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}">${body}</svg>`;
}

export function lineChart(series: Series[], xLabel: string, yLabel: string, marks: Array<{ x: number; label: string }> = []): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = nz(series.flatMap((s) => s.points.map((p) => p[1])));
  if (xs.length === 0 || ys.length === 0) return '<p class="empty">no data</p>';
  const xMax = Math.max(...xs, 1);
  const yMax = niceMax(Math.max(...ys));
  const x = (v: number) => PAD.l + (v / xMax) * (W - PAD.l - PAD.r);
  const y = (v: number) => H - PAD.b - (Math.min(v, yMax) / yMax) * (H - PAD.t - PAD.b);
  const ticks = Array.from({ length: 6 }, (_, k) => (xMax * k) / 5);
  let body = axes(xMax, yMax, xLabel, yLabel, ticks);
  for (const m of marks) body += `<line x1="${x(m.x)}" x2="${x(m.x)}" y1="${PAD.t}" y2="${H - PAD.b}" stroke="#c00" stroke-dasharray="4 3"/><text x="${x(m.x) + 4}" y="${PAD.t + 12}" fill="#c00">${esc(m.label)}</text>`;
  series.forEach((s, k) => {
    // Gaps (null) break the line instead of drawing through them.
    let d = '';
    let pen = false;
    for (const [px, py] of s.points) {
      if (py === null || !Number.isFinite(py)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(px).toFixed(1)},${y(py).toFixed(1)}`;
      pen = true;
    }
    body += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`;
    body += `<rect x="${W - PAD.r - 150}" y="${PAD.t + k * 16}" width="10" height="10" fill="${s.color}"/><text x="${W - PAD.r - 134}" y="${PAD.t + 9 + k * 16}">${esc(s.name)}</text>`;
  });
  return svg(body, yLabel);
}

export function barChart(values: Array<number | null>, xLabel: string, yLabel: string, opts: { color?: string; labels?: string[]; missingLabel?: string } = {}): string {
  if (values.length === 0) return '<p class="empty">no data</p>';
  const ys = nz(values);
  const yMax = niceMax(Math.max(...ys, 0) || 1);
  const n = values.length;
  const bw = (W - PAD.l - PAD.r) / n;
  const y = (v: number) => H - PAD.b - (Math.min(v, yMax) / yMax) * (H - PAD.t - PAD.b);
  const tickStep = Math.max(1, Math.ceil(n / 10));
  let body = axes(n, yMax, xLabel, yLabel, []);
  values.forEach((v, i) => {
    const x0 = PAD.l + i * bw;
    const label = opts.labels?.[i] ?? String(i);
    if (v === null) {
      body += `<rect x="${x0 + bw * 0.1}" y="${PAD.t}" width="${Math.max(1, bw * 0.8)}" height="${H - PAD.b - PAD.t}" fill="#fdd"><title>${esc(label)}: ${esc(opts.missingLabel ?? 'none')}</title></rect>`;
    } else {
      body += `<rect x="${x0 + bw * 0.1}" y="${y(v)}" width="${Math.max(1, bw * 0.8)}" height="${H - PAD.b - y(v)}" fill="${opts.color ?? '#3a7bd5'}"><title>${esc(label)}: ${round(v, 2)}</title></rect>`;
    }
    if (i % tickStep === 0) body += `<text x="${x0 + bw / 2}" y="${H - PAD.b + 16}" text-anchor="middle">${esc(label)}</text>`;
  });
  return svg(body, yLabel);
}

export function html(r: Report): string {
  const s = r.summary;
  const tl = r.timeline;
  const latency = lineChart(
    [
      { name: 'p50', color: '#3a7bd5', points: tl.map((p) => [p.t, p.latencyP50]) },
      { name: 'p95', color: '#e67e22', points: tl.map((p) => [p.t, p.latencyP95]) },
    ],
    'seconds since start',
    'glass-to-glass latency (ms)',
    r.kill ? [{ x: r.kill.atMs / 1000, label: `kill ${r.kill.relay}` }] : [],
  );
  const connected = lineChart(
    [
      { name: 'joined', color: '#999', points: tl.map((p) => [p.t, p.joined]) },
      { name: 'receiving media', color: '#27ae60', points: tl.map((p) => [p.t, p.withMedia]) },
      { name: 'frozen', color: '#c0392b', points: tl.map((p) => [p.t, p.frozen]) },
    ],
    'seconds since start',
    'viewers',
    r.kill ? [{ x: r.kill.atMs / 1000, label: 'kill' }] : [],
  );
  const ttffs = nz(r.viewers.map((v) => v.ttffMs));
  const bin = ttffs.length && Math.max(...ttffs) > 2000 ? 250 : 50;
  const bins = Math.min(40, Math.max(1, Math.ceil((ttffs.length ? Math.max(...ttffs) : 0) / bin) + 1));
  const hist = histogram(ttffs, bin, bins);
  const ttffChart = barChart(hist, `time to first frame, ${bin} ms bins (label = bin start, ms)`, 'viewers', { labels: hist.map((_, i) => String(i * bin)), color: '#8e44ad' });
  const lossChart = barChart(r.viewers.map((v) => v.lossPct), 'viewer', 'loss (%)', { labels: r.viewers.map((v) => v.id), color: '#c0392b' });
  const affected = r.viewers.filter((v) => v.affected);
  const recovery = r.kill
    ? barChart(affected.map((v) => v.recoveryMs), 'viewer on the killed relay (red = never recovered)', 'kill to first frame again (ms)', { labels: affected.map((v) => v.id), color: '#16a085', missingLabel: 'not recovered' })
    : '<p class="empty">No relay was killed in this run (scenario chaos kills one).</p>';
  const kv = (o: Record<string, unknown>) =>
    `<table>${Object.entries(o)
      .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(typeof v === 'object' ? JSON.stringify(v) : String(v))}</td></tr>`)
      .join('')}</table>`;
  const viewerRows = r.viewers
    .map(
      (v) =>
        `<tr><td>${esc(v.id)}</td><td>${v.light ? 'light' : 'full'}</td><td>${esc(v.relay ?? '-')}</td><td>${v.connections}</td><td>${fmt(v.joinMs)}</td><td>${fmt(v.ttffMs)}</td><td>${fmt(v.latencyP50Ms)}</td><td>${fmt(v.latencyP95Ms)}</td><td>${fmt(v.lossPct, 3)}</td><td>${fmt(v.jitterMs, 2)}</td><td>${v.freezes}</td><td>${v.retransmissions}</td><td>${v.packets}</td><td>${v.bytes}</td><td>${v.affected ? fmt(v.recoveryMs) : ''}</td><td>${esc(v.error ?? '')}</td></tr>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>canopy loadtest: ${esc(s.scenario)}, ${s.viewers} viewers</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f6f6f6}svg{font-size:11px;background:#fff;border:1px solid #eee}svg text{fill:#444}
.big td{font-size:16px}.empty{color:#888}pre{background:#f6f6f6;padding:8px;overflow:auto}
</style></head><body>
<h1>canopy loadtest: ${esc(s.scenario)}, ${s.viewers} viewers${r.meta.partial ? ' (partial: interrupted)' : ''}</h1>
<pre>${esc(summaryLine(s))}</pre>
<h2>Summary</h2>${kv({ ...s })}
<h2>Totals</h2>${kv(r.totals)}
${r.kill ? `<h2>Relay kill</h2>${kv({ ...r.kill })}` : ''}
<h2>Latency over time</h2>${latency}
<h2>Viewers over time</h2>${connected}
<h2>Time to first frame</h2>${ttffChart}
<h2>Loss per viewer</h2>${lossChart}
<h2>Recovery per viewer after the relay kill</h2>${recovery}
<h2>Run</h2>${kv(r.meta)}
<h2>Broadcaster</h2>${kv(r.broadcaster)}
<h2>Viewers</h2>
<table><tr><th>id</th><th>mode</th><th>relay</th><th>conns</th><th>join ms</th><th>ttff ms</th><th>lat p50</th><th>lat p95</th><th>loss %</th><th>jitter ms</th><th>freezes</th><th>retx</th><th>packets</th><th>bytes</th><th>recovery ms</th><th>error</th></tr>${viewerRows}</table>
<p>How each figure is measured: docs/architecture.md in the Canopy repository.</p>
</body></html>
`;
}

function fmt(v: number | null | undefined, d = 1): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '-' : String(round(v, d));
}
