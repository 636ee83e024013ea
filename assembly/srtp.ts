// HMAC-SHA1 (RFC 2104) with precomputed inner/outer pad states: the SRTP fast path's 80-bit
// authentication tag (RFC 3711 §4.2.1). Measured faster per 1100-byte packet than a Node
// createHmac object per packet (bench/srtp.ts, docs/architecture.md), because the key's two pad
// blocks are hashed once per key instead of once per packet and no object is created.
// src/srtp/hmac.ts instantiates the core module a second time (own memory) to use these.
// Every export is prefixed srtp_ because assembly/index.ts re-exports this module.
// Sans-IO: pure functions over linear memory; the caller copies data into the areas below.

/** Largest message srtp_hmac_sha1 accepts (bytes); src/srtp/hmac.ts mirrors it. */
const HMAC_MAX: i32 = 4096;

const MSG = memory.data(4096 + 64, 16);
const STATES = memory.data(48, 16);
const OUT = memory.data(32, 16);
const TAIL = memory.data(128, 16);
const ST = memory.data(32, 16);
const INNER = memory.data(32, 16);
const PAD = memory.data(64, 16);

/** Address of the HMAC_MAX-byte message area callers copy packets (or keys) into. */
export function srtp_msg_ptr(): usize { return MSG; }
/** Address of a 40-byte area for a key's precomputed states. */
export function srtp_states_ptr(): usize { return STATES; }
/** Address of a 20-byte area for a digest. */
export function srtp_out_ptr(): usize { return OUT; }

@inline function rd(p: usize): u32 { return bswap<u32>(load<u32>(p)); }

