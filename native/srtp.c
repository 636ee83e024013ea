/*
 * canopy_srtp: SRTP and SRTCP for AES_CM_128_HMAC_SHA1_80 (RFC 3711) and AEAD_AES_128_GCM
 * (RFC 7714) in C, against Node's own OpenSSL (the node binary exports its EVP and SHA1
 * symbols; nothing else is linked).
 *
 * Why: Node's crypto API returns a new Buffer from every Cipher.update, and that external
 * memory drives V8's full collections on a relay (~5 us per egress packet). Here each key's
 * cipher context is made once and only re-IV'd per packet; AES-CM's keystream is XORed by
 * AES-128-CTR and its tag comes from SHA-1 states of the HMAC key's pads computed once; GCM
 * seals with the AES-NI/PCLMUL code of OpenSSL (about half the cost of AES-CM + HMAC-SHA1 for
 * a 1100-byte packet here). The datagram is written with sendto on the dgram socket's file
 * descriptor. Nothing is allocated per packet.
 *
 * Contexts live in a table indexed by small integer ids (slot | generation << 16), so a stale
 * id held by JavaScript after destroy() is refused instead of reaching a reused slot.
 *
 * Every entry point validates its arguments: a bad type throws a TypeError, a bad region or
 * packet returns a negative status (the SrtpStatus values of src/srtp/errors.ts). No offset or
 * length from JavaScript is used before it has been checked against the buffer it refers to.
 */
#define NAPI_VERSION 8
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <node_api.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, Linux 4.18+; older C libraries lack the name */
#endif

#include "recv.h"

/* SrtpStatus (src/srtp/errors.ts). */
#define ST_TOO_SHORT -1
#define ST_BAD_VERSION -2
#define ST_BAD_HEADER -3
#define ST_OUTPUT_TOO_SMALL -6
#define ST_INDEX_OUT_OF_RANGE -7
#define ST_NOT_CONNECTED -8
#define ST_CLOSED -10
#define ST_QUEUE_FULL -11
#define ST_SEND_FAILED -12

#define PROFILE_AES_CM 1  /* SRTP_AES128_CM_HMAC_SHA1_80 (RFC 5764 §4.1.2) */
#define PROFILE_GCM 7     /* SRTP_AEAD_AES_128_GCM (RFC 7714 §14.2) */
#define TAG_LEN 10        /* AES-CM: HMAC-SHA1 truncated to 80 bits */
#define GCM_TAG_LEN 16    /* RFC 7714 §14.2: 16-octet authentication tag */
#define MAX_TAG 16
#define ST_AUTH_FAILED -4
/* Largest RTP packet accepted (before the tag); a UDP datagram cannot be larger anyway. */
#define MAX_PACKET 65536
/* RFC 3711 §4.1.1: at most 2^16 keystream blocks per packet; MAX_PACKET keeps far below. */

#define MAX_CONTEXTS 65535

typedef struct {
  uint32_t ssrc;
  uint16_t sl;    /* highest sequence number sent (s_l) */
  int64_t roc;    /* rollover counter */
  /* RFC 3550 §6.4.1 sender info of packets sent by routed sendBatch records (flag 1). */
  uint32_t packets, octets, last_ts;
  double last_at;
} send_state;

/* The session keys of one direction of SRTP or of SRTCP (RFC 3711 §4.3, RFC 7714 §11). */
typedef struct {
  EVP_CIPHER_CTX *enc; /* AES-128-CTR (AES-CM; also decrypts) or AES-128-GCM sealing, key kept */
  EVP_CIPHER_CTX *dec; /* GCM only: opening */
  uint8_t salt[14];    /* 14 bytes (AES-CM) or 12 (GCM) */
  SHA_CTX inner;       /* AES-CM: SHA-1 state after (auth key ^ ipad) */
  SHA_CTX outer;       /* AES-CM: SHA-1 state after (auth key ^ opad) */
} keyset;

typedef struct {
  uint32_t gen;
  int live;
  int gcm;             /* profile: 0 AES-CM, 1 GCM */
  int tag;             /* tag length: 10 or 16 */
  keyset rtp, rtcp;
  send_state *states;
  uint32_t nstates, cap;
  uint32_t last;       /* index of the state used last (a sender alternates few SSRCs) */
  int fd;              /* -1: no destination; else our own dup() of the dgram socket's fd, or its twin */
  int connected;       /* fd is a twin connected to dest (connectTwin): send() without an address */
  struct sockaddr_storage dest;
  socklen_t destlen;
  int last_errno;
  double sent, bytes, queue_full, send_errors;
  double routed, routed_bytes; /* sendBatch records with flag 1 that were sent */
  /* Deferred sends (see "deferred sends" below): this context's staged records, oldest first. */
  int32_t pend_head, pend_tail;
  uint32_t pend_n;
  int no_gso;          /* the kernel refused a GSO send on this socket: one datagram per call */
  double gso_sends, gso_packets; /* sendmsg calls that carried several packets, and those packets */
} srtp_ctx;

static srtp_ctx *contexts[MAX_CONTEXTS];
static uint32_t ncontexts; /* slots ever used */
static uint32_t nlive;

/* Output of protectSend: protected bytes go here, then to the kernel; also where GCM opens a
 * packet before its tag is known good. One thread (the JS one). */
static uint8_t scratch[MAX_PACKET + MAX_TAG + 64];

/* ---- helpers ------------------------------------------------------------------------------ */

#define CHECK(env, call)                                                                          \
  do {                                                                                            \
    if ((call) != napi_ok) return throw_type(env, "canopy_srtp: internal N-API error");           \
  } while (0)

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static napi_value make_int(napi_env env, int32_t v) {
  napi_value r;
  napi_create_int32(env, v, &r);
  return r;
}

/* An integer in [lo, hi] (a non-integer, NaN or out-of-range number is refused). */
static int get_int(napi_env env, napi_value v, int64_t lo, int64_t hi, int64_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= (double)lo && d <= (double)hi) || d != floor(d)) return 0;
  *out = (int64_t)d;
  return 1;
}

/* Bytes of a Uint8Array (or Buffer). */
static int get_u8(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  size_t length;
  void *ptr;
  bool is;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &type, &length, &ptr, NULL, NULL) != napi_ok) return 0;
  if (type != napi_uint8_array && type != napi_uint8_clamped_array) return 0;
  if (ptr == NULL && length > 0) return 0;
  *data = (uint8_t *)ptr;
  *len = length;
  return 1;
}

static srtp_ctx *ctx_of(int64_t id) {
  if (id < 0 || id > 0x7fffffff) return NULL;
  uint32_t slot = (uint32_t)id & 0xffff, gen = (uint32_t)id >> 16;
  if (slot >= ncontexts) return NULL;
  srtp_ctx *c = contexts[slot];
  if (c == NULL || !c->live || c->gen != gen) return NULL;
  return c;
}

static srtp_ctx *ctx_arg(napi_env env, napi_value v) {
  int64_t id;
  if (!get_int(env, v, 0, 0x7fffffff, &id)) return NULL;
  return ctx_of(id);
}

static inline uint32_t rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* RTP header length (RFC 3550 §5.1, RFC 8285 extension block) or a negative status. */
static int rtp_header_length(const uint8_t *p, size_t len) {
  if (len < 12) return ST_TOO_SHORT;
  if ((p[0] >> 6) != 2) return ST_BAD_VERSION;
  size_t h = 12 + (size_t)(p[0] & 0x0f) * 4;
  if (p[0] & 0x10) {
    if (h + 4 > len) return ST_BAD_HEADER;
    h += 4 + (((size_t)p[h + 2] << 8) | p[h + 3]) * 4;
  }
  return h > len ? ST_BAD_HEADER : (int)h;
}

