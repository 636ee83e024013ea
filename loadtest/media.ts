/**
 * The broadcaster's media: the shipped VP8 clips (IVF) and Opus track (Ogg), their readers, and
 * RTP packetizers for VP8 (RFC 7741) and Opus (RFC 7587). Pure: no sockets, no clock. The
 * broadcaster decides when to send; these functions decide what.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export class MediaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MediaError';
  }
}

// ---------------------------------------------------------------------------------------------
// IVF (the container libvpx writes): 32-byte file header, then per frame a 12-byte header
// (4-byte little-endian size, 8-byte pts) and the frame.

export interface IvfClip {
  fourcc: string;
  width: number;
  height: number;
  /** Frames per second from the header's timebase (rate / scale). */
  fps: number;
  frames: Buffer[];
  /** keyframe[i] is true when frame i is a VP8 keyframe (RFC 6386 section 9.1: bit 0 of the frame tag is 0). */
  keyframe: boolean[];
}

export function parseIvf(buf: Buffer): IvfClip {
  if (buf.length < 32 || buf.toString('latin1', 0, 4) !== 'DKIF') throw new MediaError('not an IVF file (no DKIF signature)');
  const headerLen = buf.readUInt16LE(6);
  const fourcc = buf.toString('latin1', 8, 12);
  const width = buf.readUInt16LE(12);
  const height = buf.readUInt16LE(14);
  const rate = buf.readUInt32LE(16);
  const scale = buf.readUInt32LE(20);
  if (fourcc !== 'VP80') throw new MediaError(`IVF fourcc is ${fourcc}; the load tester sends VP8 (VP80) only`);
  if (!(rate > 0 && scale > 0)) throw new MediaError('IVF timebase is zero');
  const frames: Buffer[] = [];
  const keyframe: boolean[] = [];
  let off = headerLen;
  while (off + 12 <= buf.length) {
    const size = buf.readUInt32LE(off);
    off += 12;
    if (off + size > buf.length) throw new MediaError(`IVF frame ${frames.length} is truncated`);
    const f = buf.subarray(off, off + size);
    frames.push(f);
    keyframe.push(size > 0 && (f[0]! & 0x01) === 0);
    off += size;
  }
  if (frames.length === 0) throw new MediaError('IVF file has no frames');
  return { fourcc, width, height, fps: rate / scale, frames, keyframe };
}

// ---------------------------------------------------------------------------------------------
// Ogg (RFC 3533) carrying Opus (RFC 7845): we only need the audio packets after the two
// header packets (OpusHead, OpusTags).

export function parseOggOpus(buf: Buffer): Buffer[] {
  const packets: Buffer[] = [];
  let partial: Buffer[] = [];
  let off = 0;
  while (off + 27 <= buf.length) {
    if (buf.toString('latin1', off, off + 4) !== 'OggS') throw new MediaError(`Ogg page sync lost at byte ${off}`);
    const nseg = buf[off + 26]!;
    const lacing = buf.subarray(off + 27, off + 27 + nseg);
    let body = off + 27 + nseg;
    for (const len of lacing) {
      partial.push(buf.subarray(body, body + len));
      body += len;
      // A lacing value below 255 ends a packet (RFC 3533 section 6).
      if (len < 255) {
        packets.push(Buffer.concat(partial));
        partial = [];
      }
    }
    off = body;
  }
  const audio = packets.filter((p) => !(p.toString('latin1', 0, 8) === 'OpusHead' || p.toString('latin1', 0, 8) === 'OpusTags'));
  if (audio.length === 0) throw new MediaError('Ogg file has no Opus audio packets');
  return audio;
}

/** Opus frame duration in ms from the TOC byte (RFC 6716 section 3.1), times the frame count. */
export function opusPacketDurationMs(p: Buffer): number {
  if (p.length < 1) return 0;
  const toc = p[0]!;
  const config = toc >> 3;
  let frameMs: number;
  if (config < 12) frameMs = [10, 20, 40, 60][config & 3]!;
  else if (config < 16) frameMs = [10, 20][config & 1]!;
  else frameMs = [2.5, 5, 10, 20][config & 3]!;
  const c = toc & 3;
  const count = c === 0 ? 1 : c === 3 ? (p.length > 1 ? p[1]! & 0x3f : 0) : 2;
  return frameMs * count;
}

// ---------------------------------------------------------------------------------------------
// Packetizers

export const VP8_MAX_PAYLOAD = 1100;

/**
 * Split one VP8 frame into RTP payloads (RFC 7741 section 4.2): each starts with a payload
 * descriptor carrying X=1, I=1 and a 15-bit PictureID (so receivers can tell frames apart
 * across loss), S=1 on the first packet of the frame, PID 0. Each payload is at most maxPayload
 * bytes including the 4-byte descriptor; the marker goes on the last (section 4.1).
 */
