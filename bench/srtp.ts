/**
 * Per-packet CPU cost of SRTP protect for a 1100-byte RTP packet, measured in one run:
 *   fast   - SrtpCryptoContext.protectRtp (src/srtp) into a reused output region, one packet
 *            at a time (no fan-out assumed)
 *   fanout - AES-CM only: the same packet protected for 8 viewers (8 contexts) with a TagBatch,
 *            as FastRtpSender does when a relay fans a packet out; cost per protected packet
 *   werift - werift's SrtpSession.encrypt(payload, header) with a prebuilt RtpHeader (the
 *            cheapest way werift's egress can call it: no RtpPacket parsing counted)
 *   naive  - a new Node cipher (and HMAC) per packet, output by Buffer.concat
 *   native - AES-CM only, when the addon is built (native/srtp.c): NativeSrtpContext.protectRtp
 *            into a reused output region (AES-CTR and HMAC-SHA1 in C with Node's OpenSSL)
 * for AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM, and the HMAC-SHA1 choices for the AES-CM
 * tag: a createHmac object per packet, Hash.copy() of precomputed pad states, and the
 * AssemblyScript HMAC (assembly/srtp.ts; from build/core.wasm when it has the srtp exports,
 * else compiled here). Variants run interleaved in rounds and the median round is reported,
 * so background load hits all of them alike.
 *
 * Run pinned: `taskset -c 1 npx tsx bench/srtp.ts [--packets N] [--rounds R] [--only fast,fanout]`.
 * The last line is one JSON object; its main figures are for AES_CM_128_HMAC_SHA1_80, the
 * profile the relay negotiates on its legs (preferSrtpProfiles), with the GCM figures (werift's
 * default) alongside.
 */
