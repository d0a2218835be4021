// Original file: src/api/proto/tether/v1/tether.proto

import type { Resource as _tether_v1_Resource, Resource__Output as _tether_v1_Resource__Output } from '../../tether/v1/Resource.js';
import type { Long } from '@grpc/proto-loader';

/**
 * Endpoints the site's proxy accepted from the site's own nodes that the controller has not
 * (yet) confirmed: the complete set, sent by a proxy to its agents on connect and on every
 * change, never by the controller. An agent forwards to them like to any Endpoint of its
 * slice (docs/proxy.md "Conflicts" for which copy wins).
 */
export interface SiteLocal {
  'endpoints'?: (_tether_v1_Resource)[];
  /**
   * The proxy's own revision of this set (monotonic per proxy process).
   */
  'seq'?: (number | string | Long);
  /**
   * Nodes whose complete current endpoint set this message carries: their latest report is
   * not answered by the controller yet (a change made at the site, e.g. during a WAN cut).
   * An agent takes these nodes' endpoints from here and ignores the slice's copies of them,
   * so a workload deleted or re-addressed at the site is forwarded to as it is now.
   */
  'nodes'?: (string)[];
}

/**
 * Endpoints the site's proxy accepted from the site's own nodes that the controller has not
 * (yet) confirmed: the complete set, sent by a proxy to its agents on connect and on every
 * change, never by the controller. An agent forwards to them like to any Endpoint of its
 * slice (docs/proxy.md "Conflicts" for which copy wins).
 */
export interface SiteLocal__Output {
  'endpoints': (_tether_v1_Resource__Output)[];
  /**
   * The proxy's own revision of this set (monotonic per proxy process).
   */
  'seq': (number);
  /**
   * Nodes whose complete current endpoint set this message carries: their latest report is
   * not answered by the controller yet (a change made at the site, e.g. during a WAN cut).
   * An agent takes these nodes' endpoints from here and ignores the slice's copies of them,
   * so a workload deleted or re-addressed at the site is forwarded to as it is now.
   */
  'nodes': (string)[];
}
