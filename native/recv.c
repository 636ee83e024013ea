/*
 * canopy_srtp, receive side: a batched UDP reader for a relay's upstream socket.
 *
 * Why: Node hands every datagram to JavaScript on its own, and on the bench relay that costs
 * ~40 us per datagram (a 64 KiB allocation that is shrunk, an rinfo object built property by
 * property, a Buffer, a MakeCallback with async hooks), which for the publisher's ~180 packets
 * a second was as much as the fan-out of one of them to ten viewers. This reader watches its
 * own dup() of the socket's descriptor with libuv (the socket's dgram handle is told to stop
 * reading), takes up to 32 datagrams per recvmmsg into memory JavaScript shares, and calls one
 * JavaScript function per batch.
 *
 * recvStart(fd, buf: Uint8Array, meta: Int32Array, onBatch: (count) => void) -> handle
 *   buf holds slots of RECV_SLOT bytes, meta RECV_META int32 per slot:
 *   [length, port, family (4 or 6), truncated (0/1), address as 4 big-endian 32-bit words]
 *   (IPv4: the address in word 0). The slots are rewritten by the next batch.
 * recvStop(handle) -> true the first time: stops watching and closes the descriptor.
 */
#define _GNU_SOURCE /* recvmmsg */
#define NAPI_VERSION 8
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "recv.h"

#define RECV_SLOT 2048
#define RECV_META 8
#define RECV_BATCH 32
/* Batches per readiness event: bounded so one busy socket cannot hold the event loop. */
#define RECV_ROUNDS 4

typedef struct {
  uv_poll_t poll;
  int fd;
  int stopped;   /* recvStop or the finalizer ran: no more reads, references released */
  int closed;    /* libuv closed the poll */
  int finalized; /* the JavaScript handle is gone; the struct is freed when both are set */
  napi_env env;
  napi_ref cb, bufref, metaref;
  napi_async_context actx;
  uint8_t *buf;
  int32_t *meta;
  int slots;
} reader;

static napi_value throw_type(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

static void on_closed(uv_handle_t *h) {
  reader *r = h->data;
  close(r->fd);
  r->closed = 1;
  if (r->finalized) free(r);
}

/* Stop watching; the JavaScript references go now, the memory once libuv has closed the poll. */
static void stop(reader *r) {
  if (r->stopped) return;
  r->stopped = 1;
  uv_poll_stop(&r->poll);
  napi_delete_reference(r->env, r->cb);
  napi_delete_reference(r->env, r->bufref);
  napi_delete_reference(r->env, r->metaref);
  napi_async_destroy(r->env, r->actx);
  uv_close((uv_handle_t *)&r->poll, on_closed);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  reader *r = h->data;
  if (r->stopped || status < 0 || !(events & UV_READABLE)) return;
  int n = r->slots < RECV_BATCH ? r->slots : RECV_BATCH;
  for (int round = 0; round < RECV_ROUNDS && !r->stopped; round++) {
    struct mmsghdr msgs[RECV_BATCH];
    struct iovec iov[RECV_BATCH];
    struct sockaddr_storage from[RECV_BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < n; i++) {
      iov[i].iov_base = r->buf + (size_t)i * RECV_SLOT;
      iov[i].iov_len = RECV_SLOT;
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int k;
    do {
      k = recvmmsg(r->fd, msgs, (unsigned)n, MSG_DONTWAIT, NULL);
    } while (k < 0 && errno == EINTR);
    if (k <= 0) return; /* EAGAIN: drained; another error: the next readiness retries */
    for (int i = 0; i < k; i++) {
      int32_t *m = r->meta + (size_t)i * RECV_META;
      memset(m, 0, RECV_META * sizeof *m);
      m[0] = (int32_t)msgs[i].msg_len;
      m[3] = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? 1 : 0;
      if (from[i].ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&from[i];
        m[1] = ntohs(a->sin_port);
        m[2] = 4;
        m[4] = (int32_t)ntohl(a->sin_addr.s_addr);
      } else if (from[i].ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&from[i];
        m[1] = ntohs(a->sin6_port);
        m[2] = 6;
        for (int w = 0; w < 4; w++) {
          const uint8_t *p = a->sin6_addr.s6_addr + w * 4;
          m[4 + w] = (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]);
        }
      }
    }
    napi_handle_scope scope;
    if (napi_open_handle_scope(r->env, &scope) != napi_ok) return;
    napi_value cb, recv, arg, result;
    /* napi_make_callback needs an object as the receiver: the global one. */
    if (napi_get_reference_value(r->env, r->cb, &cb) == napi_ok && cb != NULL && napi_get_global(r->env, &recv) == napi_ok &&
        napi_create_int32(r->env, k, &arg) == napi_ok) {
      /* The JavaScript side catches its own errors; anything that still escapes goes to
       * 'uncaughtException' like any other callback's. */
      if (napi_make_callback(r->env, r->actx, recv, cb, 1, &arg, &result) == napi_pending_exception) {
        napi_value err;
        napi_get_and_clear_last_exception(r->env, &err);
        napi_fatal_exception(r->env, err);
      }
    }
    napi_close_handle_scope(r->env, scope);
    if (k < n) return;
  }
}

static int typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is;
  napi_typedarray_type t;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  if (napi_get_typedarray_info(env, v, &t, len, data, NULL, NULL) != napi_ok || t != want || *data == NULL) return 0;
  return 1;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  reader *r = data;
  r->finalized = 1;
  if (r->closed) free(r);
  else stop(r); /* on_closed frees it */
}

