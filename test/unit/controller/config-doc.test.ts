import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../../src/controller/config.js';
import { REPO } from '../../integration/support/proc.js';

describe('docs/controller.md', () => {
  it('documents every controller.yaml field with its default', () => {
    const doc = readFileSync(`${REPO}docs/controller.md`, 'utf8');
    for (const [k, v] of Object.entries(DEFAULT_CONFIG)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${k}\` |`));
      expect(row, k).toBeDefined();
      expect(row, k).toContain(typeof v === 'string' ? `\`${v}\`` : `| ${v}`);
    }
  });
});
