import type { Command } from 'commander';
import {
  controlSocketPath,
  type NodeEvent,
  type NodeTraffic,
  readEvents,
  readLiveStatus,
  readTraffic,
} from '../../node/control-api.js';
import { DEFAULT_NODE_DIR } from '../admin.js';
import { colorPaint, type Frame, plainPaint, renderFrame } from '../dashboard.js';
import { parseDuration } from '../flags.js';
import { useColor } from '../term.js';

const EVENTS_KEPT = 200;
/** q, Q, Ctrl-C, Ctrl-D (raw mode: the terminal sends Ctrl-C as a byte, not SIGINT). */
const QUIT_KEYS = new Set(['q', 'Q', '\u0003', '\u0004']);

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description(
      'live console screen of this node: session, WAN, networks, traffic per network, policy drops, counters, BGP, events (q quits)',
    )
    .option('--state-dir <dir>', 'node state directory', DEFAULT_NODE_DIR)
    .option('--socket <path>', 'control API socket (default: <state-dir>/control.sock)')
    .option('--interval <duration>', 'refresh period', '1s')
    .action(async (o: { stateDir: string; socket?: string; interval: string }) => {
      const socket = o.socket ?? controlSocketPath(o.stateDir);
      const period = Math.max(100, Math.round(parseDuration(o.interval, '--interval') * 1000));
      const tty = Boolean(process.stdout.isTTY);
      const cursor = tty && process.env.TERM !== 'dumb';
      const paint = useColor(process.stdout) ? colorPaint : plainPaint;
      const events: NodeEvent[] = [];
      let since = 0;
      let frame: Frame = { events, at: new Date() };
      let traffic: NodeTraffic | undefined;

      const draw = (): void => {
        const cols = process.stdout.columns || 80;
        const rows = process.stdout.rows || 24;
        const body = renderFrame(frame, cols, rows, paint).join('\n');
        process.stdout.write(cursor ? `\u001b[H\u001b[2J${body}` : `\n${body}\n`);
      };
      const poll = async (): Promise<void> => {
        try {
          const status = await readLiveStatus(socket);
          const ev = await readEvents(socket, since, EVENTS_KEPT);
          events.push(...ev.events);
          events.splice(0, Math.max(0, events.length - EVENTS_KEPT));
          since = ev.latest;
          // A node without a vRouter has no traffic counters: the rest of the screen still shows.
          const prevTraffic = traffic;
          traffic = await readTraffic(socket).catch(() => undefined);
          frame = {
            status,
            events,
            at: new Date(),
            ...(traffic ? { traffic } : {}),
            ...(prevTraffic ? { prevTraffic } : {}),
          };
        } catch (e) {
          frame = { events, at: new Date(), error: e instanceof Error ? e.message : String(e) };
        }
        draw();
      };

      await new Promise<void>((resolve) => {
        const timer = setInterval(() => void poll(), period);
        const stop = (): void => {
          clearInterval(timer);
          process.stdout.off('resize', draw);
          if (process.stdin.isTTY) process.stdin.setRawMode(false);
          process.stdin.pause();
          if (cursor) process.stdout.write('\u001b[?25h\n');
          resolve();
        };
        if (cursor) process.stdout.write('\u001b[?25l');
        process.stdout.on('resize', draw);
        if (process.stdin.isTTY) process.stdin.setRawMode(true);
        process.stdin.on('data', (b: Buffer) => {
          if ([...b.toString()].some((c) => QUIT_KEYS.has(c))) stop();
        });
        process.stdin.on('end', stop);
        void poll();
      });
    });
}
