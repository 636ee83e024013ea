/*
 * canopy_srtp: SRTP egress for AES_CM_128_HMAC_SHA1_80 (RFC 3711) in C, against Node's own
 * OpenSSL (the node binary exports its EVP and SHA1 symbols; nothing else is linked).
 *
 * Why: Node's crypto API returns a new Buffer from every Cipher.update, and that external
 * memory drives V8's full collections on a relay (~5 us per egress packet). Here the keystream
 * is XORed in place by AES-128-CTR with a kept key schedule (only the IV changes per packet),
 * the tag comes from SHA-1 states of the HMAC key's pads computed once, and the datagram is
 * written with sendto on the dgram socket's file descriptor. Nothing is allocated per packet.
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

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

#define TAG_LEN 10
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

typedef struct {
  uint32_t gen;
  int live;
  EVP_CIPHER_CTX *aes; /* AES-128-CTR, key schedule kept; re-IV'd per packet */
  uint8_t salt[14];
  SHA_CTX inner;       /* SHA-1 state after (key ^ ipad) */
  SHA_CTX outer;       /* SHA-1 state after (key ^ opad) */
  send_state *states;
  uint32_t nstates, cap;
  uint32_t last;       /* index of the state used last (a sender alternates few SSRCs) */
  int fd;              /* -1: no destination; else our own dup() of the dgram socket's fd */
  struct sockaddr_storage dest;
  socklen_t destlen;
  int last_errno;
  double sent, bytes, queue_full, send_errors;
  double routed, routed_bytes; /* sendBatch records with flag 1 that were sent */
} srtp_ctx;

static srtp_ctx *contexts[MAX_CONTEXTS];
static uint32_t ncontexts; /* slots ever used */
static uint32_t nlive;

/* Output of protectSend: protected bytes go here, then to the kernel. One thread (the JS one). */
static uint8_t scratch[MAX_PACKET + TAG_LEN + 16];

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

/*
 * Protect src[0, len) into dst[0, len + TAG_LEN) (dst == src: in place; otherwise the regions
 * must not overlap). Same checks, in the same order, as SrtpCryptoContext.protectRtp.
 */
static int protect_rtp(srtp_ctx *c, const uint8_t *src, size_t len, uint8_t *dst, size_t dstcap) {
  int hlen = rtp_header_length(src, len);
  if (hlen < 0) return hlen;
  if (len > MAX_PACKET || len + TAG_LEN > dstcap) return ST_OUTPUT_TOO_SMALL;
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
  if (plen > 0) {
    /* RFC 3711 §4.1.1: IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16); the low 16
     * bits are the block counter, which OpenSSL's CTR increments (2^16 blocks never carry). */
    uint8_t iv[16];
    uint32_t r = (uint32_t)roc;
    memcpy(iv, c->salt, 14);
    iv[4] ^= ssrc >> 24; iv[5] ^= ssrc >> 16; iv[6] ^= ssrc >> 8; iv[7] ^= ssrc;
    iv[8] ^= r >> 24; iv[9] ^= r >> 16; iv[10] ^= r >> 8; iv[11] ^= r;
    iv[12] ^= seq >> 8; iv[13] ^= seq;
    iv[14] = 0; iv[15] = 0;
    int outl = 0;
    if (EVP_EncryptInit_ex(c->aes, NULL, NULL, NULL, iv) != 1) return ST_OUTPUT_TOO_SMALL;
    if (EVP_EncryptUpdate(c->aes, dst + hlen, &outl, src + hlen, (int)plen) != 1 || (size_t)outl != plen) {
      return ST_OUTPUT_TOO_SMALL;
    }
  }
  /* RFC 3711 §4.2: tag = HMAC-SHA1(auth key, header || encrypted payload || ROC), 80 bits. */
  uint8_t rocb[4] = {(uint8_t)((uint32_t)roc >> 24), (uint8_t)((uint32_t)roc >> 16), (uint8_t)((uint32_t)roc >> 8), (uint8_t)roc};
  uint8_t md[SHA_DIGEST_LENGTH];
  SHA_CTX x = c->inner;
  SHA1_Update(&x, dst, len);
  SHA1_Update(&x, rocb, 4);
  SHA1_Final(md, &x);
  x = c->outer;
  SHA1_Update(&x, md, SHA_DIGEST_LENGTH);
  SHA1_Final(md, &x);
  memcpy(dst + len, md, TAG_LEN);
  return (int)(len + TAG_LEN);
}