static napi_value js_recv_start(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return throw_type(env, "canopy_srtp: internal N-API error");
  static const char *usage = "canopy_srtp.recvStart(fd, buf: Uint8Array, meta: Int32Array, onBatch: function)";
  int32_t fd;
  void *buf, *meta;
  size_t bl, ml;
  napi_valuetype t;
  if (argc < 4 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || !typed(env, argv[1], napi_uint8_array, &buf, &bl) ||
      !typed(env, argv[2], napi_int32_array, &meta, &ml) || napi_typeof(env, argv[3], &t) != napi_ok || t != napi_function) {
    return throw_type(env, usage);
  }
  size_t slots = bl / RECV_SLOT;
  if (ml / RECV_META < slots) slots = ml / RECV_META;
  if (slots == 0) return throw_type(env, "canopy_srtp.recvStart: buf and meta must hold at least one slot");
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return throw_type(env, "canopy_srtp.recvStart: fd is not open");
  int type = 0;
  socklen_t tl = sizeof type;
  if (getsockopt(own, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_DGRAM) {
    close(own);
    return throw_type(env, "canopy_srtp.recvStart: fd is not a UDP socket");
  }
  uv_loop_t *loop;
  reader *r = calloc(1, sizeof *r);
  if (r == NULL || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &r->poll, own) != 0) {
    free(r);
    close(own);
    return throw_type(env, "canopy_srtp.recvStart: cannot watch the socket");
  }
  r->poll.data = r;
  r->fd = own;
  r->env = env;
  r->buf = buf;
  r->meta = meta;
  r->slots = (int)(slots < RECV_BATCH ? slots : RECV_BATCH);
  napi_value name, handle;
  napi_create_string_utf8(env, "canopy.recv", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[3], 1, &r->cb) != napi_ok || napi_create_reference(env, argv[1], 1, &r->bufref) != napi_ok ||
      napi_create_reference(env, argv[2], 1, &r->metaref) != napi_ok || napi_async_init(env, NULL, name, &r->actx) != napi_ok ||
      napi_create_external(env, r, finalize, NULL, &handle) != napi_ok) {
    r->stopped = 1;
    r->finalized = 1; /* no handle was handed out: on_closed frees it */
    uv_close((uv_handle_t *)&r->poll, on_closed);
    return throw_type(env, "canopy_srtp.recvStart: out of memory");
  }
  if (uv_poll_start(&r->poll, UV_READABLE, on_readable) != 0) {
    stop(r);
    return throw_type(env, "canopy_srtp.recvStart: cannot watch the socket");
  }
  /* The socket's own dgram handle decides whether the process stays alive, as before. */
  uv_unref((uv_handle_t *)&r->poll);
  return handle;
}

static napi_value js_recv_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], res;
  void *data = NULL;
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok ||
      t != napi_external || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    return throw_type(env, "canopy_srtp.recvStop(handle from recvStart)");
  }
  reader *r = data;
  bool was = !r->stopped;
  stop(r);
  napi_get_boolean(env, was, &res);
  return res;
}

napi_status canopy_recv_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"recvStart", NULL, js_recv_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvStop", NULL, js_recv_stop, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_value slot, meta;
  napi_create_int32(env, RECV_SLOT, &slot);
  napi_create_int32(env, RECV_META, &meta);
  napi_set_named_property(env, exports, "RECV_SLOT", slot);
  napi_set_named_property(env, exports, "RECV_META", meta);
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
