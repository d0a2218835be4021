// Original file: src/api/proto/tether/v1/tether.proto


export interface EndpointRefusal {
  /**
   * Endpoint name as the node sent it ("*" when the whole report was refused).
   */
  'name'?: (string);
  /**
   * A TETHER_E_* code (docs/errors.md).
   */
  'code'?: (string);
  'message'?: (string);
  /**
   * The offending field, e.g. spec.ip.
   */
  'field'?: (string);
}

export interface EndpointRefusal__Output {
  /**
   * Endpoint name as the node sent it ("*" when the whole report was refused).
   */
  'name': (string);
  /**
   * A TETHER_E_* code (docs/errors.md).
   */
  'code': (string);
  'message': (string);
  /**
   * The offending field, e.g. spec.ip.
   */
  'field': (string);
}
