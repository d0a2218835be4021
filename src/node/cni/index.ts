/** The node agent's CNI endpoint: socket server, registry port and its file-backed IPAM. */
export { siteBlockOf } from './blocks.js';
export { endpointMac, FileIpam, type FileIpamOptions } from './file-ipam.js';
export type {
  AllocateRequest,
  AttachmentKey,
  BlockFor,
  EndpointRegistry,
  LocalEndpoint,
  PortMapping,
  SiteBlock,
} from './registry.js';
export { CniServer, type CniServerOptions, parseAddBody } from './server.js';
