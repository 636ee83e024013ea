/**
 * Header extension id translation between the upstream leg and one downstream leg.
 *
 * Each leg negotiates its own RFC 8285 ids (werift even renumbers its own offers), so a packet
 * forwarded verbatim would carry ids that mean something else to the viewer. The relay rewrites
 * the id of each element in place (the out copy is per downstream); values are untouched, so
 * abs-capture-time arrives byte-identical. Elements the downstream did not negotiate, and the MID
 * (whose value names the publisher's m-line, not the viewer's: demultiplexing falls back to the
 * SSRCs signalled in our answer, RFC 8843 §9.2), get an id the downstream does not use, which
 * receivers ignore (RFC 8285 §4.2... "MUST ignore" unknown ids).
 */
import { EXT_MID } from './media.ts';

/** A 256-entry id map (index: upstream id), or null when forwarding ids unchanged is correct. */
export function buildExtMap(upstream: Map<string, number>, downstream: Map<string, number>): Uint8Array | null {
  const used = new Set(downstream.values());
  let spare = 0;
  for (let id = 14; id >= 1; id--) {
    if (!used.has(id)) {
      spare = id;
      break;
    }
  }
  const map = new Uint8Array(256);
  for (let i = 0; i < 256; i++) map[i] = i;
  let identity = true;
  const byId = new Map<number, string>();
  for (const [uri, id] of upstream) byId.set(id, uri);
  for (let id = 1; id < 256; id++) {
    const uri = byId.get(id);
    let to: number;
    if (uri === undefined) {
      // Not negotiated upstream: the sender should not have used it; make sure the viewer ignores it.
      to = used.has(id) ? spare : id;
    } else if (uri === EXT_MID) {
      to = spare;
    } else {
      to = downstream.get(uri) ?? spare;
    }
    if (id < 15 && to === 0) to = 15; // no spare id left: 15 stops parsing (RFC 8285 §4.2)
    map[id] = to;
    if (to !== id) identity = false;
  }
  return identity ? null : map;
}

/** Rewrite extension ids of the RTP packet at buf[off, off+len) in place. Malformed blocks are left alone. */
export function remapExtIds(buf: Uint8Array, off: number, len: number, map: Uint8Array): void {
  const b0 = buf[off]!;
  if (!(b0 & 0x10)) return;
  let p = off + 12 + (b0 & 0x0f) * 4;
  const limit = off + len;
  if (p + 4 > limit) return;
  const profile = (buf[p]! << 8) | buf[p + 1]!;
  const end = p + 4 + ((buf[p + 2]! << 8) | buf[p + 3]!) * 4;
  p += 4;
  if (end > limit) return;
  if (profile === 0xbede) {
    // RFC 8285 §4.2 one-byte elements: 4-bit id, 4-bit length-1; id 0 is padding, 15 ends the block.
    while (p < end) {
      const h = buf[p]!;
      if (h === 0) {
        p++;
        continue;
      }
      const id = h >> 4;
      if (id === 15) return;
      buf[p] = ((map[id]! & 0x0f) << 4) | (h & 0x0f);
      p += 2 + (h & 0x0f);
    }
  } else if ((profile & 0xfff0) === 0x1000) {
    // RFC 8285 §4.3 two-byte elements: 8-bit id, 8-bit length.
    while (p + 1 < end) {
      const id = buf[p]!;
      if (id === 0) {
        p++;
        continue;
      }
      buf[p] = map[id]!;
      p += 2 + buf[p + 1]!;
    }
  }
}