/** SHA-1 compression (FIPS 180-4 §6.1.2), fully unrolled, schedule in 16 rolling locals. */
function compress(st: usize, p: usize): void {
  let a = load<u32>(st), b = load<u32>(st, 4), c = load<u32>(st, 8), d = load<u32>(st, 12), e = load<u32>(st, 16);
  let w0 = rd(p), w1 = rd(p + 4), w2 = rd(p + 8), w3 = rd(p + 12), w4 = rd(p + 16), w5 = rd(p + 20);
  let w6 = rd(p + 24), w7 = rd(p + 28), w8 = rd(p + 32), w9 = rd(p + 36), w10 = rd(p + 40), w11 = rd(p + 44);
  let w12 = rd(p + 48), w13 = rd(p + 52), w14 = rd(p + 56), w15 = rd(p + 60);
  // 80 rounds, unrolled: instead of shifting a..e each round the five variables rotate roles
  // (the round's "e" receives T), and W[t] for t >= 16 overwrites w[t mod 16] (§6.1.2 step 1).
  // f is Ch = d ^ (b & (c ^ d)) for t < 20, Parity for 20..39 and 60..79, Maj for 40..59.
  e += rotl<u32>(a, 5) + ((d ^ (b & (c ^ d)))) + 0x5a827999 + w0; b = rotl<u32>(b, 30);
  d += rotl<u32>(e, 5) + ((c ^ (a & (b ^ c)))) + 0x5a827999 + w1; a = rotl<u32>(a, 30);
  c += rotl<u32>(d, 5) + ((b ^ (e & (a ^ b)))) + 0x5a827999 + w2; e = rotl<u32>(e, 30);
  b += rotl<u32>(c, 5) + ((a ^ (d & (e ^ a)))) + 0x5a827999 + w3; d = rotl<u32>(d, 30);
  a += rotl<u32>(b, 5) + ((e ^ (c & (d ^ e)))) + 0x5a827999 + w4; c = rotl<u32>(c, 30);
  e += rotl<u32>(a, 5) + ((d ^ (b & (c ^ d)))) + 0x5a827999 + w5; b = rotl<u32>(b, 30);
  d += rotl<u32>(e, 5) + ((c ^ (a & (b ^ c)))) + 0x5a827999 + w6; a = rotl<u32>(a, 30);
  c += rotl<u32>(d, 5) + ((b ^ (e & (a ^ b)))) + 0x5a827999 + w7; e = rotl<u32>(e, 30);
  b += rotl<u32>(c, 5) + ((a ^ (d & (e ^ a)))) + 0x5a827999 + w8; d = rotl<u32>(d, 30);
  a += rotl<u32>(b, 5) + ((e ^ (c & (d ^ e)))) + 0x5a827999 + w9; c = rotl<u32>(c, 30);
  e += rotl<u32>(a, 5) + ((d ^ (b & (c ^ d)))) + 0x5a827999 + w10; b = rotl<u32>(b, 30);
  d += rotl<u32>(e, 5) + ((c ^ (a & (b ^ c)))) + 0x5a827999 + w11; a = rotl<u32>(a, 30);
  c += rotl<u32>(d, 5) + ((b ^ (e & (a ^ b)))) + 0x5a827999 + w12; e = rotl<u32>(e, 30);
  b += rotl<u32>(c, 5) + ((a ^ (d & (e ^ a)))) + 0x5a827999 + w13; d = rotl<u32>(d, 30);
  a += rotl<u32>(b, 5) + ((e ^ (c & (d ^ e)))) + 0x5a827999 + w14; c = rotl<u32>(c, 30);
  e += rotl<u32>(a, 5) + ((d ^ (b & (c ^ d)))) + 0x5a827999 + w15; b = rotl<u32>(b, 30);
  w0 = rotl<u32>(w13 ^ w8 ^ w2 ^ w0, 1);
  d += rotl<u32>(e, 5) + ((c ^ (a & (b ^ c)))) + 0x5a827999 + w0; a = rotl<u32>(a, 30);
  w1 = rotl<u32>(w14 ^ w9 ^ w3 ^ w1, 1);
  c += rotl<u32>(d, 5) + ((b ^ (e & (a ^ b)))) + 0x5a827999 + w1; e = rotl<u32>(e, 30);
  w2 = rotl<u32>(w15 ^ w10 ^ w4 ^ w2, 1);
  b += rotl<u32>(c, 5) + ((a ^ (d & (e ^ a)))) + 0x5a827999 + w2; d = rotl<u32>(d, 30);
  w3 = rotl<u32>(w0 ^ w11 ^ w5 ^ w3, 1);
  a += rotl<u32>(b, 5) + ((e ^ (c & (d ^ e)))) + 0x5a827999 + w3; c = rotl<u32>(c, 30);
  w4 = rotl<u32>(w1 ^ w12 ^ w6 ^ w4, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0x6ed9eba1 + w4; b = rotl<u32>(b, 30);
  w5 = rotl<u32>(w2 ^ w13 ^ w7 ^ w5, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0x6ed9eba1 + w5; a = rotl<u32>(a, 30);
  w6 = rotl<u32>(w3 ^ w14 ^ w8 ^ w6, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0x6ed9eba1 + w6; e = rotl<u32>(e, 30);
  w7 = rotl<u32>(w4 ^ w15 ^ w9 ^ w7, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0x6ed9eba1 + w7; d = rotl<u32>(d, 30);
  w8 = rotl<u32>(w5 ^ w0 ^ w10 ^ w8, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0x6ed9eba1 + w8; c = rotl<u32>(c, 30);
  w9 = rotl<u32>(w6 ^ w1 ^ w11 ^ w9, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0x6ed9eba1 + w9; b = rotl<u32>(b, 30);
  w10 = rotl<u32>(w7 ^ w2 ^ w12 ^ w10, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0x6ed9eba1 + w10; a = rotl<u32>(a, 30);
  w11 = rotl<u32>(w8 ^ w3 ^ w13 ^ w11, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0x6ed9eba1 + w11; e = rotl<u32>(e, 30);
  w12 = rotl<u32>(w9 ^ w4 ^ w14 ^ w12, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0x6ed9eba1 + w12; d = rotl<u32>(d, 30);
  w13 = rotl<u32>(w10 ^ w5 ^ w15 ^ w13, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0x6ed9eba1 + w13; c = rotl<u32>(c, 30);
  w14 = rotl<u32>(w11 ^ w6 ^ w0 ^ w14, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0x6ed9eba1 + w14; b = rotl<u32>(b, 30);
  w15 = rotl<u32>(w12 ^ w7 ^ w1 ^ w15, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0x6ed9eba1 + w15; a = rotl<u32>(a, 30);
  w0 = rotl<u32>(w13 ^ w8 ^ w2 ^ w0, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0x6ed9eba1 + w0; e = rotl<u32>(e, 30);
  w1 = rotl<u32>(w14 ^ w9 ^ w3 ^ w1, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0x6ed9eba1 + w1; d = rotl<u32>(d, 30);
  w2 = rotl<u32>(w15 ^ w10 ^ w4 ^ w2, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0x6ed9eba1 + w2; c = rotl<u32>(c, 30);
  w3 = rotl<u32>(w0 ^ w11 ^ w5 ^ w3, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0x6ed9eba1 + w3; b = rotl<u32>(b, 30);
  w4 = rotl<u32>(w1 ^ w12 ^ w6 ^ w4, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0x6ed9eba1 + w4; a = rotl<u32>(a, 30);
  w5 = rotl<u32>(w2 ^ w13 ^ w7 ^ w5, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0x6ed9eba1 + w5; e = rotl<u32>(e, 30);
  w6 = rotl<u32>(w3 ^ w14 ^ w8 ^ w6, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0x6ed9eba1 + w6; d = rotl<u32>(d, 30);
  w7 = rotl<u32>(w4 ^ w15 ^ w9 ^ w7, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0x6ed9eba1 + w7; c = rotl<u32>(c, 30);
  w8 = rotl<u32>(w5 ^ w0 ^ w10 ^ w8, 1);
  e += rotl<u32>(a, 5) + ((b & c) | (d & (b | c))) + 0x8f1bbcdc + w8; b = rotl<u32>(b, 30);
  w9 = rotl<u32>(w6 ^ w1 ^ w11 ^ w9, 1);
  d += rotl<u32>(e, 5) + ((a & b) | (c & (a | b))) + 0x8f1bbcdc + w9; a = rotl<u32>(a, 30);
  w10 = rotl<u32>(w7 ^ w2 ^ w12 ^ w10, 1);
  c += rotl<u32>(d, 5) + ((e & a) | (b & (e | a))) + 0x8f1bbcdc + w10; e = rotl<u32>(e, 30);
  w11 = rotl<u32>(w8 ^ w3 ^ w13 ^ w11, 1);
  b += rotl<u32>(c, 5) + ((d & e) | (a & (d | e))) + 0x8f1bbcdc + w11; d = rotl<u32>(d, 30);
  w12 = rotl<u32>(w9 ^ w4 ^ w14 ^ w12, 1);
  a += rotl<u32>(b, 5) + ((c & d) | (e & (c | d))) + 0x8f1bbcdc + w12; c = rotl<u32>(c, 30);
  w13 = rotl<u32>(w10 ^ w5 ^ w15 ^ w13, 1);
  e += rotl<u32>(a, 5) + ((b & c) | (d & (b | c))) + 0x8f1bbcdc + w13; b = rotl<u32>(b, 30);
  w14 = rotl<u32>(w11 ^ w6 ^ w0 ^ w14, 1);
  d += rotl<u32>(e, 5) + ((a & b) | (c & (a | b))) + 0x8f1bbcdc + w14; a = rotl<u32>(a, 30);
  w15 = rotl<u32>(w12 ^ w7 ^ w1 ^ w15, 1);
  c += rotl<u32>(d, 5) + ((e & a) | (b & (e | a))) + 0x8f1bbcdc + w15; e = rotl<u32>(e, 30);
  w0 = rotl<u32>(w13 ^ w8 ^ w2 ^ w0, 1);
  b += rotl<u32>(c, 5) + ((d & e) | (a & (d | e))) + 0x8f1bbcdc + w0; d = rotl<u32>(d, 30);
  w1 = rotl<u32>(w14 ^ w9 ^ w3 ^ w1, 1);
  a += rotl<u32>(b, 5) + ((c & d) | (e & (c | d))) + 0x8f1bbcdc + w1; c = rotl<u32>(c, 30);
  w2 = rotl<u32>(w15 ^ w10 ^ w4 ^ w2, 1);
  e += rotl<u32>(a, 5) + ((b & c) | (d & (b | c))) + 0x8f1bbcdc + w2; b = rotl<u32>(b, 30);
  w3 = rotl<u32>(w0 ^ w11 ^ w5 ^ w3, 1);
  d += rotl<u32>(e, 5) + ((a & b) | (c & (a | b))) + 0x8f1bbcdc + w3; a = rotl<u32>(a, 30);
  w4 = rotl<u32>(w1 ^ w12 ^ w6 ^ w4, 1);
  c += rotl<u32>(d, 5) + ((e & a) | (b & (e | a))) + 0x8f1bbcdc + w4; e = rotl<u32>(e, 30);
  w5 = rotl<u32>(w2 ^ w13 ^ w7 ^ w5, 1);
  b += rotl<u32>(c, 5) + ((d & e) | (a & (d | e))) + 0x8f1bbcdc + w5; d = rotl<u32>(d, 30);
  w6 = rotl<u32>(w3 ^ w14 ^ w8 ^ w6, 1);
  a += rotl<u32>(b, 5) + ((c & d) | (e & (c | d))) + 0x8f1bbcdc + w6; c = rotl<u32>(c, 30);
  w7 = rotl<u32>(w4 ^ w15 ^ w9 ^ w7, 1);
  e += rotl<u32>(a, 5) + ((b & c) | (d & (b | c))) + 0x8f1bbcdc + w7; b = rotl<u32>(b, 30);
  w8 = rotl<u32>(w5 ^ w0 ^ w10 ^ w8, 1);
  d += rotl<u32>(e, 5) + ((a & b) | (c & (a | b))) + 0x8f1bbcdc + w8; a = rotl<u32>(a, 30);
  w9 = rotl<u32>(w6 ^ w1 ^ w11 ^ w9, 1);
  c += rotl<u32>(d, 5) + ((e & a) | (b & (e | a))) + 0x8f1bbcdc + w9; e = rotl<u32>(e, 30);
  w10 = rotl<u32>(w7 ^ w2 ^ w12 ^ w10, 1);
  b += rotl<u32>(c, 5) + ((d & e) | (a & (d | e))) + 0x8f1bbcdc + w10; d = rotl<u32>(d, 30);
  w11 = rotl<u32>(w8 ^ w3 ^ w13 ^ w11, 1);
  a += rotl<u32>(b, 5) + ((c & d) | (e & (c | d))) + 0x8f1bbcdc + w11; c = rotl<u32>(c, 30);
  w12 = rotl<u32>(w9 ^ w4 ^ w14 ^ w12, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0xca62c1d6 + w12; b = rotl<u32>(b, 30);
  w13 = rotl<u32>(w10 ^ w5 ^ w15 ^ w13, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0xca62c1d6 + w13; a = rotl<u32>(a, 30);
  w14 = rotl<u32>(w11 ^ w6 ^ w0 ^ w14, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0xca62c1d6 + w14; e = rotl<u32>(e, 30);
  w15 = rotl<u32>(w12 ^ w7 ^ w1 ^ w15, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0xca62c1d6 + w15; d = rotl<u32>(d, 30);
  w0 = rotl<u32>(w13 ^ w8 ^ w2 ^ w0, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0xca62c1d6 + w0; c = rotl<u32>(c, 30);
  w1 = rotl<u32>(w14 ^ w9 ^ w3 ^ w1, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0xca62c1d6 + w1; b = rotl<u32>(b, 30);
  w2 = rotl<u32>(w15 ^ w10 ^ w4 ^ w2, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0xca62c1d6 + w2; a = rotl<u32>(a, 30);
  w3 = rotl<u32>(w0 ^ w11 ^ w5 ^ w3, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0xca62c1d6 + w3; e = rotl<u32>(e, 30);
  w4 = rotl<u32>(w1 ^ w12 ^ w6 ^ w4, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0xca62c1d6 + w4; d = rotl<u32>(d, 30);
  w5 = rotl<u32>(w2 ^ w13 ^ w7 ^ w5, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0xca62c1d6 + w5; c = rotl<u32>(c, 30);
  w6 = rotl<u32>(w3 ^ w14 ^ w8 ^ w6, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0xca62c1d6 + w6; b = rotl<u32>(b, 30);
  w7 = rotl<u32>(w4 ^ w15 ^ w9 ^ w7, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0xca62c1d6 + w7; a = rotl<u32>(a, 30);
  w8 = rotl<u32>(w5 ^ w0 ^ w10 ^ w8, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0xca62c1d6 + w8; e = rotl<u32>(e, 30);
  w9 = rotl<u32>(w6 ^ w1 ^ w11 ^ w9, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0xca62c1d6 + w9; d = rotl<u32>(d, 30);
  w10 = rotl<u32>(w7 ^ w2 ^ w12 ^ w10, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0xca62c1d6 + w10; c = rotl<u32>(c, 30);
  w11 = rotl<u32>(w8 ^ w3 ^ w13 ^ w11, 1);
  e += rotl<u32>(a, 5) + (b ^ c ^ d) + 0xca62c1d6 + w11; b = rotl<u32>(b, 30);
  w12 = rotl<u32>(w9 ^ w4 ^ w14 ^ w12, 1);
  d += rotl<u32>(e, 5) + (a ^ b ^ c) + 0xca62c1d6 + w12; a = rotl<u32>(a, 30);
  w13 = rotl<u32>(w10 ^ w5 ^ w15 ^ w13, 1);
  c += rotl<u32>(d, 5) + (e ^ a ^ b) + 0xca62c1d6 + w13; e = rotl<u32>(e, 30);
  w14 = rotl<u32>(w11 ^ w6 ^ w0 ^ w14, 1);
  b += rotl<u32>(c, 5) + (d ^ e ^ a) + 0xca62c1d6 + w14; d = rotl<u32>(d, 30);
  w15 = rotl<u32>(w12 ^ w7 ^ w1 ^ w15, 1);
  a += rotl<u32>(b, 5) + (c ^ d ^ e) + 0xca62c1d6 + w15; c = rotl<u32>(c, 30);
  store<u32>(st, load<u32>(st) + a);
  store<u32>(st, load<u32>(st, 4) + b, 4);
  store<u32>(st, load<u32>(st, 8) + c, 8);
  store<u32>(st, load<u32>(st, 12) + d, 12);
  store<u32>(st, load<u32>(st, 16) + e, 16);
}

function initState(st: usize): void {
  store<u32>(st, 0x67452301);
  store<u32>(st, 0xefcdab89, 4);
  store<u32>(st, 0x98badcfe, 8);
  store<u32>(st, 0x10325476, 12);
  store<u32>(st, 0xc3d2e1f0, 16);
}

/** Hash `len` bytes at msg continuing from the 20-byte state at `from` (one 64-byte block already absorbed) into ST. */
function finish(from: usize, msg: usize, len: i32): void {
  memory.copy(ST, from, 20);
  let p = msg;
  let n = len;
  while (n >= 64) {
    compress(ST, p);
    p += 64;
    n -= 64;
  }
  memory.fill(TAIL, 0, 128);
  memory.copy(TAIL, p, <usize>n);
  store<u8>(TAIL + <usize>n, 0x80);
  const tl: usize = n + 9 <= 64 ? 64 : 128;
  store<u64>(TAIL + tl - 8, bswap<u64>((<u64>(64 + len)) << 3));
  compress(ST, TAIL);
  if (tl == 128) compress(ST, TAIL + 64);
}

/**
 * Precompute the HMAC inner and outer states for a key of at most 64 bytes: 40 bytes at
 * `states` (inner state, then outer state). Returns 0, or -1 if the key is too long.
 */
export function srtp_hmac_sha1_setkey(key: usize, keyLen: i32, states: usize): i32 {
  if (keyLen < 0 || keyLen > 64) return -1;
  for (let pass = 0; pass < 2; pass++) {
    const fill: u8 = pass == 0 ? 0x36 : 0x5c;
    memory.fill(PAD, fill, 64);
    for (let i = 0; i < keyLen; i++) store<u8>(PAD + i, load<u8>(key + i) ^ fill);
    const st = states + <usize>(pass * 20);
    initState(st);
    compress(st, PAD);
  }
  return 0;
}

/** HMAC-SHA1 of msg[0, len) under precomputed `states`; 20 bytes to `out`. Returns 0 or -1 (len out of range). */
export function srtp_hmac_sha1(states: usize, msg: usize, len: i32, out: usize): i32 {
  if (len < 0 || len > HMAC_MAX) return -1;
  finish(states, msg, len);
  for (let i: usize = 0; i < 20; i += 4) store<u32>(INNER + i, bswap<u32>(load<u32>(ST + i)));
  finish(states + 20, INNER, 20);
  for (let i: usize = 0; i < 20; i += 4) store<u32>(out + i, bswap<u32>(load<u32>(ST + i)));
  return 0;
}


// ---- four messages at once ------------------------------------------------------------------
// A relay protects the same packet for many viewers: equal lengths, different keys. SHA-1 of
// four equal-length messages runs in the four 32-bit lanes of v128 (multi-buffer hashing), one
// message per lane, which costs about a third per message of the scalar code above.

const MSG4 = memory.data(4 * (4096 + 64), 16);
const STATES4 = memory.data(4 * 48, 16);
const OUT4 = memory.data(4 * 32, 16);
const TAIL4 = memory.data(4 * 128, 16);
const ST4 = memory.data(80, 16);
const INNER4 = memory.data(4 * 64, 16);

/** Address of message area `lane` (0..3) for srtp_hmac_sha1_x4, 4096 + 64 bytes each. */
export function srtp_msg4_ptr(lane: i32): usize { return MSG4 + <usize>(lane & 3) * (4096 + 64); }
/** Address of 4 × 40 bytes: the precomputed states of lane 0..3's keys, one after another. */
export function srtp_states4_ptr(): usize { return STATES4; }
/** Address of 4 × 20 bytes: lane 0..3's digests after srtp_hmac_sha1_x4. */
export function srtp_out4_ptr(): usize { return OUT4; }

@inline function bswap4(x: v128): v128 {
  return v128.shuffle<u8>(x, x, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);
}

/** SHA-1 compression of one block of each of four messages; ST4 holds word i of lanes 0..3 at 16 * i. */
function compress4(p0: usize, p1: usize, p2: usize, p3: usize): void {
  const st = ST4;
  let a = v128.load(st), b = v128.load(st, 16), c = v128.load(st, 32), d = v128.load(st, 48), e = v128.load(st, 64);
  const k0 = i32x4.splat(0x5a827999), k1 = i32x4.splat(0x6ed9eba1);
  const k2 = i32x4.splat(<i32>0x8f1bbcdc), k3 = i32x4.splat(<i32>0xca62c1d6);
  let x: v128;
  let q0: v128, q1: v128, q2: v128, q3: v128, u0: v128, u1: v128, u2: v128, u3: v128;
  // Load 16 words of each message and transpose 4 x 4 so that w[t] holds word t of every lane.
  q0 = v128.load(p0); q1 = v128.load(p1); q2 = v128.load(p2); q3 = v128.load(p3);
  u0 = v128.shuffle<u32>(q0, q1, 0, 4, 1, 5); u1 = v128.shuffle<u32>(q2, q3, 0, 4, 1, 5);
  u2 = v128.shuffle<u32>(q0, q1, 2, 6, 3, 7); u3 = v128.shuffle<u32>(q2, q3, 2, 6, 3, 7);
  let w0 = bswap4(v128.shuffle<u64>(u0, u1, 0, 2)), w1 = bswap4(v128.shuffle<u64>(u0, u1, 1, 3));
  let w2 = bswap4(v128.shuffle<u64>(u2, u3, 0, 2)), w3 = bswap4(v128.shuffle<u64>(u2, u3, 1, 3));
  q0 = v128.load(p0, 16); q1 = v128.load(p1, 16); q2 = v128.load(p2, 16); q3 = v128.load(p3, 16);
  u0 = v128.shuffle<u32>(q0, q1, 0, 4, 1, 5); u1 = v128.shuffle<u32>(q2, q3, 0, 4, 1, 5);
  u2 = v128.shuffle<u32>(q0, q1, 2, 6, 3, 7); u3 = v128.shuffle<u32>(q2, q3, 2, 6, 3, 7);
  let w4 = bswap4(v128.shuffle<u64>(u0, u1, 0, 2)), w5 = bswap4(v128.shuffle<u64>(u0, u1, 1, 3));
  let w6 = bswap4(v128.shuffle<u64>(u2, u3, 0, 2)), w7 = bswap4(v128.shuffle<u64>(u2, u3, 1, 3));
  q0 = v128.load(p0, 32); q1 = v128.load(p1, 32); q2 = v128.load(p2, 32); q3 = v128.load(p3, 32);
  u0 = v128.shuffle<u32>(q0, q1, 0, 4, 1, 5); u1 = v128.shuffle<u32>(q2, q3, 0, 4, 1, 5);
  u2 = v128.shuffle<u32>(q0, q1, 2, 6, 3, 7); u3 = v128.shuffle<u32>(q2, q3, 2, 6, 3, 7);
  let w8 = bswap4(v128.shuffle<u64>(u0, u1, 0, 2)), w9 = bswap4(v128.shuffle<u64>(u0, u1, 1, 3));
  let w10 = bswap4(v128.shuffle<u64>(u2, u3, 0, 2)), w11 = bswap4(v128.shuffle<u64>(u2, u3, 1, 3));
  q0 = v128.load(p0, 48); q1 = v128.load(p1, 48); q2 = v128.load(p2, 48); q3 = v128.load(p3, 48);
  u0 = v128.shuffle<u32>(q0, q1, 0, 4, 1, 5); u1 = v128.shuffle<u32>(q2, q3, 0, 4, 1, 5);
  u2 = v128.shuffle<u32>(q0, q1, 2, 6, 3, 7); u3 = v128.shuffle<u32>(q2, q3, 2, 6, 3, 7);
  let w12 = bswap4(v128.shuffle<u64>(u0, u1, 0, 2)), w13 = bswap4(v128.shuffle<u64>(u0, u1, 1, 3));
  let w14 = bswap4(v128.shuffle<u64>(u2, u3, 0, 2)), w15 = bswap4(v128.shuffle<u64>(u2, u3, 1, 3));
  // Same round structure as compress(); Ch and Maj are one bitselect each.
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(c, d, b), k0), w0)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(b, c, a), k0), w1)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(a, b, e), k0), w2)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(e, a, d), k0), w3)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(d, e, c), k0), w4)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(c, d, b), k0), w5)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(b, c, a), k0), w6)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(a, b, e), k0), w7)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(e, a, d), k0), w8)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(d, e, c), k0), w9)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(c, d, b), k0), w10)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(b, c, a), k0), w11)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(a, b, e), k0), w12)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(e, a, d), k0), w13)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(d, e, c), k0), w14)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(c, d, b), k0), w15)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w13, w8), v128.xor(w2, w0)); w0 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(b, c, a), k0), w0)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w14, w9), v128.xor(w3, w1)); w1 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(a, b, e), k0), w1)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w15, w10), v128.xor(w4, w2)); w2 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(e, a, d), k0), w2)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w0, w11), v128.xor(w5, w3)); w3 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(d, e, c), k0), w3)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w1, w12), v128.xor(w6, w4)); w4 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k1), w4)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w2, w13), v128.xor(w7, w5)); w5 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k1), w5)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w3, w14), v128.xor(w8, w6)); w6 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k1), w6)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w4, w15), v128.xor(w9, w7)); w7 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k1), w7)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w5, w0), v128.xor(w10, w8)); w8 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k1), w8)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w6, w1), v128.xor(w11, w9)); w9 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k1), w9)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w7, w2), v128.xor(w12, w10)); w10 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k1), w10)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w8, w3), v128.xor(w13, w11)); w11 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k1), w11)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w9, w4), v128.xor(w14, w12)); w12 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k1), w12)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w10, w5), v128.xor(w15, w13)); w13 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k1), w13)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w11, w6), v128.xor(w0, w14)); w14 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k1), w14)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w12, w7), v128.xor(w1, w15)); w15 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k1), w15)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w13, w8), v128.xor(w2, w0)); w0 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k1), w0)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w14, w9), v128.xor(w3, w1)); w1 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k1), w1)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w15, w10), v128.xor(w4, w2)); w2 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k1), w2)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w0, w11), v128.xor(w5, w3)); w3 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k1), w3)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w1, w12), v128.xor(w6, w4)); w4 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k1), w4)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w2, w13), v128.xor(w7, w5)); w5 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k1), w5)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w3, w14), v128.xor(w8, w6)); w6 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k1), w6)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w4, w15), v128.xor(w9, w7)); w7 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k1), w7)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w5, w0), v128.xor(w10, w8)); w8 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(d, c, v128.xor(b, c)), k2), w8)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w6, w1), v128.xor(w11, w9)); w9 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(c, b, v128.xor(a, b)), k2), w9)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w7, w2), v128.xor(w12, w10)); w10 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(b, a, v128.xor(e, a)), k2), w10)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w8, w3), v128.xor(w13, w11)); w11 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(a, e, v128.xor(d, e)), k2), w11)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w9, w4), v128.xor(w14, w12)); w12 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(e, d, v128.xor(c, d)), k2), w12)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w10, w5), v128.xor(w15, w13)); w13 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(d, c, v128.xor(b, c)), k2), w13)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w11, w6), v128.xor(w0, w14)); w14 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(c, b, v128.xor(a, b)), k2), w14)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w12, w7), v128.xor(w1, w15)); w15 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(b, a, v128.xor(e, a)), k2), w15)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w13, w8), v128.xor(w2, w0)); w0 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(a, e, v128.xor(d, e)), k2), w0)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w14, w9), v128.xor(w3, w1)); w1 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(e, d, v128.xor(c, d)), k2), w1)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w15, w10), v128.xor(w4, w2)); w2 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(d, c, v128.xor(b, c)), k2), w2)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w0, w11), v128.xor(w5, w3)); w3 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(c, b, v128.xor(a, b)), k2), w3)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w1, w12), v128.xor(w6, w4)); w4 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(b, a, v128.xor(e, a)), k2), w4)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w2, w13), v128.xor(w7, w5)); w5 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(a, e, v128.xor(d, e)), k2), w5)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w3, w14), v128.xor(w8, w6)); w6 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(e, d, v128.xor(c, d)), k2), w6)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w4, w15), v128.xor(w9, w7)); w7 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.bitselect(d, c, v128.xor(b, c)), k2), w7)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w5, w0), v128.xor(w10, w8)); w8 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.bitselect(c, b, v128.xor(a, b)), k2), w8)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w6, w1), v128.xor(w11, w9)); w9 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.bitselect(b, a, v128.xor(e, a)), k2), w9)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w7, w2), v128.xor(w12, w10)); w10 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.bitselect(a, e, v128.xor(d, e)), k2), w10)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w8, w3), v128.xor(w13, w11)); w11 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.bitselect(e, d, v128.xor(c, d)), k2), w11)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w9, w4), v128.xor(w14, w12)); w12 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k3), w12)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w10, w5), v128.xor(w15, w13)); w13 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k3), w13)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w11, w6), v128.xor(w0, w14)); w14 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k3), w14)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w12, w7), v128.xor(w1, w15)); w15 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k3), w15)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w13, w8), v128.xor(w2, w0)); w0 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k3), w0)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w14, w9), v128.xor(w3, w1)); w1 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k3), w1)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w15, w10), v128.xor(w4, w2)); w2 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k3), w2)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w0, w11), v128.xor(w5, w3)); w3 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k3), w3)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w1, w12), v128.xor(w6, w4)); w4 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k3), w4)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w2, w13), v128.xor(w7, w5)); w5 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k3), w5)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w3, w14), v128.xor(w8, w6)); w6 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k3), w6)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w4, w15), v128.xor(w9, w7)); w7 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k3), w7)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w5, w0), v128.xor(w10, w8)); w8 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k3), w8)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w6, w1), v128.xor(w11, w9)); w9 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k3), w9)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w7, w2), v128.xor(w12, w10)); w10 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k3), w10)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  x = v128.xor(v128.xor(w8, w3), v128.xor(w13, w11)); w11 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  e = i32x4.add(i32x4.add(e, v128.or(i32x4.shl(a, 5), i32x4.shr_u(a, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(b, c), d), k3), w11)); b = v128.or(i32x4.shl(b, 30), i32x4.shr_u(b, 2));
  x = v128.xor(v128.xor(w9, w4), v128.xor(w14, w12)); w12 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  d = i32x4.add(i32x4.add(d, v128.or(i32x4.shl(e, 5), i32x4.shr_u(e, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(a, b), c), k3), w12)); a = v128.or(i32x4.shl(a, 30), i32x4.shr_u(a, 2));
  x = v128.xor(v128.xor(w10, w5), v128.xor(w15, w13)); w13 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  c = i32x4.add(i32x4.add(c, v128.or(i32x4.shl(d, 5), i32x4.shr_u(d, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(e, a), b), k3), w13)); e = v128.or(i32x4.shl(e, 30), i32x4.shr_u(e, 2));
  x = v128.xor(v128.xor(w11, w6), v128.xor(w0, w14)); w14 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  b = i32x4.add(i32x4.add(b, v128.or(i32x4.shl(c, 5), i32x4.shr_u(c, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(d, e), a), k3), w14)); d = v128.or(i32x4.shl(d, 30), i32x4.shr_u(d, 2));
  x = v128.xor(v128.xor(w12, w7), v128.xor(w1, w15)); w15 = v128.or(i32x4.shl(x, 1), i32x4.shr_u(x, 31));
  a = i32x4.add(i32x4.add(a, v128.or(i32x4.shl(b, 5), i32x4.shr_u(b, 27))), i32x4.add(i32x4.add(v128.xor(v128.xor(c, d), e), k3), w15)); c = v128.or(i32x4.shl(c, 30), i32x4.shr_u(c, 2));
  v128.store(st, i32x4.add(v128.load(st), a));
  v128.store(st, i32x4.add(v128.load(st, 16), b), 16);
  v128.store(st, i32x4.add(v128.load(st, 32), c), 32);
  v128.store(st, i32x4.add(v128.load(st, 48), d), 48);
  v128.store(st, i32x4.add(v128.load(st, 64), e), 64);
}

