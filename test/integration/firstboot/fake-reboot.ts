// The reboot command of the first-boot reboot test: "reboots" a fixture machine through the
// fake kernel (new boot id, boot config takes effect) and counts the reboot.
import { appendFileSync } from 'node:fs';
import { FakeKernel } from '../../../src/kernel/hw/fake.js';

const [root, counter] = process.argv.slice(2);
if (!root || !counter) throw new Error('usage: fake-reboot ROOT COUNTER');
new FakeKernel(root).reboot();
appendFileSync(counter, 'reboot\n');
