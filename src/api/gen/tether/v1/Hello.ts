// Original file: src/api/proto/tether/v1/tether.proto

import type { Long } from '@grpc/proto-loader';

export interface Hello {
  'node_name'?: (string);
  /**
   * Highest revision the node holds on disk; 0 when it holds nothing.
   */
  'held_revision'?: (number | string | Long);
  'version'?: (string);
  /**
   * Random per process start, so the controller can tell a restart from a reconnect.
   */
  'boot_id'?: (string);
  /**
   * The node's underlay (VTEP) address; empty when it runs no vRouter. The controller
   * records the first one it hears for the node and uses only that as the node's VTEP; a
   * different one later is refused until an admin resets the node (`tether node reset`).
   */
  'underlay_ip'?: (string);
  /**
   * "" (a node's own session) or "proxy": the WAN session of a site proxy (docs/proxy.md),
   * which carries its site's agents. It is opened with the certificate of the node hosting
   * the proxy, and the controller serves it the certificate's site only.
   */
  'role'?: (string);
  /**
   * The heartbeat interval this peer sends at (ms; 0 = the server's default). The server
   * declares the session dead after 3 intervals of silence and, for a proxy, only echoes
   * heartbeats instead of sending its own: an idle WAN costs one exchange per interval.
   */
  'heartbeat_ms'?: (number);
}

export interface Hello__Output {
  'node_name': (string);
  /**
   * Highest revision the node holds on disk; 0 when it holds nothing.
   */
  'held_revision': (number);
  'version': (string);
  /**
   * Random per process start, so the controller can tell a restart from a reconnect.
   */
  'boot_id': (string);
  /**
   * The node's underlay (VTEP) address; empty when it runs no vRouter. The controller
   * records the first one it hears for the node and uses only that as the node's VTEP; a
   * different one later is refused until an admin resets the node (`tether node reset`).
   */
  'underlay_ip': (string);
  /**
   * "" (a node's own session) or "proxy": the WAN session of a site proxy (docs/proxy.md),
   * which carries its site's agents. It is opened with the certificate of the node hosting
   * the proxy, and the controller serves it the certificate's site only.
   */
  'role': (string);
  /**
   * The heartbeat interval this peer sends at (ms; 0 = the server's default). The server
   * declares the session dead after 3 intervals of silence and, for a proxy, only echoes
   * heartbeats instead of sending its own: an idle WAN costs one exchange per interval.
   */
  'heartbeat_ms': (number);
}
