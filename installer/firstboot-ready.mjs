#!/usr/bin/env node
// ExecStartPost= of tether-firstboot.service: once `tether node firstboot` has reached Ready
// (phase "ready" in <state-dir>/firstboot.json), writes <state-dir>/firstboot.ready, the
// marker the unit's ConditionPathExists=! checks, so later boots skip first boot and the
// node daemon starts at once, WAN or not. Exit 0 after a planned reboot request or any other
// phase too: the marker is simply not written, and the next boot resumes first boot.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2] ?? '/var/lib/tether/node';
let phase;
try {
  phase = JSON.parse(readFileSync(join(dir, 'firstboot.json'), 'utf8')).phase;
} catch {
  process.exit(0); // no state (or unreadable): not Ready
}
if (phase === 'ready') {
  const tmp = join(dir, '.firstboot.ready.tmp');
  const fd = openSync(tmp, 'w', 0o644);
  writeSync(fd, `${new Date().toISOString()}\n`);
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, join(dir, 'firstboot.ready'));
  const d = openSync(dir, 'r');
  fsyncSync(d);
  closeSync(d);
}
