// Original file: src/api/proto/tether/v1/tether.proto

import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';

/**
 * The complete set of workload endpoints on the node (CNI attachments), sent after hello
 * and on every change. The controller stores them as Endpoint resources, forcing node and
 * site from the node's certificate, and reflects them to every other node of the network.
 */
export interface EndpointReport {
  'endpoints'?: (_tether_v1_Resource)[];
}

/**
 * The complete set of workload endpoints on the node (CNI attachments), sent after hello
 * and on every change. The controller stores them as Endpoint resources, forcing node and
 * site from the node's certificate, and reflects them to every other node of the network.
 */
export interface EndpointReport__Output {
  'endpoints': (_tether_v1_Resource__Output)[];
}
