// Original file: src/api/proto/tether/v1/tether.proto


// Original file: src/api/proto/tether/v1/tether.proto

export const _tether_v1_EnrollResponse_Status = {
  STATUS_UNSPECIFIED: 'STATUS_UNSPECIFIED',
  STATUS_APPROVED: 'STATUS_APPROVED',
  /**
   * The site needs manual approval: retry later with the same request.
   */
  STATUS_PENDING: 'STATUS_PENDING',
} as const;

export type _tether_v1_EnrollResponse_Status =
  | 'STATUS_UNSPECIFIED'
  | 0
  | 'STATUS_APPROVED'
  | 1
  /**
   * The site needs manual approval: retry later with the same request.
   */
  | 'STATUS_PENDING'
  | 2

export type _tether_v1_EnrollResponse_Status__Output = typeof _tether_v1_EnrollResponse_Status[keyof typeof _tether_v1_EnrollResponse_Status]

export interface EnrollResponse {
  'status'?: (_tether_v1_EnrollResponse_Status);
  'certificate_pem'?: (string);
  'ca_pem'?: (string);
  'site'?: (string);
  'node_name'?: (string);
  /**
   * Seconds the node should wait before asking again when pending.
   */
  'retry_after_seconds'?: (number);
  'message'?: (string);
}

export interface EnrollResponse__Output {
  'status': (_tether_v1_EnrollResponse_Status__Output);
  'certificate_pem': (string);
  'ca_pem': (string);
  'site': (string);
  'node_name': (string);
  /**
   * Seconds the node should wait before asking again when pending.
   */
  'retry_after_seconds': (number);
  'message': (string);
}