/** Load lane l's 20-byte state from `from + l * stride` into ST4. */
function gather4(from: usize, stride: usize): void {
  for (let w: usize = 0; w < 5; w++) {
    for (let l: usize = 0; l < 4; l++) store<u32>(ST4 + w * 16 + l * 4, load<u32>(from + l * stride + w * 4));
  }
}

/** Hash `len` bytes at msg[0..3] (after a 64-byte block already absorbed in ST4), padding each lane alike. */
function finish4(m0: usize, m1: usize, m2: usize, m3: usize, len: i32): void {
  let n = len;
  while (n >= 64) {
    compress4(m0, m1, m2, m3);
    m0 += 64; m1 += 64; m2 += 64; m3 += 64;
    n -= 64;
  }
  memory.fill(TAIL4, 0, 4 * 128);
  memory.copy(TAIL4, m0, <usize>n);
  memory.copy(TAIL4 + 128, m1, <usize>n);
  memory.copy(TAIL4 + 256, m2, <usize>n);
  memory.copy(TAIL4 + 384, m3, <usize>n);
  const tl: usize = n + 9 <= 64 ? 64 : 128;
  const bits = bswap<u64>((<u64>(64 + len)) << 3);
  for (let l: usize = 0; l < 4; l++) {
    store<u8>(TAIL4 + l * 128 + <usize>n, 0x80);
    store<u64>(TAIL4 + l * 128 + tl - 8, bits);
  }
  compress4(TAIL4, TAIL4 + 128, TAIL4 + 256, TAIL4 + 384);
  if (tl == 128) compress4(TAIL4 + 64, TAIL4 + 192, TAIL4 + 320, TAIL4 + 448);
}

/**
 * HMAC-SHA1 of the first `len` bytes of the four message areas, lane l under the states at
 * STATES4 + 40 l; digests to OUT4 + 20 l. Returns 0 or -1 (len out of range).
 */
export function srtp_hmac_sha1_x4(len: i32): i32 {
  if (len < 0 || len > HMAC_MAX) return -1;
  const stride: usize = 4096 + 64;
  gather4(STATES4, 40);
  finish4(MSG4, MSG4 + stride, MSG4 + 2 * stride, MSG4 + 3 * stride, len);
  for (let l: usize = 0; l < 4; l++) {
    for (let w: usize = 0; w < 5; w++) store<u32>(INNER4 + l * 64 + w * 4, bswap<u32>(load<u32>(ST4 + w * 16 + l * 4)));
  }
  gather4(STATES4 + 20, 40);
  finish4(INNER4, INNER4 + 64, INNER4 + 128, INNER4 + 192, 20);
  for (let l: usize = 0; l < 4; l++) {
    for (let w: usize = 0; w < 5; w++) store<u32>(OUT4 + l * 20 + w * 4, bswap<u32>(load<u32>(ST4 + w * 16 + l * 4)));
  }
  return 0;
}