export function packetizeVp8(frame: Buffer, pictureId: number, maxPayload = VP8_MAX_PAYLOAD): Buffer[] {
  const DESC = 4;
  if (maxPayload <= DESC) throw new MediaError(`maxPayload must exceed the ${DESC}-byte descriptor`);
  const chunk = maxPayload - DESC;
  const out: Buffer[] = [];
  const pid = pictureId & 0x7fff;
  for (let off = 0; off < frame.length || (off === 0 && frame.length === 0); off += chunk) {
    const part = frame.subarray(off, Math.min(frame.length, off + chunk));
    const p = Buffer.allocUnsafe(DESC + part.length);
    p[0] = 0x80 | (off === 0 ? 0x10 : 0); // X, S; N=0, PID=0
    p[1] = 0x80; // I
    p[2] = 0x80 | (pid >> 8); // M=1: 15-bit PictureID
    p[3] = pid & 0xff;
    part.copy(p, DESC);
    out.push(p);
    if (frame.length === 0) break;
  }
  return out;
}

/** Opus: one Opus packet per RTP packet, payload as is (RFC 7587 section 4.2). */
export function packetizeOpus(packet: Buffer): Buffer {
  return packet;
}

// ---------------------------------------------------------------------------------------------
// The shipped clips

export type BitrateClass = 'low' | 'high';
export const BITRATE_CLASSES: Record<BitrateClass, number> = { low: 500_000, high: 1_500_000 };
/** Keyframe intervals the shipped clips were encoded with (see loadtest/media/README.md). */
export const KEYFRAME_INTERVALS_S = [1, 4] as const;

export interface ClipChoice {
  bitrate: BitrateClass;
  keyframeIntervalS: number;
}

export function clipPath(c: ClipChoice): string {
  if (!(c.bitrate in BITRATE_CLASSES)) throw new MediaError(`unknown bitrate class ${c.bitrate}; use ${Object.keys(BITRATE_CLASSES).join(' or ')}`);
  if (!(KEYFRAME_INTERVALS_S as readonly number[]).includes(c.keyframeIntervalS)) {
    throw new MediaError(`keyframe interval ${c.keyframeIntervalS}s has no shipped clip; use ${KEYFRAME_INTERVALS_S.join('s or ')}s (clips are encoded with a fixed GOP)`);
  }
  return fileURLToPath(new URL(`./media/vp8-${c.bitrate}-gop${c.keyframeIntervalS}s.ivf`, import.meta.url));
}

export const AUDIO_PATH = fileURLToPath(new URL('./media/audio.opus.ogg', import.meta.url));

export function loadVideo(c: ClipChoice): IvfClip {
  return parseIvf(readFileSync(clipPath(c)));
}

export function loadAudio(): Buffer[] {
  return parseOggOpus(readFileSync(AUDIO_PATH));
}

// ---------------------------------------------------------------------------------------------
// Looping schedule: which frame is due at a given time since the start, and its RTP timestamp.

export interface LoopFrame {
  /** Index into the clip. */
  index: number;
  /** Monotonic frame counter since the start (loops continue counting). */
  n: number;
  /** RTP timestamp offset from the first frame, in clock-rate units (advances across loops). */
  rtpTs: number;
  /** Due time in ms since the start. */
  dueMs: number;
}

/**
 * Frame n of a clip of `length` frames at `fps`, looped: the clip index wraps, timestamps keep
 * advancing (so the receiver sees one continuous stream). `jumpTo` lets the broadcaster answer
 * a keyframe request by continuing from a keyframe index.
 */
export class ClipLoop {
  readonly length: number;
  readonly frameMs: number;
  readonly tsStep: number;
  #n = 0;
  #index = 0;
  constructor(length: number, fps: number, clockRate: number) {
    if (!(length >= 1)) throw new MediaError('ClipLoop: clip needs at least one frame');
    if (!(fps > 0)) throw new MediaError('ClipLoop: fps must be > 0');
    this.length = length;
    this.frameMs = 1000 / fps;
    this.tsStep = clockRate / fps;
  }
  /** The next frame to send. */
  peek(): LoopFrame {
    return { index: this.#index, n: this.#n, rtpTs: Math.round(this.#n * this.tsStep), dueMs: this.#n * this.frameMs };
  }
  advance(): void {
    this.#n++;
    this.#index = (this.#index + 1) % this.length;
  }
  /** Continue from clip index i at the next frame (e.g. a keyframe, to answer a PLI). */
  jumpTo(i: number): void {
    if (!(i >= 0 && i < this.length)) throw new MediaError(`ClipLoop.jumpTo: index ${i} outside the clip`);
    this.#index = i;
  }
}

/** FNV-1a 32-bit over a buffer: viewers that decrypt check reassembled frames against the clip. */
export function fnv1a(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) {
    h ^= b[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