/* IV of RFC 3711 §4.1.1 for (SSRC, ROC, SEQ); the low 16 bits are the block counter. */
static void rtp_iv(const srtp_ctx *c, uint32_t ssrc, uint32_t r, uint32_t seq, uint8_t iv[16]) {
  memcpy(iv, c->salt, 14);
  iv[4] ^= ssrc >> 24; iv[5] ^= ssrc >> 16; iv[6] ^= ssrc >> 8; iv[7] ^= ssrc;
  iv[8] ^= r >> 24; iv[9] ^= r >> 16; iv[10] ^= r >> 8; iv[11] ^= r;
  iv[12] ^= seq >> 8; iv[13] ^= seq;
  iv[14] = 0; iv[15] = 0;
}

/* First 80 bits of HMAC-SHA1(auth key, m || ROC) (RFC 3711 §4.2). */
static void rtp_tag(const srtp_ctx *c, const uint8_t *m, size_t len, uint32_t r, uint8_t out[TAG_LEN]) {
  uint8_t rocb[4] = {(uint8_t)(r >> 24), (uint8_t)(r >> 16), (uint8_t)(r >> 8), (uint8_t)r};
  uint8_t md[SHA_DIGEST_LENGTH];
  SHA_CTX x = c->inner;
  SHA1_Update(&x, m, len);
  SHA1_Update(&x, rocb, 4);
  SHA1_Final(md, &x);
  x = c->outer;
  SHA1_Update(&x, md, SHA_DIGEST_LENGTH);
  SHA1_Final(md, &x);
  memcpy(out, md, TAG_LEN);
}

/*
 * Verify and decrypt src[0, len) (RFC 3711 §3.3) with the ROC the caller estimated (the index
 * and replay bookkeeping stay in SrtpCryptoContext). dst is written only when the tag verifies.
 */
static int unprotect_rtp(srtp_ctx *c, const uint8_t *src, size_t len, uint8_t *dst, size_t dstcap, uint32_t roc) {
  if (len < 12 + TAG_LEN) return ST_TOO_SHORT;
  size_t plain = len - TAG_LEN;
  int hlen = rtp_header_length(src, plain);
  if (hlen < 0) return hlen;
  if (plain > MAX_PACKET || plain > dstcap) return ST_OUTPUT_TOO_SMALL;
  uint8_t tag[TAG_LEN];
  rtp_tag(c, src, plain, roc, tag);
  uint8_t diff = 0;
  for (int i = 0; i < TAG_LEN; i++) diff |= tag[i] ^ src[plain + i];
  if (diff != 0) return -4; /* AuthFailed */
  uint32_t seq = ((uint32_t)src[2] << 8) | src[3];
  if (dst != src) memcpy(dst, src, (size_t)hlen);
  size_t plen = plain - (size_t)hlen;
  if (plen > 0) {
    uint8_t iv[16];
    int outl = 0;
    rtp_iv(c, rd32(src + 8), roc, seq, iv);
    if (EVP_EncryptInit_ex(c->aes, NULL, NULL, NULL, iv) != 1 ||
        EVP_EncryptUpdate(c->aes, dst + hlen, &outl, src + hlen, (int)plen) != 1 || (size_t)outl != plen) {
      return -4;
    }
  }
  return (int)plain;
}