/* RFC 3711 Appendix A: ROC guess for seq given s_l and the ROC (-1: before the start). */
static int64_t estimate_roc(uint32_t seq, uint32_t sl, int64_t roc) {
  if (sl < 32768) return (int32_t)(seq - sl) > 32768 ? roc - 1 : roc;
  return sl - 32768 > seq ? roc + 1 : roc;
}

static send_state *find_state(srtp_ctx *c, uint32_t ssrc) {
  if (c->last < c->nstates && c->states[c->last].ssrc == ssrc) return &c->states[c->last];
  for (uint32_t i = 0; i < c->nstates; i++) {
    if (c->states[i].ssrc == ssrc) {
      c->last = i;
      return &c->states[i];
    }
  }
  return NULL;
}

/* A new SSRC's state (allocates only when an SSRC is first seen, never per packet). */
static send_state *add_state(srtp_ctx *c, uint32_t ssrc, uint16_t seq) {
  if (c->nstates == c->cap) {
    uint32_t cap = c->cap ? c->cap * 2 : 4;
    if (cap > (1u << 20)) return NULL;
    send_state *s = realloc(c->states, cap * sizeof *s);
    if (s == NULL) return NULL;
    c->states = s;
    c->cap = cap;
  }
  send_state *st = &c->states[c->nstates];
  memset(st, 0, sizeof *st);
  st->ssrc = ssrc;
  st->sl = seq;
  st->roc = 0;
  c->last = c->nstates++;
  return st;
}

/* ---- primitives ---------------------------------------------------------------------------- */

/* AES-CM IV (RFC 3711 §4.1.1) for (SSRC, high 32 bits, low 16 bits) of the index: ROC and SEQ
 * for SRTP, index >> 16 and index & 0xffff for SRTCP. The low 16 bits are the block counter,
 * which OpenSSL's CTR increments (2^16 blocks never carry: packets are below MAX_PACKET). */
static void cm_iv(const keyset *k, uint32_t ssrc, uint32_t hi, uint32_t lo, uint8_t iv[16]) {
  memcpy(iv, k->salt, 14);
  iv[4] ^= ssrc >> 24; iv[5] ^= ssrc >> 16; iv[6] ^= ssrc >> 8; iv[7] ^= ssrc;
  iv[8] ^= hi >> 24; iv[9] ^= hi >> 16; iv[10] ^= hi >> 8; iv[11] ^= hi;
  iv[12] ^= lo >> 8; iv[13] ^= lo;
  iv[14] = 0; iv[15] = 0;
}

/* XOR n bytes of AES-CM keystream (from iv) over in into out (in == out allowed). */
static int cm_xor(keyset *k, const uint8_t iv[16], const uint8_t *in, size_t n, uint8_t *out) {
  if (n == 0) return 0;
  int outl = 0;
  if (EVP_EncryptInit_ex(k->enc, NULL, NULL, NULL, iv) != 1) return -1;
  if (EVP_EncryptUpdate(k->enc, out, &outl, in, (int)n) != 1 || (size_t)outl != n) return -1;
  return 0;
}

/* First 80 bits of HMAC-SHA1(auth key, m || extra) (RFC 3711 §4.2; extra is the ROC for SRTP). */
static void cm_tag(const keyset *k, const uint8_t *m, size_t len, const uint8_t *extra, size_t xlen, uint8_t out[TAG_LEN]) {
  uint8_t md[SHA_DIGEST_LENGTH];
  SHA_CTX x = k->inner;
  SHA1_Update(&x, m, len);
  if (xlen > 0) SHA1_Update(&x, extra, xlen);
  SHA1_Final(md, &x);
  x = k->outer;
  SHA1_Update(&x, md, SHA_DIGEST_LENGTH);
  SHA1_Final(md, &x);
  memcpy(out, md, TAG_LEN);
}

/* RFC 7714 §8.1: IV = (0x0000 || SSRC || ROC || SEQ) XOR salt (12 bytes). */
static void gcm_rtp_iv(const keyset *k, uint32_t ssrc, uint32_t roc, uint32_t seq, uint8_t iv[16]) {
  memcpy(iv, k->salt, 12);
  iv[2] ^= ssrc >> 24; iv[3] ^= ssrc >> 16; iv[4] ^= ssrc >> 8; iv[5] ^= ssrc;
  iv[6] ^= roc >> 24; iv[7] ^= roc >> 16; iv[8] ^= roc >> 8; iv[9] ^= roc;
  iv[10] ^= seq >> 8; iv[11] ^= seq;
}

/* RFC 7714 §9.1: IV = (0x0000 || SSRC || 0x0000 || SRTCP index) XOR salt. */
static void gcm_rtcp_iv(const keyset *k, uint32_t ssrc, uint32_t index, uint8_t iv[16]) {
  memcpy(iv, k->salt, 12);
  iv[2] ^= ssrc >> 24; iv[3] ^= ssrc >> 16; iv[4] ^= ssrc >> 8; iv[5] ^= ssrc;
  iv[8] ^= index >> 24; iv[9] ^= index >> 16; iv[10] ^= index >> 8; iv[11] ^= index;
}

/* GCM seal: AAD = a || b, plaintext in[0, n) -> out (in == out allowed), 16-byte tag -> tag. */
static int gcm_seal(keyset *k, const uint8_t iv[16], const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                    const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag) {
  int outl = 0;
  if (EVP_EncryptInit_ex(k->enc, NULL, NULL, NULL, iv) != 1) return -1;
  if (alen > 0 && EVP_EncryptUpdate(k->enc, NULL, &outl, a, (int)alen) != 1) return -1;
  if (blen > 0 && EVP_EncryptUpdate(k->enc, NULL, &outl, b, (int)blen) != 1) return -1;
  if (n > 0 && (EVP_EncryptUpdate(k->enc, out, &outl, in, (int)n) != 1 || (size_t)outl != n)) return -1;
  if (EVP_EncryptFinal_ex(k->enc, out + n, &outl) != 1) return -1;
  return EVP_CIPHER_CTX_ctrl(k->enc, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, tag) == 1 ? 0 : -1;
}

/* GCM open of in[0, n) with AAD a || b and tag into out (in == out allowed); 0 only when the
 * tag verifies. out is written either way: callers open into scratch, then copy. */
static int gcm_open(keyset *k, const uint8_t iv[16], const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                    const uint8_t *in, size_t n, const uint8_t *tag, uint8_t *out) {
  int outl = 0;
  uint8_t t[GCM_TAG_LEN];
  memcpy(t, tag, GCM_TAG_LEN);
  if (EVP_DecryptInit_ex(k->dec, NULL, NULL, NULL, iv) != 1) return -1;
  if (alen > 0 && EVP_DecryptUpdate(k->dec, NULL, &outl, a, (int)alen) != 1) return -1;
  if (blen > 0 && EVP_DecryptUpdate(k->dec, NULL, &outl, b, (int)blen) != 1) return -1;
  if (n > 0 && (EVP_DecryptUpdate(k->dec, out, &outl, in, (int)n) != 1 || (size_t)outl != n)) return -1;
  if (EVP_CIPHER_CTX_ctrl(k->dec, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, t) != 1) return -1;
  return EVP_DecryptFinal_ex(k->dec, out + n, &outl) == 1 ? 0 : -1;
}

static int tags_equal(const uint8_t *a, const uint8_t *b, int n) {
  uint8_t diff = 0;
  for (int i = 0; i < n; i++) diff |= a[i] ^ b[i];
  return diff == 0;
}

/*
 * Protect src[0, len) into dst[0, len + tag) (dst == src: in place; otherwise the regions
 * must not overlap). Same checks, in the same order, as SrtpCryptoContext.protectRtp.
 */
