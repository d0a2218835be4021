// Original file: src/api/proto/tether/v1/tether.proto


/**
 * Controller addresses HOST:PORT, in the failover order the operator configured. A node
 * checks them (1 to 8, HOST:PORT) and keeps the one it is connected to.
 */
export interface ControllerList {
  'addresses'?: (string)[];
}

/**
 * Controller addresses HOST:PORT, in the failover order the operator configured. A node
 * checks them (1 to 8, HOST:PORT) and keeps the one it is connected to.
 */
export interface ControllerList__Output {
  'addresses': (string)[];
}