/* sendto the context's destination; the fd is libuv's non-blocking socket. */
static int send_datagram(srtp_ctx *c, const uint8_t *p, size_t n) {
  if (c->fd < 0) return ST_NOT_CONNECTED;
  ssize_t r;
  do {
    r = sendto(c->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&c->dest, c->destlen);
  } while (r < 0 && errno == EINTR);
  if (r >= 0) {
    c->sent += 1;
    c->bytes += (double)n;
    return (int)n;
  }
  /* The relay's bounded-queue rule: a full socket buffer drops this packet for this viewer. */
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
    c->queue_full += 1;
    return ST_QUEUE_FULL;
  }
  c->last_errno = errno;
  c->send_errors += 1;
  return ST_SEND_FAILED;
}

/* ---- entry points --------------------------------------------------------------------------- */

/* createContext(rtpKey: 16 bytes, rtpSalt: 14 bytes, rtpAuthKey: 20 bytes) -> id */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *key, *salt, *auth;
  size_t kl, sl, al;
  if (argc < 3 || !get_u8(env, argv[0], &key, &kl) || !get_u8(env, argv[1], &salt, &sl) || !get_u8(env, argv[2], &auth, &al) ||
      kl != 16 || sl != 14 || al != 20) {
    return throw_type(env, "canopy_srtp.createContext(key: 16 bytes, salt: 14 bytes, authKey: 20 bytes)");
  }
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
  c->aes = EVP_CIPHER_CTX_new();
  if (c->aes == NULL || EVP_EncryptInit_ex(c->aes, EVP_aes_128_ctr(), NULL, key, NULL) != 1) {
    if (c->aes) EVP_CIPHER_CTX_free(c->aes);
    c->aes = NULL;
    return throw_type(env, "canopy_srtp: AES-128-CTR is not available in this OpenSSL");
  }
  memcpy(c->salt, salt, 14);
  /* RFC 2104: H(K ^ opad, H(K ^ ipad, m)); the pad blocks' SHA-1 states are kept. */
  uint8_t ipad[64], opad[64];
  for (int i = 0; i < 64; i++) {
    uint8_t k = i < 20 ? auth[i] : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  SHA1_Init(&c->inner);
  SHA1_Update(&c->inner, ipad, 64);
  SHA1_Init(&c->outer);
  SHA1_Update(&c->outer, opad, 64);
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
  EVP_CIPHER_CTX_free(c->aes);
  c->aes = NULL;
  free(c->states);
  c->states = NULL;
  c->nstates = c->cap = 0;
  OPENSSL_cleanse(&c->inner, sizeof c->inner);
  OPENSSL_cleanse(&c->outer, sizeof c->outer);
  OPENSSL_cleanse(c->salt, sizeof c->salt);
  c->live = 0;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
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

/* protect(id, src, srcOff, len, dst, dstOff) -> protected length or a negative status. */
static napi_value js_protect(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) return throw_type(env, "canopy_srtp.protect(id, src, srcOff, len, dst, dstOff)");
  regions r;
  if (!regions_arg(env, argv, "canopy_srtp.protect: src and dst must be Uint8Arrays", &r, &out)) return out;
  return make_int(env, protect_rtp(r.c, r.s, r.len, r.d, r.cap));
}

/* unprotect(id, src, srcOff, len, dst, dstOff, roc) -> plaintext length or a negative status. */
static napi_value js_unprotect(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], out;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) return throw_type(env, "canopy_srtp.unprotect(id, src, srcOff, len, dst, dstOff, roc)");
  regions r;
  if (!regions_arg(env, argv, "canopy_srtp.unprotect: src and dst must be Uint8Arrays", &r, &out)) return out;
  int64_t roc;
  if (!get_int(env, argv[6], 0, 0xffffffffLL, &roc)) return make_int(env, ST_INDEX_OUT_OF_RANGE);
  return make_int(env, unprotect_rtp(r.c, r.s, r.len, r.d, r.cap, (uint32_t)roc));
}

