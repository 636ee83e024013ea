/**
 * Reading RTP headers straight from the bytes (RFC 3550 section 5.1) with header extensions
 * (RFC 8285 one-byte and two-byte forms). Under SRTP (RFC 3711 section 3.1) the header and its
 * extensions are in the clear, so light viewers call this on the still-encrypted packet.
 * Never throws on bad input: returns undefined.
 */

export interface RtpView {
  marker: boolean;
  payloadType: number;
  seq: number;
  timestamp: number;
  ssrc: number;
  /** Offset of the payload (after CSRCs and extensions). */
  payloadOffset: number;
  /** Padding bytes at the end (only knowable once decrypted; 0 for SRTP ciphertext). */
  padding: number;
  /** Extension elements by id: [offset, length] into the packet. */
  extensions: Map<number, [number, number]>;
}

export function parseRtp(b: Uint8Array, readPadding = true): RtpView | undefined {
  if (b.byteLength < 12) return undefined;
  const b0 = b[0]!;
  if (b0 >> 6 !== 2) return undefined;
  const cc = b0 & 0x0f;
  const hasExt = (b0 & 0x10) !== 0;
  const hasPad = (b0 & 0x20) !== 0;
  const b1 = b[1]!;
  let off = 12 + 4 * cc;
  if (off > b.byteLength) return undefined;
  const extensions = new Map<number, [number, number]>();
  if (hasExt) {
    if (off + 4 > b.byteLength) return undefined;
    const profile = (b[off]! << 8) | b[off + 1]!;
    const words = (b[off + 2]! << 8) | b[off + 3]!;
    const start = off + 4;
    const end = start + words * 4;
    if (end > b.byteLength) return undefined;
    if (profile === 0xbede) {
      // One-byte header (RFC 8285 section 4.2): ID 15 stops parsing, ID 0 is padding.
      let i = start;
      while (i < end) {
        const h = b[i]!;
        if (h === 0) {
          i++;
          continue;
        }
        const id = h >> 4;
        const len = (h & 0x0f) + 1;
        if (id === 15) break;
        if (i + 1 + len > end) return undefined;
        extensions.set(id, [i + 1, len]);
        i += 1 + len;
      }
    } else if ((profile & 0xfff0) === 0x1000) {
      // Two-byte header (RFC 8285 section 4.3).
      let i = start;
      while (i + 1 < end) {
        const id = b[i]!;
        if (id === 0) {
          i++;
          continue;
        }
        const len = b[i + 1]!;
        if (i + 2 + len > end) return undefined;
        extensions.set(id, [i + 2, len]);
        i += 2 + len;
      }
    }
    off = end;
  }
  let padding = 0;
  if (hasPad && readPadding) {
    padding = b[b.byteLength - 1]!;
    if (off + padding > b.byteLength) return undefined;
  }
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    marker: (b1 & 0x80) !== 0,
    payloadType: b1 & 0x7f,
    seq: dv.getUint16(2),
    timestamp: dv.getUint32(4),
    ssrc: dv.getUint32(8),
    payloadOffset: off,
    padding,
    extensions,
  };
}

/** RTCP or RTP on a shared port (RFC 5761 section 4): payload types 64-95 are RTCP. */
export function isRtcp(b: Uint8Array): boolean {
  return b.byteLength >= 2 && b[1]! >= 192 && b[1]! <= 223;
}
