import { createHmac, hkdfSync } from 'node:crypto';
import { type GatewayHaKey, type GatewaySpec, MAX_HA_KEY_GENERATION } from '../api/gateway-kinds.js';
import type { TetherObject } from '../api/resource.js';

/**
 * The HA heartbeat keys of a site's gateway nodes (docs/gateway.md "Heartbeat
 * authentication"). They are derived, not stored: every controller that holds the CA key
 * derives the same ones (several controllers on one datastore agree without a shared
 * secret object), nothing in the store or in `tether get` ever holds them, and a Gateway's
 * keys change with its site, its name and `spec.haKeyGeneration`. Only the site slice's copy
 * of the Gateway carries them (`status.haKeys`), so only that site's nodes receive them.
 */

/** The master secret of HA keys, from the CA's private key (HKDF-SHA256, its own label). */
export function haMasterKey(caKeyPem: string): Buffer {
  return Buffer.from(hkdfSync('sha256', caKeyPem, 'tether', 'tether gateway-ha master v1', 32));
}

/** The key of one generation of one site's Gateway. Pure. */
export function gatewayHaKey(master: Uint8Array, site: string, gateway: string, generation: number): Buffer {
  // NUL-separated: names are DNS labels, so no two (site, gateway, generation) collide.
  return createHmac('sha256', master).update(`gateway-ha\0${site}\0${gateway}\0${generation}`).digest();
}

/** Current key first, then the previous one (accepted while the site's nodes catch up). */
export function gatewayHaKeys(master: Uint8Array, gw: TetherObject): GatewayHaKey[] {
  const spec = gw.spec as unknown as Partial<GatewaySpec> | undefined;
  const site = spec?.site;
  if (typeof site !== 'string') return [];
  const g = spec?.haKeyGeneration;
  const gen =
    typeof g === 'number' && Number.isSafeInteger(g) && g >= 0 && g <= MAX_HA_KEY_GENERATION ? g : 0;
  const gens = gen > 0 ? [gen, gen - 1] : [gen];
  return gens.map((generation) => ({
    generation,
    secret: gatewayHaKey(master, site, gw.metadata.name, generation).toString('base64'),
  }));
}

/** The Gateway as its site's slice carries it: with `status.haKeys`. Never written back. */
export function withHaKeys(gw: TetherObject, master: Uint8Array): TetherObject {
  return { ...gw, status: { ...(gw.status ?? {}), haKeys: gatewayHaKeys(master, gw) } };
}
