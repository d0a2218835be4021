// `tether status` without commander (main.ts COMMANDS `fast`): a technician's first command
// must answer within 1.5x an empty `node -e 0` (BENCHMARKS.md, CLI start-up), and loading
// commander and building the command tree is a good part of that budget. This parser knows
// only the flags registerStatus declares; anything else (help, a typo, an argument, a flag
// it does not know, a value that looks like a flag) returns undefined and main.ts hands the
// whole argv to commander, which words the usage error or prints the help.
import { DEFAULT_NODE_DIR } from '../defaults.js';
import { runStatus, type StatusOptions } from './status.js';

const VALUE_FLAGS: Readonly<Record<string, 'stateDir' | 'socket' | 'output'>> = {
  '--state-dir': 'stateDir',
  '--socket': 'socket',
  '--output': 'output',
  '-o': 'output',
};

/** The options argv (the words after `status`) sets, or undefined when commander must see it. */
export function parseStatusArgs(argv: readonly string[]): StatusOptions | undefined {
  const o: StatusOptions = { stateDir: DEFAULT_NODE_DIR };
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    let flag = word;
    let value: string | undefined;
    const eq = word.indexOf('=');
    if (word.startsWith('--') && eq > 2) {
      flag = word.slice(0, eq);
      value = word.slice(eq + 1);
    } else if (/^-o./.test(word)) {
      // -ojson, as commander reads a short flag with its value attached.
      flag = '-o';
      value = word.slice(2);
    }
    const key = Object.hasOwn(VALUE_FLAGS, flag) ? VALUE_FLAGS[flag] : undefined;
    if (key === undefined) return undefined;
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined || value.startsWith('-')) return undefined;
    }
    o[key] = value;
  }
  return o;
}

export async function statusFast(argv: readonly string[]): Promise<number | undefined> {
  const o = parseStatusArgs(argv);
  return o === undefined ? undefined : runStatus(o);
}