static int protect_rtp(srtp_ctx *c, const uint8_t *src, size_t len, uint8_t *dst, size_t dstcap) {
  int hlen = rtp_header_length(src, len);
  if (hlen < 0) return hlen;
  if (len > MAX_PACKET || len + (size_t)c->tag > dstcap) return ST_OUTPUT_TOO_SMALL;
  uint32_t seq = ((uint32_t)src[2] << 8) | src[3];
  uint32_t ssrc = rd32(src + 8);
  send_state *st = find_state(c, ssrc);
  int64_t roc;
  if (st == NULL) {
    if (add_state(c, ssrc, (uint16_t)seq) == NULL) return ST_OUTPUT_TOO_SMALL;
    roc = 0;
  } else {
    /* RFC 3711 §3.3.1: a resent older packet gets the ROC it had, so estimate like a receiver. */
    roc = estimate_roc(seq, st->sl, st->roc);
    if (roc < 0) return ST_INDEX_OUT_OF_RANGE;
    if (roc > st->roc || (roc == st->roc && seq > st->sl)) {
      st->roc = roc;
      st->sl = (uint16_t)seq;
    }
  }
  if (dst != src) memcpy(dst, src, (size_t)hlen);
  size_t plen = len - (size_t)hlen;
  uint8_t iv[16];
  if (c->gcm) {
    /* RFC 7714 §8: AAD = the header, ciphertext, then the 16-byte tag. */
    gcm_rtp_iv(&c->rtp, ssrc, (uint32_t)roc, seq, iv);
    if (gcm_seal(&c->rtp, iv, dst, (size_t)hlen, NULL, 0, src + hlen, plen, dst + hlen, dst + len) != 0) return ST_OUTPUT_TOO_SMALL;
    return (int)(len + GCM_TAG_LEN);
  }
  /* RFC 3711 §4.1.1: IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16). */
  cm_iv(&c->rtp, ssrc, (uint32_t)roc, seq, iv);
  if (cm_xor(&c->rtp, iv, src + hlen, plen, dst + hlen) != 0) return ST_OUTPUT_TOO_SMALL;
  /* RFC 3711 §4.2: tag = HMAC-SHA1(auth key, header || encrypted payload || ROC), 80 bits. */
  uint8_t rocb[4] = {(uint8_t)((uint32_t)roc >> 24), (uint8_t)((uint32_t)roc >> 16), (uint8_t)((uint32_t)roc >> 8), (uint8_t)roc};
  cm_tag(&c->rtp, dst, len, rocb, 4, dst + len);
  return (int)(len + TAG_LEN);
}

/*
 * Verify and decrypt src[0, len) (RFC 3711 §3.3) with the ROC the caller estimated (the index
 * and replay bookkeeping stay in SrtpCryptoContext). dst is written only when the tag verifies.
 */
static int unprotect_rtp(srtp_ctx *c, const uint8_t *src, size_t len, uint8_t *dst, size_t dstcap, uint32_t roc) {
  if (len < 12 + (size_t)c->tag) return ST_TOO_SHORT;
  size_t plain = len - (size_t)c->tag;
  int hlen = rtp_header_length(src, plain);
  if (hlen < 0) return hlen;
  if (plain > MAX_PACKET || plain > dstcap) return ST_OUTPUT_TOO_SMALL;
  uint32_t seq = ((uint32_t)src[2] << 8) | src[3];
  size_t plen = plain - (size_t)hlen;
  uint8_t iv[16];
  if (c->gcm) {
    gcm_rtp_iv(&c->rtp, rd32(src + 8), roc, seq, iv);
    if (gcm_open(&c->rtp, iv, src, (size_t)hlen, NULL, 0, src + hlen, plen, src + plain, scratch) != 0) return ST_AUTH_FAILED;
    if (dst != src) memcpy(dst, src, (size_t)hlen);
    memcpy(dst + hlen, scratch, plen);
    return (int)plain;
  }
  uint8_t tag[TAG_LEN];
  uint8_t rocb[4] = {(uint8_t)(roc >> 24), (uint8_t)(roc >> 16), (uint8_t)(roc >> 8), (uint8_t)roc};
  cm_tag(&c->rtp, src, plain, rocb, 4, tag);
  if (!tags_equal(tag, src + plain, TAG_LEN)) return ST_AUTH_FAILED;
  if (dst != src) memcpy(dst, src, (size_t)hlen);
  cm_iv(&c->rtp, rd32(src + 8), roc, seq, iv);
  if (cm_xor(&c->rtp, iv, src + hlen, plen, dst + hlen) != 0) return ST_AUTH_FAILED;
  return (int)plain;
}

/*
 * Protect one (compound) RTCP packet src[0, len) with SRTCP index `index` into dst (RFC 3711
 * §3.4: everything after the first 8 bytes is encrypted, E flag set). AES-CM appends
 * E|index and the 80-bit tag over header || ciphertext || E|index; GCM (RFC 7714 §9.1, §17)
 * appends the 16-byte tag, then E|index, with AAD = first 8 bytes || E|index.
 */
static int protect_rtcp(srtp_ctx *c, const uint8_t *src, size_t len, uint8_t *dst, size_t dstcap, uint32_t index) {
  if (len < 8) return ST_TOO_SHORT;
  if ((src[0] >> 6) != 2) return ST_BAD_VERSION;
  size_t out = len + 4 + (size_t)c->tag;
  if (len > MAX_PACKET || out > dstcap) return ST_OUTPUT_TOO_SMALL;
  uint32_t ssrc = rd32(src + 4);
  uint32_t e = 0x80000000u | (index & 0x7fffffffu);
  uint8_t eb[4] = {(uint8_t)(e >> 24), (uint8_t)(e >> 16), (uint8_t)(e >> 8), (uint8_t)e};
  if (dst != src) memcpy(dst, src, 8);
  uint8_t iv[16];
  if (c->gcm) {
    gcm_rtcp_iv(&c->rtcp, ssrc, index & 0x7fffffffu, iv);
    if (gcm_seal(&c->rtcp, iv, dst, 8, eb, 4, src + 8, len - 8, dst + 8, dst + len) != 0) return ST_OUTPUT_TOO_SMALL;
    memcpy(dst + len + GCM_TAG_LEN, eb, 4);
    return (int)out;
  }
  cm_iv(&c->rtcp, ssrc, (index & 0x7fffffffu) >> 16, index & 0xffff, iv);
  if (cm_xor(&c->rtcp, iv, src + 8, len - 8, dst + 8) != 0) return ST_OUTPUT_TOO_SMALL;
  memcpy(dst + len, eb, 4);
  cm_tag(&c->rtcp, dst, len + 4, NULL, 0, dst + len + 4);
  return (int)out;
}

/*
 * Verify and decrypt one SRTCP packet src[0, len) into dst (written only when it verifies);
 * the RTCP length or a negative status. The replay window is the caller's: it reads the index
 * word itself (CM: before the tag; GCM: the last 4 bytes) and accepts it after success.
 */
