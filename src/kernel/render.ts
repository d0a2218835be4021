import { type KernelOp, type NftTable, TETHER_ROUTE_PROTO } from './types.js';

/** Comment prefix of the rule that carries a table's fingerprint. */
export const NFT_FINGERPRINT_PREFIX = 'tether-fp:';

/**
 * Renders one op to the lines it takes in `ip -batch` / `bridge -batch` input (without the
 * leading tool name). Most ops are one line; link-set with `learning` is two.
 */
export function renderIpLines(op: KernelOp): string[] {
  switch (op.op) {
    case 'netns-add':
      return [`netns add ${op.name}`];
    case 'netns-del':
      return [`netns del ${op.name}`];
    case 'vxlan-add':
      return [
        `link add ${op.name}${op.into ? ` netns ${op.into}` : ''} mtu ${op.mtu} type vxlan id ${op.vni} local ${op.local} dev ${op.dev} dstport ${op.dstport} nolearning proxy`,
      ];
    case 'bridge-add':
      return [`link add ${op.name} address ${op.mac} mtu ${op.mtu} type bridge`];
    case 'veth-add':
      return [
        `link add ${op.name} mtu ${op.mtu} type veth peer name ${op.peer} mtu ${op.mtu}${op.peerNetns ? ` netns ${op.peerNetns}` : ''}`,
      ];
    case 'link-move':
      return [`link set dev ${op.name} netns ${op.to}`];
    case 'link-set': {
      const parts = [`link set dev ${op.name}`];
      if (op.mtu !== undefined) parts.push(`mtu ${op.mtu}`);
      if (op.master === null) parts.push('nomaster');
      else if (op.master !== undefined) parts.push(`master ${op.master}`);
      if (op.up !== undefined) parts.push(op.up ? 'up' : 'down');
      const lines = parts.length > 1 ? [parts.join(' ')] : [];
      if (op.learning !== undefined)
        lines.push(`link set dev ${op.name} type bridge_slave learning ${op.learning ? 'on' : 'off'}`);
      return lines;
    }
    case 'link-del':
      return [`link del dev ${op.name}`];
    case 'addr-replace':
      return [`addr replace ${op.cidr} dev ${op.dev}`];
    case 'addr-del':
      return [`addr del ${op.cidr} dev ${op.dev}`];
    case 'route-replace':
      return [
        `route replace ${op.dst}${op.via ? ` via ${op.via}` : ''} dev ${op.dev}${op.onlink ? ' onlink' : ''}${op.table !== undefined ? ` table ${op.table}` : ''} proto ${TETHER_ROUTE_PROTO}`,
      ];
    case 'route-del':
      return [
        `route del ${op.dst}${op.via ? ` via ${op.via}` : ''} dev ${op.dev}${op.table !== undefined ? ` table ${op.table}` : ''} proto ${TETHER_ROUTE_PROTO}`,
      ];
    case 'rule-add':
      return [`rule add priority ${op.priority} fwmark 0x${op.fwmark.toString(16)} table ${op.table}`];
    case 'rule-del':
      return [`rule del priority ${op.priority} fwmark 0x${op.fwmark.toString(16)} table ${op.table}`];
    case 'neigh-replace':
      return [`neigh replace ${op.ip} lladdr ${op.mac} dev ${op.dev} nud permanent`];
    case 'neigh-del':
      return [`neigh del ${op.ip} dev ${op.dev}`];
    case 'fdb-replace':
      return op.target === 'self'
        ? [`fdb replace ${op.mac} dev ${op.dev} dst ${op.dst} self permanent`]
        : [`fdb replace ${op.mac} dev ${op.dev} master static`];
    case 'fdb-del':
      return op.target === 'self'
        ? [`fdb del ${op.mac} dev ${op.dev} dst ${op.dst} self`]
        : [`fdb del ${op.mac} dev ${op.dev} master`];
    default:
      throw new Error(`op ${op.op} is not an ip/bridge batch op`);
  }
}

function nftElements(elements: readonly string[]): string {
  return `{ ${elements.join(', ')} }`;
}

/** The whole-table replacement: create-if-missing, delete, recreate, in one transaction. */
export function renderNftTable(t: NftTable): string {
  const id = `${t.family} ${t.name}`;
  const out = [`table ${id}`, `delete table ${id}`, `table ${id} {`];
  for (const c of t.counters) out.push(`  counter ${c} { }`);
  for (const s of t.sets) {
    const els = s.elements.length ? ` elements = ${nftElements(s.elements)};` : '';
    out.push(`  set ${s.name} { type ${s.type};${els} }`);
  }
  out.push(`  chain fingerprint {`, `    counter comment "${NFT_FINGERPRINT_PREFIX}${t.fingerprint}"`, `  }`);
  for (const ch of t.chains) {
    out.push(`  chain ${ch.name} {`);
    if (ch.base)
      out.push(
        `    type ${ch.base.type} hook ${ch.base.hook} priority ${ch.base.priority}; policy ${ch.base.policy ?? 'accept'};`,
      );
    for (const r of ch.rules) out.push(`    ${r}`);
    out.push('  }');
  }
  out.push('}');
  return out.join('\n');
}

/** Renders nft ops into one `nft -f` script (one transaction). */
export function renderNftScript(ops: readonly KernelOp[]): string {
  const out: string[] = [];
  for (const op of ops) {
    switch (op.op) {
      case 'nft-table':
        out.push(renderNftTable(op.table));
        break;
      case 'nft-set': {
        const id = `${op.family} ${op.table} ${op.set}`;
        out.push(`flush set ${id}`);
        if (op.elements.length) out.push(`add element ${id} ${nftElements(op.elements)}`);
        break;
      }
      case 'nft-table-del':
        out.push(`table ${op.family} ${op.table}`, `delete table ${op.family} ${op.table}`);
        break;
      default:
        throw new Error(`op ${op.op} is not an nft op`);
    }
  }
  return `${out.join('\n')}\n`;
}
