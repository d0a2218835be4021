// Original file: src/api/proto/tether/v1/tether.proto

import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';
import type { Long } from '@grpc/proto-loader';

/**
 * Endpoints the site's proxy accepted from the site's own nodes that the controller has not
 * (yet) confirmed: the complete set, sent by a proxy to its agents on connect and on every
 * change, never by the controller. An agent forwards to them like to any Endpoint of its
 * slice; an Endpoint of the same name in the slice wins (docs/proxy.md "Conflicts").
 */
export interface SiteLocal {
  'endpoints'?: (_tether_v1_Resource)[];
  /**
   * The proxy's own revision of this set (monotonic per proxy process).
   */
  'seq'?: (number | string | Long);
}

/**
 * Endpoints the site's proxy accepted from the site's own nodes that the controller has not
 * (yet) confirmed: the complete set, sent by a proxy to its agents on connect and on every
 * change, never by the controller. An agent forwards to them like to any Endpoint of its
 * slice; an Endpoint of the same name in the slice wins (docs/proxy.md "Conflicts").
 */
export interface SiteLocal__Output {
  'endpoints': (_tether_v1_Resource__Output)[];
  /**
   * The proxy's own revision of this set (monotonic per proxy process).
   */
  'seq': (number);
}