static int unprotect_rtcp(srtp_ctx *c, const uint8_t *src, size_t len, uint8_t *dst, size_t dstcap) {
  if (len < 8 + 4 + (size_t)c->tag) return ST_TOO_SHORT;
  if ((src[0] >> 6) != 2) return ST_BAD_VERSION;
  size_t plain = len - 4 - (size_t)c->tag;
  if (plain > MAX_PACKET || plain > dstcap) return ST_OUTPUT_TOO_SMALL;
  uint32_t ssrc = rd32(src + 4);
  const uint8_t *eb = c->gcm ? src + len - 4 : src + plain;
  uint32_t e = rd32(eb);
  int encrypted = (e >> 31) == 1;
  uint32_t index = e & 0x7fffffffu;
  uint8_t iv[16];
  if (c->gcm) {
    gcm_rtcp_iv(&c->rtcp, ssrc, index, iv);
    const uint8_t *tag = src + plain;
    if (encrypted) {
      if (gcm_open(&c->rtcp, iv, src, 8, eb, 4, src + 8, plain - 8, tag, scratch) != 0) return ST_AUTH_FAILED;
      if (dst != src) memcpy(dst, src, 8);
      memcpy(dst + 8, scratch, plain - 8);
    } else {
      /* E = 0 (RFC 7714 §9.2): the whole packet is AAD, nothing is encrypted. */
      if (gcm_open(&c->rtcp, iv, src, plain, eb, 4, NULL, 0, tag, scratch) != 0) return ST_AUTH_FAILED;
      if (dst != src) memmove(dst, src, plain);
    }
    return (int)plain;
  }
  uint8_t tag[TAG_LEN];
  cm_tag(&c->rtcp, src, plain + 4, NULL, 0, tag);
  if (!tags_equal(tag, src + plain + 4, TAG_LEN)) return ST_AUTH_FAILED;
  if (!encrypted) {
    if (dst != src) memmove(dst, src, plain);
    return (int)plain;
  }
  if (dst != src) memcpy(dst, src, 8);
  cm_iv(&c->rtcp, ssrc, index >> 16, index & 0xffff, iv);
  if (cm_xor(&c->rtcp, iv, src + 8, plain - 8, dst + 8) != 0) return ST_AUTH_FAILED;
  return (int)plain;
}

static void flush_ctx(srtp_ctx *c);

/* The status of a failed send (errno set): a full socket buffer, or an error. */
static int send_failure(srtp_ctx *c, double packets) {
  /* The relay's bounded-queue rule: a full socket buffer drops this packet for this viewer. */
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
    c->queue_full += packets;
    return ST_QUEUE_FULL;
  }
  c->last_errno = errno;
  c->send_errors += packets;
  return ST_SEND_FAILED;
}