/* protectSend(id, src, srcOff, len) -> protected length sent, or a negative status. */
static napi_value js_protect_send(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *src;
  size_t sn;
  if (argc < 4 || !get_u8(env, argv[1], &src, &sn)) return throw_type(env, "canopy_srtp.protectSend(id, src: Uint8Array, off, len)");
  srtp_ctx *c = ctx_arg(env, argv[0]);
  if (c == NULL) return make_int(env, ST_CLOSED);
  int64_t so, len;
  if (!get_int(env, argv[2], 0, (int64_t)sn, &so) || !get_int(env, argv[3], 0, (int64_t)sn, &len) || so + len > (int64_t)sn) {
    return make_int(env, ST_TOO_SHORT);
  }
  if (c->fd < 0) return make_int(env, ST_NOT_CONNECTED);
  int n = protect_rtp(c, src + so, (size_t)len, scratch, sizeof scratch);
  if (n < 0) return make_int(env, n);
  return make_int(env, send_datagram(c, scratch, (size_t)n));
}

/* sendRaw(id, buf, off, len) -> bytes sent or a negative status (already-protected bytes). */
static napi_value js_send_raw(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *buf;
  size_t bn;
  if (argc < 4 || !get_u8(env, argv[1], &buf, &bn)) return throw_type(env, "canopy_srtp.sendRaw(id, buf: Uint8Array, off, len)");
  srtp_ctx *c = ctx_arg(env, argv[0]);
  if (c == NULL) return make_int(env, ST_CLOSED);
  int64_t off, len;
  if (!get_int(env, argv[2], 0, (int64_t)bn, &off) || !get_int(env, argv[3], 1, MAX_PACKET + 64, &len) || off + len > (int64_t)bn) {
    return make_int(env, ST_TOO_SHORT);
  }
  return make_int(env, send_datagram(c, buf + off, (size_t)len));
}

/*
 * sendBatch(mem: Uint8Array, desc: Int32Array, count, payloadBytes, now) -> packets sent.
 * desc holds `count` records of 4 int32: [context id, offset in mem, length, flag/result].
 * In: flag 1 = a routed record: when sent, count it in the SSRC's sender info (packets,
 * payloadBytes octets, RTP timestamp, `now`) and the context's routed totals. Out: the
 * protected length sent, or a negative status. One call protects and sends one upstream
 * packet for every downstream of a fan-out.
 */
static napi_value js_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
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
    else {
      r = protect_rtp(c, mem + off, (size_t)len, scratch, sizeof scratch);
      if (r >= 0) r = send_datagram(c, scratch, (size_t)r);
      if (r >= 0 && (d[3] & 1)) {
        send_state *st = &c->states[c->last]; /* protect_rtp left the packet's SSRC state here */
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
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
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

/* stats(id) -> [sent, bytes, queueFull, sendErrors, lastErrno, routed, routedBytes] or null. */
static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  srtp_ctx *c = argc < 1 ? NULL : ctx_arg(env, argv[0]);
  napi_value r, v;
  if (c == NULL) {
    napi_get_null(env, &r);
    return r;
  }
  double vals[7] = {c->sent, c->bytes, c->queue_full, c->send_errors, (double)c->last_errno, c->routed, c->routed_bytes};
  CHECK(env, napi_create_array_with_length(env, 7, &r));
  for (uint32_t i = 0; i < 7; i++) {
    napi_create_double(env, vals[i], &v);
    napi_set_element(env, r, i, v);
  }
  return r;
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
  napi_value r, v;
  if (st == NULL) {
    napi_get_null(env, &r);
    return r;
  }
  double vals[4] = {st->packets, st->octets, st->last_ts, st->last_at};
  CHECK(env, napi_create_array_with_length(env, 4, &r));
  for (uint32_t i = 0; i < 4; i++) {
    napi_create_double(env, vals[i], &v);
    napi_set_element(env, r, i, v);
  }
  return r;
}

/* liveContexts() -> number of contexts not destroyed (tests check for leaks). */
static napi_value js_live(napi_env env, napi_callback_info info) {
  (void)info;
  return make_int(env, (int32_t)nlive);
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
      {"sendRaw", NULL, js_send_raw, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendBatch", NULL, js_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setDestination", NULL, js_set_dest, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rocOf", NULL, js_roc_of, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ssrcStats", NULL, js_ssrc_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"liveContexts", NULL, js_live, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openssl", NULL, js_openssl, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
