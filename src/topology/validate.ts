/** Argument and option checks shared by both stores, so they refuse the same inputs the same way. */
import { InvalidTopologyArgumentError } from './errors.ts';
import type { RelayRegistration, TopologyOptions } from './types.ts';

/**
 * Stream and relay ids: 1..200 characters of letters, digits and `_ . ~ : @ + -`. Braces are out
 * because Redis keys use `{stream}` as the cluster hash tag; `|` and spaces are out for logs.
 */
const ID_RE = /^[A-Za-z0-9_.~:@+-]{1,200}$/;

export function checkId(kind: 'stream' | 'relay id' | 'viewer id', v: unknown): string {
  if (typeof v !== 'string' || !ID_RE.test(v)) {
    throw new InvalidTopologyArgumentError(`${kind} ${JSON.stringify(v)} is invalid: use 1-200 characters of A-Z a-z 0-9 _ . ~ : @ + -`);
  }
  return v;
}

function checkInt(name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidTopologyArgumentError(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

export interface ResolvedOptions {
  leaseMs: number;
  idleGraceMs: number;
  reapIntervalMs: number;
}

export function resolveOptions(o: TopologyOptions = {}): ResolvedOptions {
  return {
    leaseMs: checkInt('leaseMs', o.leaseMs ?? 5000, 1, 86_400_000),
    idleGraceMs: checkInt('idleGraceMs', o.idleGraceMs ?? 30_000, 0, 86_400_000),
    reapIntervalMs: checkInt('reapIntervalMs', o.reapIntervalMs ?? 0, 0, 3_600_000),
  };
}

export interface CheckedRegistration {
  id: string;
  region: string;
  url: string;
  capacity: number;
  fanout: number;
  leaseMs: number;
  carrying: Array<{ stream: string; parentId: string | null; viewers: string[] }>;
}

export function checkRegistration(reg: RelayRegistration, defaultLeaseMs: number): CheckedRegistration {
  if (typeof reg !== 'object' || reg === null) throw new InvalidTopologyArgumentError('registerRelay needs a registration object');
  const id = checkId('relay id', reg.id);
  const region = reg.region ?? '';
  if (typeof region !== 'string' || (region !== '' && !ID_RE.test(region))) {
    throw new InvalidTopologyArgumentError(`region ${JSON.stringify(region)} is invalid: use '' or 1-200 characters of A-Z a-z 0-9 _ . ~ : @ + -`);
  }
  if (typeof reg.url !== 'string' || !/^https?:\/\/[^\s|]+$/.test(reg.url)) {
    throw new InvalidTopologyArgumentError(`relay url ${JSON.stringify(reg.url)} is invalid: give the relay's base http(s) URL`);
  }
  const capacity = checkInt('capacity', reg.capacity, 1, 1_000_000);
  const fanout = checkInt('fanout', reg.fanout, 0, 1_000_000);
  const leaseMs = checkInt('leaseMs', reg.leaseMs ?? defaultLeaseMs, 1, 86_400_000);
  const carrying: CheckedRegistration['carrying'] = [];
  const seen = new Set<string>();
  for (const c of reg.carrying ?? []) {
    const stream = checkId('stream', c.stream);
    if (seen.has(stream)) throw new InvalidTopologyArgumentError(`carrying lists stream "${stream}" twice`);
    seen.add(stream);
    const parentId = c.parentId === null ? null : checkId('relay id', c.parentId);
    if (parentId === id) throw new InvalidTopologyArgumentError(`relay "${id}" cannot pull "${stream}" from itself`);
    const viewers = (c.viewers ?? []).map((v) => checkId('viewer id', v));
    carrying.push({ stream, parentId, viewers });
  }
  return { id, region, url: reg.url, capacity, fanout, leaseMs, carrying };
}

export function checkLoad(load: unknown): number {
  if (typeof load !== 'number' || !Number.isFinite(load) || load < 0) {
    throw new InvalidTopologyArgumentError(`load must be a finite number >= 0, got ${String(load)}`);
  }
  return load;
}