/* sendto the context's destination; the fd is libuv's non-blocking socket. */
static int send_datagram(srtp_ctx *c, const uint8_t *p, size_t n) {
  if (c->fd < 0) return ST_NOT_CONNECTED;
  if (c->pend_n > 0) flush_ctx(c); /* what was staged for this peer leaves first */
  ssize_t r;
  do {
    r = c->connected ? send(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                     : sendto(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&c->dest, c->destlen);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) {
    c->sent += 1;
    c->bytes += (double)n;
    return (int)n;
  }
  return send_failure(c, 1);
}

/* ---- deferred sends ------------------------------------------------------------------------- */

/*
 * sendBatch with `defer` protects each record into the stage instead of sending it, and
 * flushSends() sends what was staged, each context's packets in the order they were staged.
 * The relay defers while it handles one batch of upstream datagrams (a frame's packets arrive
 * in one recvmmsg), so a viewer's packets of that batch leave together: a run of equal-sized
 * packets (the last may be shorter) is ONE sendmsg with UDP GSO (UDP_SEGMENT, Linux 4.18+), and
 * the kernel cuts it into the same datagrams. Route lookup, socket accounting and the trip down
 * the stack then happen once per run instead of once per packet (on loopback, 6 packets of
 * 1100 bytes: ~3.6 us of CPU per packet with a send() each, ~1.5 us as one GSO send).
 *
 * A send to a context by any other call (protectSend, sendRaw) sends its staged packets first,
 * and so do setDestination, connectTwin and destroyContext, so the order on the wire is the
 * order of the calls and a staged packet goes where it was meant to. Each record keeps its
 * result (protected length or status) until flushSends() hands the results over. A full stage
 * sends what it holds and starts over; a full record table makes sendBatch send at once.
 */
#define STAGE_BYTES (1u << 20)
#define STAGE_RECORDS 4096
#define GSO_MAX_SEGS 64     /* UDP_MAX_SEGMENTS of Linux 4.18 (later kernels allow more) */
#define GSO_MAX_BYTES 65000 /* one GSO send is one UDP datagram to the stack: below 65507 bytes */

typedef struct {
  int32_t id;      /* context */
  int32_t next;    /* next staged record of the same context, -1 for the last */
  uint32_t off;    /* protected bytes at stage + off */
  uint32_t len;    /* protected length */
  int32_t result;  /* 0 while staged; then the protected length sent, or a negative status */
  uint32_t payload; /* routed records: payload octets for the SSRC's sender info */
  uint32_t state;  /* routed records: index of the SSRC's send state when staged */
  int32_t routed;
  double now;
} staged_rec;

static uint8_t stage[STAGE_BYTES];
static uint32_t stage_used;
static staged_rec staged[STAGE_RECORDS];
static uint32_t nstaged;
/* Contexts with staged records (an id may appear twice after an early flush; flush_ctx is then a no-op). */
static int32_t dirty[STAGE_RECORDS];
static uint32_t ndirty;
/* GSO sends and the packets they carried since the last flushSends (for the relay's metrics). */
static uint32_t gso_sends_since, gso_packets_since;

/* Sender info and routed totals of a routed record that was sent (as an immediate record's). */
static void count_routed(srtp_ctx *c, staged_rec *r) {
  const uint8_t *p = stage + r->off;
  uint32_t ssrc = rd32(p + 8);
  send_state *st = r->state < c->nstates && c->states[r->state].ssrc == ssrc ? &c->states[r->state] : find_state(c, ssrc);
  if (st != NULL) {
    st->packets++;
    st->octets += r->payload;
    st->last_ts = rd32(p + 4);
    st->last_at = r->now;
  }
  c->routed += 1;
  c->routed_bytes += (double)(r->len - (uint32_t)c->tag);
}

/*
 * Send n staged records of c (indices idx) in one sendmsg: with UDP_SEGMENT = seg when n > 1
 * (every record seg bytes but the last, which may be shorter). Writes each record's result.
 */
static void send_run(srtp_ctx *c, const int32_t *idx, int n, uint32_t seg) {
  int status = 0;
  if (c->fd < 0) {
    status = ST_NOT_CONNECTED;
  } else {
    struct iovec iov[GSO_MAX_SEGS];
    size_t total = 0;
    for (int k = 0; k < n; k++) {
      iov[k].iov_base = stage + staged[idx[k]].off;
      iov[k].iov_len = staged[idx[k]].len;
      total += staged[idx[k]].len;
    }
    union {
      char buf[CMSG_SPACE(sizeof(uint16_t))];
      struct cmsghdr align;
    } cm;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)n;
    if (!c->connected) {
      m.msg_name = &c->dest;
      m.msg_namelen = c->destlen;
    }
    if (n > 1) {
      memset(&cm, 0, sizeof cm);
      m.msg_control = cm.buf;
      m.msg_controllen = sizeof cm.buf;
      struct cmsghdr *h = CMSG_FIRSTHDR(&m);
      h->cmsg_level = SOL_UDP;
      h->cmsg_type = UDP_SEGMENT;
      h->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t s16 = (uint16_t)seg;
      memcpy(CMSG_DATA(h), &s16, sizeof s16);
    }
    ssize_t r;
    do {
      r = sendmsg(c->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r >= 0) {
      c->sent += n;
      c->bytes += (double)total;
      if (n > 1) {
        c->gso_sends += 1;
        c->gso_packets += n;
        gso_sends_since += 1;
        gso_packets_since += (uint32_t)n;
      }
    } else if (n > 1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
      /* GSO refused (a kernel without UDP_SEGMENT, a device without checksum offload, a segment
       * above the path MTU): this context sends one datagram per call from now on. Any other
       * error (say a pending ICMP error on the twin): this run again one by one, so that each
       * packet gets the result a send of its own would have had. */
      if (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT || errno == EOPNOTSUPP || errno == EMSGSIZE) c->no_gso = 1;
      for (int k = 0; k < n; k++) send_run(c, idx + k, 1, staged[idx[k]].len);
      return;
    } else {
      status = send_failure(c, n);
    }
  }
  for (int k = 0; k < n; k++) {
    staged_rec *r = &staged[idx[k]];
    r->result = status < 0 ? status : (int32_t)r->len;
    if (status == 0 && r->routed) count_routed(c, r);
  }
}

/* Send everything staged for c, in runs: equal lengths, the last of a run may be shorter. */
static void flush_ctx(srtp_ctx *c) {
  int32_t i = c->pend_n > 0 ? c->pend_head : -1;
  c->pend_n = 0;
  c->pend_head = c->pend_tail = -1;
  int32_t idx[GSO_MAX_SEGS];
  while (i >= 0) {
    uint32_t seg = staged[i].len, total = seg;
    int n = 1;
    idx[0] = i;
    int32_t j = staged[i].next;
    while (!c->no_gso && j >= 0 && n < GSO_MAX_SEGS) {
      uint32_t l = staged[j].len;
      if (l > seg || total + l > GSO_MAX_BYTES) break;
      idx[n++] = j;
      total += l;
      j = staged[j].next;
      if (l < seg) break; /* a shorter packet ends its run */
    }
    send_run(c, idx, n, seg);
    i = j;
  }
}

/* Send everything staged (results stay in the records); the stage's bytes are free again. */
static void flush_all(void) {
  for (uint32_t k = 0; k < ndirty; k++) {
    srtp_ctx *c = ctx_of(dirty[k]);
    if (c != NULL) flush_ctx(c);
  }
  ndirty = 0;
  stage_used = 0;
}

/*
 * Stage one record: protect src[0, len) into the stage for c (context id `id`). Returns 0, or
 * a negative status (nothing staged), or 1 when the record table is full (the caller sends).
 */
static int stage_record(srtp_ctx *c, int32_t id, const uint8_t *src, size_t len, int routed, uint32_t payload, double now) {
  if (nstaged >= STAGE_RECORDS) return 1;
  if (stage_used + len + MAX_TAG + 8 > STAGE_BYTES) flush_all();
  int n = protect_rtp(c, src, len, stage + stage_used, STAGE_BYTES - stage_used);
  if (n < 0) return n;
  int32_t i = (int32_t)nstaged++;
  staged_rec *r = &staged[i];
  r->id = id;
  r->next = -1;
  r->off = stage_used;
  r->len = (uint32_t)n;
  r->result = 0;
  r->payload = payload;
  r->state = c->last; /* protect_rtp left the packet's SSRC state here */
  r->routed = routed;
  r->now = now;
  stage_used += ((uint32_t)n + 7u) & ~7u;
  if (c->pend_n++ == 0) {
    c->pend_head = i;
    dirty[ndirty++] = id;
  } else {
    staged[c->pend_tail].next = i;
  }
  c->pend_tail = i;
  return 0;
}

/* ---- entry points --------------------------------------------------------------------------- */

/* Set up one keyset; 0 on success. GCM: auth is unused. */
static int keyset_init(keyset *k, int gcm, const uint8_t *key, const uint8_t *salt, const uint8_t *auth) {
  k->enc = EVP_CIPHER_CTX_new();
  if (k->enc == NULL) return -1;
  if (gcm) {
    k->dec = EVP_CIPHER_CTX_new();
    if (k->dec == NULL) return -1;
    /* The default GCM IV length is 12 bytes (RFC 7714 §8.1). */
    if (EVP_EncryptInit_ex(k->enc, EVP_aes_128_gcm(), NULL, key, NULL) != 1) return -1;
    if (EVP_DecryptInit_ex(k->dec, EVP_aes_128_gcm(), NULL, key, NULL) != 1) return -1;
    memcpy(k->salt, salt, 12);
    return 0;
  }
  if (EVP_EncryptInit_ex(k->enc, EVP_aes_128_ctr(), NULL, key, NULL) != 1) return -1;
  memcpy(k->salt, salt, 14);
  /* RFC 2104: H(K ^ opad, H(K ^ ipad, m)); the pad blocks' SHA-1 states are kept. */
  uint8_t ipad[64], opad[64];
  for (int i = 0; i < 64; i++) {
    uint8_t b = i < 20 ? auth[i] : 0;
    ipad[i] = b ^ 0x36;
    opad[i] = b ^ 0x5c;
  }
  SHA1_Init(&k->inner);
  SHA1_Update(&k->inner, ipad, 64);
  SHA1_Init(&k->outer);
  SHA1_Update(&k->outer, opad, 64);
  OPENSSL_cleanse(ipad, sizeof ipad);
  OPENSSL_cleanse(opad, sizeof opad);
  return 0;
}

static void keyset_free(keyset *k) {
  if (k->enc) EVP_CIPHER_CTX_free(k->enc);
  if (k->dec) EVP_CIPHER_CTX_free(k->dec);
  OPENSSL_cleanse(k, sizeof *k);
}

/*
 * createContext(profile, rtpKey, rtpSalt, rtpAuthKey, rtcpKey, rtcpSalt, rtcpAuthKey) -> id.
 * profile 1 (AES_CM_128_HMAC_SHA1_80): keys 16 bytes, salts 14, auth keys 20.
 * profile 7 (AEAD_AES_128_GCM): keys 16 bytes, salts 12, auth keys empty.
 */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  static const char *usage =
      "canopy_srtp.createContext(profile: 1 | 7, rtpKey, rtpSalt, rtpAuthKey, rtcpKey, rtcpSalt, rtcpAuthKey): "
      "AES-CM (1) takes 16-byte keys, 14-byte salts and 20-byte auth keys; GCM (7) 16-byte keys, 12-byte salts, empty auth keys";
  int64_t profile;
  uint8_t *b[6];
  size_t l[6];
  if (argc < 7 || !get_int(env, argv[0], 0, 255, &profile) || (profile != PROFILE_AES_CM && profile != PROFILE_GCM)) {
    return throw_type(env, usage);
  }
  for (int i = 0; i < 6; i++) {
    if (!get_u8(env, argv[i + 1], &b[i], &l[i])) return throw_type(env, usage);
  }
  int gcm = profile == PROFILE_GCM;
  size_t saltlen = gcm ? 12 : 14, authlen = gcm ? 0 : 20;
  if (l[0] != 16 || l[1] != saltlen || l[2] != authlen || l[3] != 16 || l[4] != saltlen || l[5] != authlen) return throw_type(env, usage);
  uint32_t slot = 0;
  while (slot < ncontexts && contexts[slot] != NULL && contexts[slot]->live) slot++;
  if (slot >= MAX_CONTEXTS) return throw_type(env, "canopy_srtp: too many live contexts");
  srtp_ctx *c = contexts[slot];
  uint32_t gen = c ? (c->gen + 1) & 0x7fff : 1;
  if (c == NULL) {
    c = calloc(1, sizeof *c);
    if (c == NULL) return throw_type(env, "canopy_srtp: out of memory");
    contexts[slot] = c;
    if (slot >= ncontexts) ncontexts = slot + 1;
  } else {
    memset(c, 0, sizeof *c);
  }
  c->gen = gen;
  c->fd = -1;
  c->pend_head = c->pend_tail = -1;
  c->gcm = gcm;
  c->tag = gcm ? GCM_TAG_LEN : TAG_LEN;
  if (keyset_init(&c->rtp, gcm, b[0], b[1], b[2]) != 0 || keyset_init(&c->rtcp, gcm, b[3], b[4], b[5]) != 0) {
    keyset_free(&c->rtp);
    keyset_free(&c->rtcp);
    return throw_type(env, gcm ? "canopy_srtp: AES-128-GCM is not available in this OpenSSL" : "canopy_srtp: AES-128-CTR is not available in this OpenSSL");
  }
  c->live = 1;
  nlive++;
  return make_int(env, (int32_t)(slot | (gen << 16)));
}

