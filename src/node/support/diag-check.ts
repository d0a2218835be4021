/** One `tether diag` finding (docs/field.md); shared by diag.ts and diag-net.ts. */
export type Verdict = 'pass' | 'warn' | 'fail';

export interface DiagCheck {
  name: string;
  verdict: Verdict;
  detail: string;
  /** What to do; absent on pass. */
  remedy?: string;
}

export function check(name: string, verdict: Verdict, detail: string, remedy?: string): DiagCheck {
  return verdict === 'pass' || remedy === undefined
    ? { name, verdict, detail }
    : { name, verdict, detail, remedy };
}
