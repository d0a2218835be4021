import { afterAll, beforeAll, describe } from 'vitest';
import { EtcdStore } from '../../src/controller/store/etcd.js';
import { openDatastore, parseDatastoreUrl } from '../../src/controller/store/open.js';
import { etcdAvailable, startEtcd, type TestEtcd } from '../support/etcd.js';
import { datastoreContract } from '../unit/store/datastore-contract.js';

const have = etcdAvailable();

// One etcd for the whole contract: every store gets its own key prefix, which is how
// several Tether installations (or tests) share a cluster.
describe.skipIf(!have)('EtcdStore on a real etcd', () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await startEtcd({ maxTxnOps: 16 });
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  datastoreContract(
    'EtcdStore',
    async (clock) => openDatastore(parseDatastoreUrl(etcd.url()), { now: clock.now, maxTxnOps: 16 }),
    { maxTxnOps: 16 },
  );
  void EtcdStore;
});