/* destroyContext(id) -> true when it was live. Idempotent. */
static napi_value js_destroy(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  srtp_ctx *c = argc < 1 ? NULL : ctx_arg(env, argv[0]);
  napi_value r;
  if (c == NULL) {
    napi_get_boolean(env, false, &r);
    return r;
  }
  if (c->pend_n > 0) flush_ctx(c); /* staged packets were accepted: they leave before the socket goes */
  keyset_free(&c->rtp);
  keyset_free(&c->rtcp);
  free(c->states);
  c->states = NULL;
  c->nstates = c->cap = 0;
  c->live = 0;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->connected = 0;
  nlive--;
  napi_get_boolean(env, true, &r);
  return r;
}

/* The (context, source region, destination region) arguments of protect and unprotect. */
typedef struct {
  srtp_ctx *c;
  const uint8_t *s;
  size_t len;
  uint8_t *d;
  size_t cap; /* 0 when the output region is unusable: the size check fails after the header checks */
} regions;

/*
 * argv[0..5] = id, src, srcOff, len, dst, dstOff. Returns 1 with *r filled, or 0 with *out the
 * call's result: NULL after a thrown TypeError (bad types), else a status (closed context, bad
 * source region). In place or disjoint only: a partially overlapping output gets cap 0.
 */
static int regions_arg(napi_env env, napi_value *argv, const char *types, regions *r, napi_value *out) {
  uint8_t *src, *dst;
  size_t sn, dn;
  if (!get_u8(env, argv[1], &src, &sn) || !get_u8(env, argv[4], &dst, &dn)) {
    *out = throw_type(env, types);
    return 0;
  }
  r->c = ctx_arg(env, argv[0]);
  if (r->c == NULL) {
    *out = make_int(env, ST_CLOSED);
    return 0;
  }
  int64_t so, len, dof;
  if (!get_int(env, argv[2], 0, (int64_t)sn, &so) || !get_int(env, argv[3], 0, (int64_t)sn, &len) || so + len > (int64_t)sn) {
    *out = make_int(env, ST_TOO_SHORT);
    return 0;
  }
  r->s = src + so;
  r->len = (size_t)len;
  r->d = dst;
  r->cap = 0;
  if (get_int(env, argv[5], 0, (int64_t)dn, &dof)) {
    r->d = dst + dof;
    r->cap = dn - (size_t)dof;
    if (r->s != r->d && r->s < r->d + r->cap && r->d < r->s + r->len) r->cap = 0;
  }
  return 1;
}

/*
 * The common head of protect, unprotect, protectRtcp and unprotectRtcp: exactly n arguments
 * read into argv, the first six (id, src, srcOff, len, dst, dstOff) checked by regions_arg.
 * Returns 1 with *r filled, or 0 with *out the call's result (a thrown TypeError or a status).
 */
static int region_call(napi_env env, napi_callback_info info, size_t n, napi_value *argv, const char *usage, regions *r,
                       napi_value *out) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    *out = throw_type(env, "canopy_srtp: internal N-API error");
    return 0;
  }
  if (argc < n) {
    *out = throw_type(env, usage);
    return 0;
  }
  return regions_arg(env, argv, usage, r, out);
}

/* protect(id, src, srcOff, len, dst, dstOff) -> protected length or a negative status. */
static napi_value js_protect(napi_env env, napi_callback_info info) {
  napi_value argv[6], out;
  regions r;
  if (!region_call(env, info, 6, argv, "canopy_srtp.protect(id, src: Uint8Array, srcOff, len, dst: Uint8Array, dstOff)", &r, &out)) return out;
  return make_int(env, protect_rtp(r.c, r.s, r.len, r.d, r.cap));
}

/* unprotect(id, src, srcOff, len, dst, dstOff, roc) -> plaintext length or a negative status. */
static napi_value js_unprotect(napi_env env, napi_callback_info info) {
  napi_value argv[7], out;
  regions r;
  int64_t roc;
  if (!region_call(env, info, 7, argv, "canopy_srtp.unprotect(id, src: Uint8Array, srcOff, len, dst: Uint8Array, dstOff, roc)", &r, &out)) return out;
  if (!get_int(env, argv[6], 0, 0xffffffffLL, &roc)) return make_int(env, ST_INDEX_OUT_OF_RANGE);
  return make_int(env, unprotect_rtp(r.c, r.s, r.len, r.d, r.cap, (uint32_t)roc));
}

/*
 * The common head of protectSend and sendRaw: (id, buf, off, len) with len in [minLen, maxLen]
 * and inside buf. Returns 1 with *c, *p and *n filled, or 0 with *out the call's result (a
 * thrown TypeError, Closed, or TooShort).
 */
static int packet_call(napi_env env, napi_callback_info info, const char *usage, int64_t min_len, int64_t max_len, srtp_ctx **c,
                       const uint8_t **p, size_t *n, napi_value *out) {
  size_t argc = 4;
  napi_value argv[4];
  uint8_t *buf;
  size_t bn;
  int64_t off, len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 || !get_u8(env, argv[1], &buf, &bn)) {
    *out = throw_type(env, usage);
    return 0;
  }
  *c = ctx_arg(env, argv[0]);
  if (*c == NULL) {
    *out = make_int(env, ST_CLOSED);
    return 0;
  }
  if (!get_int(env, argv[2], 0, (int64_t)bn, &off) || !get_int(env, argv[3], min_len, max_len, &len) || off + len > (int64_t)bn) {
    *out = make_int(env, ST_TOO_SHORT);
    return 0;
  }
  *p = buf + off;
  *n = (size_t)len;
  return 1;
}

/* protectSend(id, src, srcOff, len) -> protected length sent, or a negative status. */
static napi_value js_protect_send(napi_env env, napi_callback_info info) {
  srtp_ctx *c;
  const uint8_t *src;
  size_t len;
  napi_value out;
  if (!packet_call(env, info, "canopy_srtp.protectSend(id, src: Uint8Array, off, len)", 0, INT64_MAX, &c, &src, &len, &out)) return out;
  if (c->fd < 0) return make_int(env, ST_NOT_CONNECTED);
  int n = protect_rtp(c, src, len, scratch, sizeof scratch);
  if (n < 0) return make_int(env, n);
  return make_int(env, send_datagram(c, scratch, (size_t)n));
}

/* protectRtcp(id, src, srcOff, len, dst, dstOff, index) -> SRTCP length or a negative status. */
static napi_value js_protect_rtcp(napi_env env, napi_callback_info info) {
  napi_value argv[7], out;
  regions r;
  int64_t index;
  if (!region_call(env, info, 7, argv, "canopy_srtp.protectRtcp(id, src: Uint8Array, srcOff, len, dst: Uint8Array, dstOff, index)", &r, &out)) return out;
  if (!get_int(env, argv[6], 0, 0x7fffffff, &index)) return make_int(env, ST_INDEX_OUT_OF_RANGE);
  return make_int(env, protect_rtcp(r.c, r.s, r.len, r.d, r.cap, (uint32_t)index));
}

/* unprotectRtcp(id, src, srcOff, len, dst, dstOff) -> RTCP length or a negative status. */
static napi_value js_unprotect_rtcp(napi_env env, napi_callback_info info) {
  napi_value argv[6], out;
  regions r;
  if (!region_call(env, info, 6, argv, "canopy_srtp.unprotectRtcp(id, src: Uint8Array, srcOff, len, dst: Uint8Array, dstOff)", &r, &out)) return out;
  return make_int(env, unprotect_rtcp(r.c, r.s, r.len, r.d, r.cap));
}

/* sendRaw(id, buf, off, len) -> bytes sent or a negative status (already-protected bytes). */
static napi_value js_send_raw(napi_env env, napi_callback_info info) {
  srtp_ctx *c;
  const uint8_t *buf;
  size_t len;
  napi_value out;
  if (!packet_call(env, info, "canopy_srtp.sendRaw(id, buf: Uint8Array, off, len)", 1, MAX_PACKET + 64, &c, &buf, &len, &out)) return out;
  return make_int(env, send_datagram(c, buf, len));
}

