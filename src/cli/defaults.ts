// Default state directories. A leaf module: `tether status` and the other field commands
// name DEFAULT_NODE_DIR as a flag default, and taking it from admin.ts would load gRPC and
// the PKI code into a command that needs neither (BENCHMARKS.md, CLI start-up).
export const DEFAULT_CONTROLLER_DIR = '/var/lib/tether/controller';
export const DEFAULT_NODE_DIR = '/var/lib/tether/node';
