// `tether dashboard`: one screen for the technician at the box, redrawn from the node's control
// API. Plain ANSI, no TUI library: the screen is a list of lines cut to the terminal's size.
// Escape codes used: colour (SGR, only when useColor allows), and cursor control on a terminal
// that is not TERM=dumb: CSI H (home), CSI 2J (clear), CSI ?25l / ?25h (hide/show cursor).
// With TERM=dumb each frame is printed plainly after a blank line.

import { printableDeep } from '../lib/printable.js';
import type { NodeEvent, NodeLiveStatus, NodeTraffic } from '../node/control-api.js';
import { type Colour, sgr } from './term.js';

export interface Frame {
  status?: NodeLiveStatus;
  /** Kernel counters from /v1/traffic, and the previous answer (for rates). */
  traffic?: NodeTraffic;
  prevTraffic?: NodeTraffic;
  error?: string;
  events: NodeEvent[];
  at: Date;
}

type Paint = (text: string, color: Colour) => string;

export const colorPaint: Paint = sgr;
export const plainPaint: Paint = (t) => t;

const ESC = '\u001b';
/** Text without its SGR sequences (ESC [ digits/semicolons m), the only codes renderFrame emits. */
function stripSgr(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === ESC && s[i + 1] === '[') {
      let j = i + 2;
      while (j < s.length && /[0-9;]/.test(s[j] as string)) j++;
      if (s[j] === 'm') {
        i = j;
        continue;
      }
    }
    out += s[i];
  }
  return out;
}
/** Visible width of a line (SGR codes take no columns). */
const visible = (s: string): number => stripSgr(s).length;

function cut(line: string, cols: number): string {
  if (visible(line) <= cols) return line;
  // Cut the plain text: a coloured line that is too wide loses its colour rather than its end code.
  return `${stripSgr(line).slice(0, Math.max(0, cols - 1))}…`;
}