/*
 * sendBatch(mem: Uint8Array, desc: Int32Array, count, payloadBytes, now, defer?) -> records
 * sent (or staged). desc holds `count` records of 4 int32: [context id, offset in mem, length,
 * flag/result]. In: flag 1 = a routed record: when sent, count it in the SSRC's sender info
 * (packets, payloadBytes octets, RTP timestamp, `now`) and the context's routed totals. Out:
 * the protected length sent, or a negative status; with defer, 0 = staged (its result comes
 * from flushSends, see "deferred sends"). One call protects and sends one upstream packet for
 * every downstream of a fan-out.
 */
static napi_value js_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool defer = false;
  napi_valuetype dt = napi_undefined;
  if (argc >= 6 && (napi_typeof(env, argv[5], &dt) != napi_ok || (dt != napi_undefined && napi_get_value_bool(env, argv[5], &defer) != napi_ok))) {
    return throw_type(env, "canopy_srtp.sendBatch(mem, desc, count, payloadBytes, now, defer?: boolean)");
  }
  uint8_t *mem;
  size_t mn;
  napi_typedarray_type type;
  size_t dlen;
  void *dptr;
  bool is;
  int64_t count, payload = 0;
  double now = 0;
  if (argc >= 5) {
    napi_valuetype t;
    if (!get_int(env, argv[3], 0, 0x7fffffff, &payload) || napi_typeof(env, argv[4], &t) != napi_ok || t != napi_number ||
        napi_get_value_double(env, argv[4], &now) != napi_ok) {
      return throw_type(env, "canopy_srtp.sendBatch(mem, desc, count, payloadBytes: integer, now: number)");
    }
  }
  if (argc < 3 || !get_u8(env, argv[0], &mem, &mn) || napi_is_typedarray(env, argv[1], &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, argv[1], &type, &dlen, &dptr, NULL, NULL) != napi_ok || type != napi_int32_array ||
      !get_int(env, argv[2], 0, 1 << 24, &count)) {
    return throw_type(env, "canopy_srtp.sendBatch(mem: Uint8Array, desc: Int32Array, count, payloadBytes?, now?)");
  }
  if ((size_t)count * 4 > dlen) return throw_type(env, "canopy_srtp.sendBatch: desc holds fewer than count records");
  int32_t *d = (int32_t *)dptr;
  int32_t sent = 0;
  for (int64_t i = 0; i < count; i++, d += 4) {
    srtp_ctx *c = ctx_of(d[0]);
    int64_t off = d[1], len = d[2];
    int r;
    if (c == NULL) r = ST_CLOSED;
    else if (off < 0 || len < 0 || off + len > (int64_t)mn) r = ST_TOO_SHORT;
    else if (c->fd < 0) r = ST_NOT_CONNECTED;
    else if (defer && (r = stage_record(c, d[0], mem + off, (size_t)len, d[3] & 1, (uint32_t)payload, now)) <= 0) {
      /* staged (0) or refused (a status); 1: the record table is full, send at once below */
    } else {
      r = protect_rtp(c, mem + off, (size_t)len, scratch, sizeof scratch);
      uint32_t si = c->last; /* protect_rtp left the packet's SSRC state here (send_datagram may move c->last) */
      if (r >= 0) r = send_datagram(c, scratch, (size_t)r);
      if (r >= 0 && (d[3] & 1)) {
        send_state *st = &c->states[si];
        st->packets++;
        st->octets += (uint32_t)payload;
        st->last_ts = rd32(mem + off + 4);
        st->last_at = now;
        c->routed += 1;
        c->routed_bytes += (double)len;
      }
    }
    d[3] = r;
    if (r >= 0) sent++;
  }
  return make_int(env, sent);
}

