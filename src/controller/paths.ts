import { join } from 'node:path';

/** Layout of a controller data directory. Everything secret is 0600 inside a 0700 dir. */
export function controllerPaths(dataDir: string) {
  const pki = join(dataDir, 'pki');
  return {
    dataDir,
    config: join(dataDir, 'controller.yaml'),
    pki,
    caCert: join(pki, 'ca.crt'),
    caKey: join(pki, 'ca.key'),
    serverCert: join(pki, 'server.crt'),
    serverKey: join(pki, 'server.key'),
    /** Client config for the `tether` CLI: server address, CA and admin certificate. */
    adminConfig: join(dataDir, 'admin.yaml'),
  };
}

export type ControllerPaths = ReturnType<typeof controllerPaths>;