function phaseColor(phase: string): 'green' | 'yellow' | 'red' {
  if (phase === 'connected' || phase === 'up' || phase === 'Established') return 'green';
  if (phase === 'connecting' || phase === 'start') return 'yellow';
  return 'red';
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
function bytes(n: number): string {
  let v = Number.isFinite(n) && n > 0 ? n : 0;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${UNITS[u]}`;
}

/** Traffic rows: per network and link, totals and the rate since the previous answer. */
function trafficLines(t: NodeTraffic, prev: NodeTraffic | undefined, paint: Paint): string[] {
  const lines: string[] = [
    paint('TRAFFIC          LINK    RX            TX            RX/s        TX/s', 'bold'),
  ];
  const secs = prev ? (Date.parse(t.at) - Date.parse(prev.at)) / 1000 : 0;
  for (const l of t.links) {
    const p = prev?.links.find((x) => x.network === l.network && x.link === l.link);
    // A counter that went down (the namespace was re-created) has no rate.
    const rate = (now: number, before: number | undefined) =>
      p && secs > 0 && before !== undefined && now >= before ? `${bytes((now - before) / secs)}/s` : '-';
    lines.push(
      `${String(l.network).padEnd(16)} ${String(l.link).padEnd(7)} ${bytes(l.rxBytes).padEnd(13)} ${bytes(l.txBytes).padEnd(13)} ${rate(l.rxBytes, p?.rxBytes).padEnd(11)} ${rate(l.txBytes, p?.txBytes)}`,
    );
  }
  const drops = new Map<string, number>();
  const rules: string[] = [];
  for (const c of t.policy) {
    if (c.rule === '(default)') drops.set(c.network, (drops.get(c.network) ?? 0) + Number(c.packets));
    else if (Number(c.packets) > 0) rules.push(`${c.network}/${c.policy}/${c.rule}=${c.packets}`);
  }
  lines.push('');
  lines.push(paint('POLICY DROPS (default deny, packets)', 'bold'));
  lines.push(
    drops.size
      ? [...drops].map(([n, v]) => `${n}=${v > 0 ? paint(String(v), 'yellow') : '0'}`).join('  ')
      : 'no policies on this node',
  );
  if (rules.length) lines.push(`rule hits: ${rules.join('  ')}`);
  return lines;
}

/** The screen as lines, at most `rows` lines of at most `cols` columns. */
export function renderFrame(raw: Frame, cols: number, rows: number, paint: Paint): string[] {
  // Everything below came over the control API or from the node's event log.
  const f = printableDeep(raw);
  const lines: string[] = [];
  const s = f.status;
  lines.push(
    `${paint('tether dashboard', 'bold')}  ${s ? `${s.node} @ ${s.site}` : ''}  ${f.at.toISOString().slice(11, 19)}Z  (q quits)`,
  );
  if (!s) {
    lines.push(paint(`control API not reachable: ${f.error ?? 'no answer'}`, 'red'));
  } else {
    const up = s.session.upstream ? ` via ${s.session.upstream.kind} ${s.session.upstream.address}` : '';
    lines.push(
      `session  ${paint(s.session.phase, phaseColor(s.session.phase))}${s.session.since ? ` since ${s.session.since}` : ''}${up}`,
    );
    const wan = s.proxy.wan ? `  WAN ${paint(s.proxy.wan.phase, phaseColor(s.proxy.wan.phase))}` : '';
    lines.push(
      `proxy    ${s.proxy.role}${s.proxy.activeNode ? ` (active: ${s.proxy.activeNode})` : ''}${wan}`,
    );
    if (s.wan)
      lines.push(
        `WAN RTT  ${s.wan.rtt.srttMs} ms (${s.wan.via === 'proxy' ? 'proxy WAN session' : 'own session'})${s.wan.rtt.offsetMs !== undefined ? `  controller clock ${s.wan.rtt.offsetMs >= 0 ? '+' : ''}${s.wan.rtt.offsetMs} ms` : ''}`,
      );
    lines.push(
      `health   ${s.health.ok ? paint('ok', 'green') : paint(s.health.degraded ? 'degraded' : 'failing', 'red')}  revision ${s.revision}${s.health.reasons.length ? `  ${s.health.reasons.join('; ')}` : ''}`,
    );
    if (s.session.lastError) lines.push(paint(`last error: ${s.session.lastError}`, 'red'));
    lines.push('');
    lines.push(paint('NETWORK          VNI     LOCAL  REMOTE', 'bold'));
    for (const n of s.networks) {
      lines.push(
        `${n.name.padEnd(16)} ${String(n.vni ?? '-').padEnd(7)} ${String(n.localEndpoints).padStart(5)}  ${String(n.remoteEndpoints).padStart(6)}`,
      );
    }
    if (f.traffic) {
      lines.push('');
      lines.push(...trafficLines(f.traffic, f.prevTraffic, paint));
    }
    const counters = Object.entries(s.counters);
    if (counters.length) {
      lines.push('');
      lines.push(paint('COUNTERS', 'bold'));
      lines.push(counters.map(([k, v]) => `${k}=${v}`).join('  '));
    }
    const peers = Object.entries(s.gateway?.peers ?? {});
    lines.push('');
    lines.push(
      paint(
        `BGP${s.gateway ? ` (${s.gateway.gateway}, ${s.gateway.role})` : ': no gateway on this node'}`,
        'bold',
      ),
    );
    for (const [name, p] of peers) {
      lines.push(
        `${name.padEnd(16)} ${p.address.padEnd(16)} AS${p.asn}  ${paint(p.bgpState, phaseColor(p.bgpState))}`,
      );
    }
  }
  lines.push('');
  lines.push(paint('EVENTS', 'bold'));
  const room = Math.max(0, rows - lines.length);
  for (const e of f.events.slice(-room))
    lines.push(`${e.time.slice(11, 19)} ${e.type.padEnd(8)} ${e.message}`);
  return lines.slice(0, rows).map((l) => cut(l, cols));
}