/* setDestination(id, fd, ip, port) -> 0, or a negative status (bad address: no destination). */
static napi_value js_set_dest(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t;
  if (argc < 4 || napi_typeof(env, argv[2], &t) != napi_ok || t != napi_string) {
    return throw_type(env, "canopy_srtp.setDestination(id, fd, ip: string, port)");
  }
  srtp_ctx *c = ctx_arg(env, argv[0]);
  if (c == NULL) return make_int(env, ST_CLOSED);
  int64_t fd, port;
  char ip[64];
  size_t iplen = 0;
  if (c->pend_n > 0) flush_ctx(c); /* staged packets go where they were meant to */
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  c->connected = 0;
  if (!get_int(env, argv[1], -1, 0x7fffffff, &fd) || !get_int(env, argv[3], 0, 65535, &port)) return make_int(env, ST_NOT_CONNECTED);
  if (fd < 0) return make_int(env, 0); /* clears the destination */
  if (napi_get_value_string_utf8(env, argv[2], ip, sizeof ip, &iplen) != napi_ok || iplen >= sizeof ip - 1 || port == 0) {
    return make_int(env, ST_NOT_CONNECTED);
  }
  memset(&c->dest, 0, sizeof c->dest);
  struct sockaddr_in *a4 = (struct sockaddr_in *)&c->dest;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&c->dest;
  if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    c->destlen = sizeof *a4;
  } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    c->destlen = sizeof *a6;
  } else {
    return make_int(env, ST_NOT_CONNECTED);
  }
  /* Our own descriptor for the socket: if libuv closes its fd while JavaScript still holds a
   * route to this context, sendto reaches the same (now unused) socket, never whatever file a
   * reused fd number would name. Closed on the next setDestination and on destroy. */
  int own = fcntl((int)fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return make_int(env, ST_NOT_CONNECTED);
  int type = 0;
  socklen_t tl = sizeof type;
  if (getsockopt(own, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM) {
    close(own);
    return make_int(env, ST_NOT_CONNECTED);
  }
  c->fd = own;
  return make_int(env, 0);
}

/*
 * connectTwin(id) -> the descriptor of a twin socket, or a negative status.
 *
 * A UDP socket bound to the same local address and port as the destination's socket and
 * connected to the destination (IPv4 only): sends on it skip the per-packet route lookup and
 * address copy of an unconnected sendto (~0.3 us of ~4 us per packet on loopback). Both sockets
 * get SO_REUSEADDR so the twin may share the port. The kernel then delivers every datagram from
 * the destination to the twin (a connected socket is the better match), so the caller MUST
 * read the returned descriptor and hand what arrives to the original socket's handler, and
 * stop reading before the next setDestination or destroy, which close the twin (datagrams from
 * the destination then reach the original socket again). On failure nothing changes: the
 * context keeps sending with sendto on its dup() of the original socket.
 */
static napi_value js_connect_twin(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_type(env, "canopy_srtp.connectTwin(id)");
  srtp_ctx *c = ctx_arg(env, argv[0]);
  if (c == NULL) return make_int(env, ST_CLOSED);
  if (c->fd < 0 || c->connected || c->dest.ss_family != AF_INET) return make_int(env, ST_NOT_CONNECTED);
  if (c->pend_n > 0) flush_ctx(c);
  struct sockaddr_storage local;
  socklen_t ll = sizeof local;
  int one = 1;
  if (getsockname(c->fd, (struct sockaddr *)&local, &ll) != 0 || local.ss_family != AF_INET) return make_int(env, ST_NOT_CONNECTED);
  int twin = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (twin < 0) return make_int(env, ST_NOT_CONNECTED);
  if (setsockopt(c->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      setsockopt(twin, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || bind(twin, (struct sockaddr *)&local, ll) != 0 ||
      connect(twin, (const struct sockaddr *)&c->dest, c->destlen) != 0) {
    c->last_errno = errno;
    close(twin);
    return make_int(env, ST_NOT_CONNECTED);
  }
  close(c->fd); /* the dup of the original: the twin sends from now on */
  c->fd = twin;
  c->connected = 1;
  return make_int(env, twin);
}

/* An Int32Array argument's elements and length, or NULL. */
static int32_t *int32_arg(napi_env env, napi_value v, size_t *len) {
  napi_typedarray_type type;
  void *p = NULL;
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is || napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok ||
      type != napi_int32_array)
    return NULL;
  return (int32_t *)p;
}

/*
 * flushSends(results: Int32Array, gso?: Int32Array) -> n: sends everything staged by sendBatch
 * with defer and writes the results of the n records staged since the last flushSends, in
 * staging order, to results[0, n) (as sendBatch writes an immediate record's: protected length
 * or a negative status), and to gso[0..1] the GSO sends since the last flushSends and the
 * packets they carried. results should hold STAGE_RECORDS entries: the records are handed over
 * (and forgotten here) whatever fits.
 */
static napi_value js_flush_sends(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t rlen = 0, glen = 0;
  int32_t *out = argc >= 1 ? int32_arg(env, argv[0], &rlen) : NULL;
  int32_t *gso = argc >= 2 ? int32_arg(env, argv[1], &glen) : NULL;
  flush_all(); /* whatever the arguments: nothing stays staged past this call */
  uint32_t n = nstaged;
  nstaged = 0;
  if (gso != NULL && glen >= 2) {
    gso[0] = (int32_t)gso_sends_since;
    gso[1] = (int32_t)gso_packets_since;
  }
  gso_sends_since = gso_packets_since = 0;
  if (out == NULL) return throw_type(env, "canopy_srtp.flushSends(results: Int32Array, gso?: Int32Array)");
  for (uint32_t i = 0; i < n && i < rlen; i++) out[i] = staged[i].result;
  return make_int(env, (int32_t)n);
}

/* rocOf(id, ssrc) -> the sender ROC of an SSRC this context protected, or -1. */
static napi_value js_roc_of(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t ssrc;
  srtp_ctx *c = argc < 2 ? NULL : ctx_arg(env, argv[0]);
  if (c == NULL || !get_int(env, argv[1], 0, 0xffffffffLL, &ssrc)) return make_int(env, -1);
  send_state *st = find_state(c, (uint32_t)ssrc);
  napi_value r;
  napi_create_double(env, st ? (double)st->roc : -1, &r);
  return r;
}

/* An array of n numbers, or null when vals is NULL. */
static napi_value number_array(napi_env env, const double *vals, uint32_t n) {
  napi_value r, v;
  if (vals == NULL) {
    napi_get_null(env, &r);
    return r;
  }
  CHECK(env, napi_create_array_with_length(env, n, &r));
  for (uint32_t i = 0; i < n; i++) {
    napi_create_double(env, vals[i], &v);
    napi_set_element(env, r, i, v);
  }
  return r;
}

/*
 * stats(id) -> [sent, bytes, queueFull, sendErrors, lastErrno, routed, routedBytes, gsoSends,
 * gsoPackets] or null.
 */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  srtp_ctx *c = argc < 1 ? NULL : ctx_arg(env, argv[0]);
  if (c == NULL) return number_array(env, NULL, 0);
  double vals[9] = {c->sent, c->bytes, c->queue_full, c->send_errors, (double)c->last_errno, c->routed, c->routed_bytes,
                    c->gso_sends, c->gso_packets};
  return number_array(env, vals, 9);
}

/* ssrcStats(id, ssrc) -> [packets, octets, lastTs, lastAt] of routed records, or null. */
static napi_value js_ssrc_stats(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t ssrc;
  srtp_ctx *c = argc < 2 ? NULL : ctx_arg(env, argv[0]);
  send_state *st = NULL;
  if (c != NULL && get_int(env, argv[1], 0, 0xffffffffLL, &ssrc)) st = find_state(c, (uint32_t)ssrc);
  if (st == NULL) return number_array(env, NULL, 0);
  double vals[4] = {st->packets, st->octets, st->last_ts, st->last_at};
  return number_array(env, vals, 4);
}

/* liveContexts() -> number of contexts not destroyed (tests check for leaks). */
static napi_value js_live(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, (int32_t)nlive);
}

/*
 * hmacSha1(key: Uint8Array, data: Uint8Array, off, len, out: Uint8Array, outOff) -> 20, or a
 * negative status (TooShort: a region outside its buffer). HMAC-SHA1 (RFC 2104) of
 * data[off, off+len) into out[outOff, outOff+20): the MESSAGE-INTEGRITY of the relay's STUN
 * keepalive answers and consent checks (RFC 8489 §14.5), without Node's per-call Hmac object.
 */
static napi_value js_hmac_sha1(napi_env env, napi_callback_info info) {
  static const char usage[] = "canopy_srtp.hmacSha1(key: Uint8Array, data: Uint8Array, off, len, out: Uint8Array, outOff)";
  size_t argc = 6;
  napi_value argv[6];
  uint8_t *key, *data, *out;
  size_t kn, dn, on;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 6 || !get_u8(env, argv[0], &key, &kn) ||
      !get_u8(env, argv[1], &data, &dn) || !get_u8(env, argv[4], &out, &on))
    return throw_type(env, usage);
  int64_t off, len, oo;
  if (!get_int(env, argv[2], 0, (int64_t)dn, &off) || !get_int(env, argv[3], 0, (int64_t)dn, &len) || off + len > (int64_t)dn ||
      !get_int(env, argv[5], 0, (int64_t)on, &oo) || oo + SHA_DIGEST_LENGTH > (int64_t)on)
    return make_int(env, ST_TOO_SHORT);
  uint8_t k[64] = {0}, pad[64], md[SHA_DIGEST_LENGTH];
  if (kn > 64) SHA1(key, kn, k); /* RFC 2104 §2: a key longer than the block is hashed first */
  else memcpy(k, key, kn);
  SHA_CTX x;
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
  SHA1_Init(&x);
  SHA1_Update(&x, pad, 64);
  SHA1_Update(&x, data + off, (size_t)len);
  SHA1_Final(md, &x);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
  SHA1_Init(&x);
  SHA1_Update(&x, pad, 64);
  SHA1_Update(&x, md, SHA_DIGEST_LENGTH);
  SHA1_Final(out + oo, &x);
  OPENSSL_cleanse(k, sizeof k);
  OPENSSL_cleanse(pad, sizeof pad);
  return make_int(env, SHA_DIGEST_LENGTH);
}

/* openssl() -> the OpenSSL version string of the node binary this runs in. */
static napi_value js_openssl(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  napi_create_string_utf8(env, OpenSSL_version(OPENSSL_VERSION), NAPI_AUTO_LENGTH, &r);
  return r;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"createContext", NULL, js_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"destroyContext", NULL, js_destroy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"protect", NULL, js_protect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"protectSend", NULL, js_protect_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unprotect", NULL, js_unprotect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"protectRtcp", NULL, js_protect_rtcp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unprotectRtcp", NULL, js_unprotect_rtcp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendRaw", NULL, js_send_raw, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendBatch", NULL, js_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setDestination", NULL, js_set_dest, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rocOf", NULL, js_roc_of, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ssrcStats", NULL, js_ssrc_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"liveContexts", NULL, js_live, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openssl", NULL, js_openssl, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hmacSha1", NULL, js_hmac_sha1, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectTwin", NULL, js_connect_twin, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flushSends", NULL, js_flush_sends, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  napi_value records;
  if (napi_create_int32(env, STAGE_RECORDS, &records) != napi_ok ||
      napi_set_named_property(env, exports, "STAGE_RECORDS", records) != napi_ok)
    return NULL;
  if (canopy_recv_init(env, exports) != napi_ok) return NULL;
  return exports;
}
