/** Extension id translation between legs (src/relay/extmap.ts). */
import { describe, expect, it } from 'vitest';
import { buildExtMap, remapExtIds } from '../src/relay/extmap.ts';
import { EXT_ABS_CAPTURE_TIME, EXT_MID, EXT_AUDIO_LEVEL } from '../src/relay/media.ts';

/** RTP header with a one-byte extension block holding `elems` ([id, bytes]). */
function packet(elems: [number, number[]][], profile = 0xbede): Buffer {
  const body: number[] = [];
  for (const [id, v] of elems) {
    if (profile === 0xbede) body.push((id << 4) | (v.length - 1), ...v);
    else body.push(id, v.length, ...v);
  }
  while (body.length % 4) body.push(0);
  const b = Buffer.alloc(12 + 4 + body.length + 3);
  b[0] = 0x90;
  b[1] = 96;
  b.writeUInt16BE(profile, 12);
  b.writeUInt16BE(body.length / 4, 14);
  Buffer.from(body).copy(b, 16);
  b.set([1, 2, 3], 16 + body.length);
  return b;
}

describe('extension id translation', () => {
  const up = new Map([
    [EXT_MID, 3],
    [EXT_ABS_CAPTURE_TIME, 4],
  ]);
  it('identity when both legs agree and no MID is negotiated', () => {
    expect(buildExtMap(new Map([[EXT_ABS_CAPTURE_TIME, 4]]), new Map([[EXT_ABS_CAPTURE_TIME, 4]]))).toBeNull();
  });
  it('renumbers values by URI and hides the MID behind an id the downstream does not use', () => {
    const down = new Map([
      [EXT_MID, 1],
      [EXT_ABS_CAPTURE_TIME, 2],
      [EXT_AUDIO_LEVEL, 3],
    ]);
    const map = buildExtMap(up, down)!;
    expect(map[4]).toBe(2);
    expect([...down.values()]).not.toContain(map[3]);
    const abs = [1, 2, 3, 4, 5, 6, 7, 8];
    const p = packet([
      [3, [0x30]],
      [4, abs],
    ]);
    const before = Buffer.from(p);
    remapExtIds(p, 0, p.length, map);
    expect(p[16]! >> 4).toBe(map[3]);
    expect(p[18]! >> 4).toBe(2);
    expect([...p.subarray(19, 27)]).toEqual(abs); // values untouched
    expect(p.subarray(p.length - 3)).toEqual(before.subarray(before.length - 3)); // payload untouched
  });
  it('two-byte profile and malformed blocks', () => {
    const map = buildExtMap(up, new Map([[EXT_ABS_CAPTURE_TIME, 9]]))!;
    const p = packet([[4, [1, 2]]], 0x1000);
    remapExtIds(p, 0, p.length, map);
    expect(p[16]).toBe(9);
    // A length field that runs past the packet is left alone, never read past the end.
    const bad = packet([[4, [1, 2]]]);
    bad.writeUInt16BE(200, 14);
    const copy = Buffer.from(bad);
    remapExtIds(bad, 0, bad.length, map);
    expect(bad).toEqual(copy);
    for (let n = 0; n < 20; n++) remapExtIds(bad, 0, n, map); // truncated views
  });
});
