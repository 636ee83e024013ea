{
  # Built by native/build.mjs (npm install) with `node-gyp rebuild -C native`, so node-gyp's
  # build/ directory is native/build/ and never touches the repository's build/ (core.wasm).
  # No library is linked: the addon uses the OpenSSL symbols the node binary exports, with the
  # headers node-gyp finds in nodedir (include/node/openssl).
  "targets": [
    {
      "target_name": "canopy_srtp",
      "sources": ["srtp.c", "recv.c"],
      "cflags": ["-O2", "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
      "defines": ["OPENSSL_SUPPRESS_DEPRECATED"]
    }
  ]
}