import { createCipheriv, createHash, createHmac, createSecretKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import asc from 'assemblyscript/asc';
import { RtpHeader, SrtpSession } from 'werift';
import {
  HmacSha1x80,
  TagBatch,
  WasmHmacEngine,
  coreHmacEngine,
  SRTP_AEAD_AES_128_GCM,
  SRTP_AES128_CM_HMAC_SHA1_80,
  SrtpCryptoContext,
  deriveSessionKeys,
  masterSaltLength,
  srtpProfileName,
  type SrtpProfile,
} from '../src/srtp/index.ts';
import { NativeSrtpContext, nativeSrtp } from '../src/srtp/native.ts';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer`);
  return v;
}

const PACKETS = arg('packets', 20000);
const ROUNDS = arg('rounds', 7);
const ONLY_I = process.argv.indexOf('--only');
/** Variant names to run (all when --only is absent); the JSON line needs them all. */
const ONLY = ONLY_I < 0 ? null : new Set((process.argv[ONLY_I + 1] ?? '').split(','));
const PKT = 1100;
const HDR = 12;

function rtpPacket(ssrc: number, seq: number): Buffer {
  const b = randomBytes(PKT);
  b[0] = 0x80;
  b[1] = 96;
  b.writeUInt16BE(seq, 2);
  b.writeUInt32BE(90000, 4);
  b.writeUInt32BE(ssrc, 8);
  return b;
}

/** The WASM HMAC engine the relay would use, or assembly/srtp.ts compiled here. */
async function hmacEngine(): Promise<[WasmHmacEngine, string]> {
  const core = coreHmacEngine();
  if (core) return [core, 'build/core.wasm'];
  const source = readFileSync(new URL('../assembly/srtp.ts', import.meta.url), 'utf8');
  const res = await asc.compileString({ 'srtp.ts': source }, { optimizeLevel: 3, runtime: 'stub', enable: ['simd', 'bulk-memory'] });
  if (res.error || !res.binary) throw new Error(`assembly/srtp.ts does not compile: ${res.error?.message}`);
  return [new WasmHmacEngine(new WebAssembly.Module(new Uint8Array(res.binary))), 'assembly/srtp.ts compiled by the bench (core build lacks srtp exports)'];
}
const [engine, engineFrom] = await hmacEngine();

type Variant = { name: string; run: (n: number) => void };

function variants(profile: SrtpProfile): Variant[] {
  const key = randomBytes(16);
  const salt = randomBytes(masterSaltLength(profile));
  const ssrc = 0x12345678;
  const pkt = rtpPacket(ssrc, 0);
  const payload = pkt.subarray(HDR);

  const ctx = new SrtpCryptoContext({ profile, masterKey: key, masterSalt: salt, hmac: engine });
  const out = Buffer.alloc(2048);
  let fseq = 0;
  const fast = (n: number): void => {
    for (let i = 0; i < n; i++) {
      fseq = (fseq + 1) & 0xffff;
      pkt[2] = fseq >> 8;
      pkt[3] = fseq & 0xff;
      if (ctx.protectRtp(pkt, 0, PKT, out, 0) < 0) throw new Error('protect failed');
    }
  };

  const session = new SrtpSession({
    profile,
    keys: { localMasterKey: key, localMasterSalt: salt, remoteMasterKey: key, remoteMasterSalt: salt },
  });
  const header = new RtpHeader({ payloadType: 96, sequenceNumber: 0, timestamp: 90000, ssrc });
  let wseq = 0;
  const werift = (n: number): void => {
    for (let i = 0; i < n; i++) {
      wseq = (wseq + 1) & 0xffff;
      header.sequenceNumber = wseq;
      session.encrypt(payload, header);
    }
  };

  const k = deriveSessionKeys(profile, key, salt);
  const iv = Buffer.alloc(profile === SRTP_AEAD_AES_128_GCM ? 12 : 16);
  const rocBuf = Buffer.alloc(4);
  let nseq = 0;
  const naive = (n: number): void => {
    for (let i = 0; i < n; i++) {
      nseq = (nseq + 1) & 0xffff;
      pkt[2] = nseq >> 8;
      pkt[3] = nseq & 0xff;
      k.rtpSalt.copy(iv);
      iv[iv.length - 4]! ^= nseq >> 8; // IV layout details do not change the cost
      iv[iv.length - 3]! ^= nseq & 0xff;
      const head = pkt.subarray(0, HDR);
      if (profile === SRTP_AEAD_AES_128_GCM) {
        const c = createCipheriv('aes-128-gcm', k.rtpKey, iv);
        c.setAAD(head);
        const enc = c.update(payload);
        c.final();
        Buffer.concat([head, enc, c.getAuthTag()]);
      } else {
        const enc = createCipheriv('aes-128-ctr', k.rtpKey, iv).update(payload);
        const tag = createHmac('sha1', k.rtpAuthKey).update(head).update(enc).update(rocBuf).digest();
        Buffer.concat([head, enc, tag.subarray(0, 10)]);
      }
    }
  };
  const vs: Variant[] = [
    { name: 'fast', run: fast },
    { name: 'werift', run: werift },
    { name: 'naive', run: naive },
  ];
  if (profile === SRTP_AES128_CM_HMAC_SHA1_80) {
    const VIEWERS = 8;
    const viewers = Array.from(
      { length: VIEWERS },
      () => new SrtpCryptoContext({ profile, masterKey: randomBytes(16), masterSalt: randomBytes(14), hmac: engine }),
    );
    const addon = nativeSrtp();
    if (addon !== null) {
      const nat = new NativeSrtpContext(addon, key, salt);
      let nseq2 = 0;
      vs.push({
        name: 'native',
        run: (n: number): void => {
          for (let i = 0; i < n; i++) {
            nseq2 = (nseq2 + 1) & 0xffff;
            pkt[2] = nseq2 >> 8;
            pkt[3] = nseq2 & 0xff;
            if (nat.protectRtp(pkt, 0, PKT, out, 0) < 0) throw new Error('native protect failed');
          }
        },
      });
    }
    const outs = viewers.map(() => Buffer.alloc(2048));
    const batch = new TagBatch();
    let bseq = 0;
    vs.push({
      name: 'fanout',
      run: (n: number): void => {
        for (let i = 0; i < n; i += VIEWERS) {
          bseq = (bseq + 1) & 0xffff;
          pkt[2] = bseq >> 8;
          pkt[3] = bseq & 0xff;
          for (let v = 0; v < VIEWERS; v++) viewers[v]!.protectRtp(pkt, 0, PKT, outs[v]!, 0, batch);
          batch.flush();
        }
      },
    });
  }
  return ONLY === null ? vs : vs.filter((v) => ONLY.has(v.name));
}

/** The three ways to compute the AES-CM tag over a protected 1100-byte packet plus ROC. */
function hmacVariants(): Variant[] {
  const key = randomBytes(20);
  const msg = randomBytes(PKT);
  const out = Buffer.alloc(10);
  const roc = Buffer.alloc(4);
  const kobj = createSecretKey(key);
  const ipad = Buffer.alloc(64, 0x36);
  const opad = Buffer.alloc(64, 0x5c);
  for (let i = 0; i < 20; i++) {
    ipad[i]! ^= key[i]!;
    opad[i]! ^= key[i]!;
  }
  const inner = createHash('sha1').update(ipad);
  const outer = createHash('sha1').update(opad);
  const wasm = new HmacSha1x80(key, engine);
  return [
    { name: 'createHmac', run: (n) => { for (let i = 0; i < n; i++) createHmac('sha1', kobj).update(msg).update(roc).digest().copy(out, 0, 0, 10); } },
    { name: 'hashCopy', run: (n) => { for (let i = 0; i < n; i++) outer.copy().update(inner.copy().update(msg).update(roc).digest()).digest().copy(out, 0, 0, 10); } },
    { name: 'wasm', run: (n) => { for (let i = 0; i < n; i++) wasm.tag(msg, 0, PKT, 0, out, 0); } },
  ];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** CPU nanoseconds per packet (user + system) of `n` calls. */
function cpuNsPerPacket(run: (n: number) => void, n: number): number {
  const c0 = process.cpuUsage();
  run(n);
  const c = process.cpuUsage(c0);
  return ((c.user + c.system) * 1000) / n;
}

/**
 * Median CPU ns per call of each variant, run interleaved. process.cpuUsage() also counts V8's
 * concurrent GC threads, so each sample starts after a short idle pause and an unmeasured
 * warm-up slice: garbage and cache pollution left by the allocation-heavy variants (werift,
 * naive) are then not billed to the variant measured next.
 */
async function measure(vs: Variant[]): Promise<Record<string, number>> {
  for (const v of vs) v.run(3000); // warm up: JIT and cipher setup
  const samples: Record<string, number[]> = Object.fromEntries(vs.map((v) => [v.name, []]));
  // (fanout's run(n) protects n packets in rounds of 8, so ns per packet compares directly.)
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of vs) {
      await new Promise((res) => setTimeout(res, 50));
      v.run(Math.max(8, PACKETS >> 3));
      samples[v.name]!.push(cpuNsPerPacket(v.run, PACKETS));
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, Math.round(median(xs))]));
}

console.log(`WASM HMAC from ${engineFrom}`);
const h = await measure(hmacVariants());
console.log(
  `HMAC-SHA1 tag of ${PKT}+4 bytes: createHmac per packet ${h.createHmac} ns, Hash.copy of pad states ${h.hashCopy} ns, WASM with pad states ${h.wasm} ns`,
);

const results: Record<string, Record<string, number>> = {};
for (const profile of [SRTP_AEAD_AES_128_GCM, SRTP_AES128_CM_HMAC_SHA1_80] as SrtpProfile[]) {
  const name = srtpProfileName(profile);
  results[name] = await measure(variants(profile));
  const r = results[name]!;
  console.log(
    `${name.padEnd(24)} fast ${String(r.fast).padStart(6)} ns/pkt   werift ${String(r.werift).padStart(6)} ns/pkt   naive ${String(r.naive).padStart(6)} ns/pkt   werift/fast ${(r.werift! / r.fast!).toFixed(2)}x` +
      (r.fanout ? `   fan-out to 8 ${r.fanout} ns/pkt (werift/fan-out ${(r.werift! / r.fanout).toFixed(2)}x)` : '') +
      (r.native ? `   native ${r.native} ns/pkt (werift/native ${(r.werift! / r.native).toFixed(2)}x)` : ''),
  );
}

const gcm = results[srtpProfileName(SRTP_AEAD_AES_128_GCM)]!;
const cm = results[srtpProfileName(SRTP_AES128_CM_HMAC_SHA1_80)]!;
console.log(
  `packets/round ${PACKETS}, rounds ${ROUNDS}, packet ${PKT} bytes, node ${process.version}, cpu time (user+sys) median of rounds`,
);
console.log(
  JSON.stringify({
    bench: 'srtp',
    profile: srtpProfileName(SRTP_AES128_CM_HMAC_SHA1_80),
    fast_ns_per_pkt: cm.fast,
    werift_ns_per_pkt: cm.werift,
    naive_ns_per_pkt: cm.naive,
    fanout_ns_per_pkt: cm.fanout,
    native_ns_per_pkt: cm.native ?? null,
    gcm_fast_ns_per_pkt: gcm.fast,
    gcm_werift_ns_per_pkt: gcm.werift,
    gcm_naive_ns_per_pkt: gcm.naive,
    hmac_createhmac_ns: h.createHmac,
    hmac_hashcopy_ns: h.hashCopy,
    hmac_wasm_ns: h.wasm,
  }),
);
