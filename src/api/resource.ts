/**
 * The resource envelope every Tether object uses, Kubernetes style. Kinds and their schemas
 * live in src/api/kinds.ts; this file is only the shape shared by controller, node and CLI.
 */
export const API_VERSION = 'tether.dev/v1';

export interface ObjectMeta {
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** Revision of the store write that produced this version; set by the controller. */
  revision?: number;
  /** Revision at which the object was first created; set by the controller. */
  createRevision?: number;
  /** RFC 3339; set by the controller. */
  creationTimestamp?: string;
}

export interface TetherObject<Spec = Record<string, unknown>, Status = Record<string, unknown>> {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec: Spec;
  status?: Status;
}

export function objectKey(kind: string, name: string): string {
  return `${kind}/${name}`;
}
