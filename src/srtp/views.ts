/**
 * Views of buffer regions, cached by 8-byte-aligned offset. A relay protects and sends
 * equal-sized packets from the same slab offsets turn after turn (sender.ts reuses its slab), so
 * the view made in the previous turn usually fits and no Uint8Array is allocated per packet.
 * The cache holds views of one buffer at a time, so it never keeps an old slab alive.
 */
const MAX_CACHED_OFFSET = 1 << 20;

export class RegionViews {
  #views: (Uint8Array | undefined)[] = [];
  #buffer: ArrayBufferLike | null = null;
  #byteOffset = 0;

  /** buf[off, off+len) as a Uint8Array (the same object as last time when it still fits). */
  of(buf: Uint8Array, off: number, len: number): Uint8Array {
    if ((off & 7) !== 0 || off >= MAX_CACHED_OFFSET) return buf.subarray(off, off + len);
    if (buf.buffer !== this.#buffer || buf.byteOffset !== this.#byteOffset) {
      this.#views = [];
      this.#buffer = buf.buffer;
      this.#byteOffset = buf.byteOffset;
    }
    const k = off >>> 3;
    const v = this.#views[k];
    if (v !== undefined && v.length === len) return v;
    const nv = buf.subarray(off, off + len);
    const views = this.#views;
    while (views.length < k) views.push(undefined);
    views[k] = nv;
    return nv;
  }
}
