// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface HardwareFacts {
  'hostname'?: (string);
  'machine_id'?: (string);
  'kernel'?: (string);
  'arch'?: (string);
  'cpus'?: (number);
  'memory_bytes'?: (number | string | Long);
  'macs'?: (string)[];
  'product'?: (string);
}

export interface HardwareFacts__Output {
  'hostname': (string);
  'machine_id': (string);
  'kernel': (string);
  'arch': (string);
  'cpus': (number);
  'memory_bytes': (number);
  'macs': (string)[];
  'product': (string);
}
