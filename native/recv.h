/* The receive side of canopy_srtp (recv.c), registered by srtp.c's module init. */
#ifndef CANOPY_RECV_H
#define CANOPY_RECV_H
#include <node_api.h>
napi_status canopy_recv_init(napi_env env, napi_value exports);
#endif
