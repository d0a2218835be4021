/**
 * Bounds on what a profile may say, chosen from what a machine can have, so that no file
 * makes the tools hang or run out of memory (docs/profiles.md, "Limits"). Each bound is far
 * above any real profile (the shipped ones are under 2 KB, nest 5 levels deep).
 */
export { MAX_CPU_ID } from '../kernel/hw/cpulist.js';

/** Largest profile file: 1 MiB, 500× the largest shipped profile; loads in well under a second. */
export const MAX_PROFILE_BYTES = 1024 * 1024;

/** Deepest nesting of mappings and lists in a file (a profile needs 6). */
export const MAX_NESTING = 32;

/**
 * Nodes YAML aliases (and merge keys) may copy in one file, in all: 100,000, about what a
 * 1 MiB file holds itself. Hundreds of `<<: *group` merges fit; an alias bomb (each level
 * aliasing the one below several times) is refused before anything is expanded.
 */
export const MAX_ALIAS_NODES = 100_000;

/** Files in one composition (`extends`, transitively). */
export const MAX_COMPOSED_FILES = 64;

/**
 * VFs per PF: the SR-IOV capability's TotalVFs field is 16 bits, so no PF can offer more
 * than 65,535 (real NICs: 64 on X710, 128 per E810 port, 127 on ConnectX-6 Dx).
 */
export const MAX_VFS = 65535;

/** NUMA nodes: the kernel's MAX_NUMNODES with the largest NODES_SHIFT (10). */
export const MAX_NUMA_NODE = 1023;

/**
 * Hugepages per entry: 2^31 - 1. A 2 MiB page count that large is already 4 PiB, the most
 * memory x86_64's 52-bit physical addresses reach, and it keeps kB totals exact in a double.
 */
export const MAX_HUGEPAGES = 2 ** 31 - 1;

/** VF rate limits are 32-bit Mbit/s values in the kernel's ifla_vf_rate. */
export const MAX_TX_RATE = 2 ** 32 - 1;
