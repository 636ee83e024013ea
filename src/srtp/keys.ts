/**
 * Getting the negotiated SRTP profile and master keys out of a connected werift
 * RTCPeerConnection.
 *
 * werift derives them in RTCDtlsTransport.updateSrtpSession() once the handshake completes:
 * DtlsSocket.extractSessionKeys() runs the RFC 5705 exporter with label "EXTRACTOR-dtls_srtp"
 * for 2 * (key + salt) bytes and splits them as client key | server key | client salt |
 * server salt (RFC 5764 §4.2); the DTLS client's half is its local (sending) key. The result
 * is kept as `dtlsTransport.srtp.config` ({ keys, profile }), which is what werift's own
 * SRTP/SRTCP sessions use, so reading it guarantees the fast path and werift agree. The
 * profile is the one werift negotiated in use_srtp (it offers GCM, then AES-CM).
 */
import type { RTCDtlsTransport, RTCPeerConnection } from 'werift';
import { SrtpKeysUnavailableError, SrtpOptionsError } from './errors.ts';
import { isSrtpProfile, masterSaltLength, MASTER_KEY_LENGTH, type SrtpProfile } from './profile.ts';

export interface SrtpKeys {
  profile: SrtpProfile;
  /** Our sending key and salt (werift's "local"). */
  localMasterKey: Buffer;
  localMasterSalt: Buffer;
  /** The peer's sending key and salt. */
  remoteMasterKey: Buffer;
  remoteMasterSalt: Buffer;
}

/** The parts of werift's RTCDtlsTransport the fast path reads (werift 0.25.2 internals). */
export interface WeriftSrtpSessionLike {
  config: {
    profile: number;
    keys: { localMasterKey: Buffer; localMasterSalt: Buffer; remoteMasterKey: Buffer; remoteMasterSalt: Buffer };
  };
  localContext?: {
    srtpSSRCStates?: Record<number, unknown>;
    getSrtcpSsrcState?: (ssrc: number) => { srtcpIndex: number };
  };
}

export interface WeriftDtlsLike {
  state: string;
  srtp?: WeriftSrtpSessionLike;
  srtcp?: WeriftSrtpSessionLike;
  iceTransport: { connection: unknown };
  bytesSent?: number;
  packetsSent?: number;
}

export type SrtpKeySource = RTCPeerConnection | RTCDtlsTransport;

function isDtls(x: unknown): x is WeriftDtlsLike {
  return typeof x === 'object' && x !== null && 'iceTransport' in x && 'state' in x;
}

/**
 * The DTLS transport carrying media for `source`: the transport itself, or the single
 * (BUNDLE) transport of a peer connection. Throws SrtpKeysUnavailableError otherwise.
 */
export function dtlsTransportOf(source: SrtpKeySource): WeriftDtlsLike {
  if (isDtls(source)) return source;
  const list = (source as { dtlsTransports?: unknown })?.dtlsTransports;
  if (!Array.isArray(list)) {
    throw new SrtpKeysUnavailableError('srtpKeysOf: pass a werift RTCPeerConnection or RTCDtlsTransport');
  }
  if (list.length === 0) {
    throw new SrtpKeysUnavailableError('srtpKeysOf: the peer connection has no DTLS transport yet; call after setRemoteDescription');
  }
  if (list.length > 1) {
    throw new SrtpKeysUnavailableError(
      'srtpKeysOf: the peer connection has several DTLS transports (no BUNDLE); pass the transceiver\'s dtlsTransport',
    );
  }
  return list[0] as WeriftDtlsLike;
}

/** The SRTP session werift built for this transport, or undefined before DTLS connected. */
export function weriftSrtpSession(dtls: WeriftDtlsLike): WeriftSrtpSessionLike | undefined {
  return dtls.state === 'connected' ? dtls.srtp : undefined;
}

/** Copy the keys out of a werift SRTP session, validating their shape. */
export function keysFromSession(session: WeriftSrtpSessionLike): SrtpKeys {
  const { profile, keys } = session.config;
  if (!isSrtpProfile(profile)) {
    throw new SrtpKeysUnavailableError(`srtpKeysOf: werift negotiated SRTP profile ${profile}, which the fast path does not implement`);
  }
  const saltLen = masterSaltLength(profile);
  const ok = (b: unknown, n: number): b is Buffer => b instanceof Uint8Array && b.length === n;
  if (!ok(keys.localMasterKey, MASTER_KEY_LENGTH) || !ok(keys.remoteMasterKey, MASTER_KEY_LENGTH) ||
      !ok(keys.localMasterSalt, saltLen) || !ok(keys.remoteMasterSalt, saltLen)) {
    throw new SrtpKeysUnavailableError('srtpKeysOf: werift\'s SRTP keys have unexpected lengths (werift version changed?)');
  }
  return {
    profile,
    localMasterKey: Buffer.from(keys.localMasterKey),
    localMasterSalt: Buffer.from(keys.localMasterSalt),
    remoteMasterKey: Buffer.from(keys.remoteMasterKey),
    remoteMasterSalt: Buffer.from(keys.remoteMasterSalt),
  };
}

/**
 * The negotiated profile and master keys/salts of a connected peer connection (or DTLS
 * transport). Throws SrtpKeysUnavailableError before DTLS has connected.
 */
export function srtpKeysOf(source: SrtpKeySource): SrtpKeys {
  const dtls = dtlsTransportOf(source);
  const session = weriftSrtpSession(dtls);
  if (!session) {
    throw new SrtpKeysUnavailableError(
      `srtpKeysOf: DTLS state is "${dtls.state}"; wait for connectionState "connected" (or dtlsTransport "connected")`,
    );
  }
  return keysFromSession(session);
}

/**
 * Restrict the DTLS-SRTP profiles werift offers/accepts on `source`'s DTLS transports (werift's
 * default is GCM first, then AES-CM). With [SRTP_AES128_CM_HMAC_SHA1_80] the fast path's
 * cheaper AES-CM path is used whichever side picks (RFC 8827 §6.5 makes AES-CM mandatory to
 * implement, so every browser accepts it). Call after setLocalDescription/setRemoteDescription
 * created the transports and before DTLS starts (ICE connecting); again after an ICE restart
 * that creates new transports. Only the given transports change (werift's shared default list
 * is left alone). Returns how many transports were updated.
 */
export function preferSrtpProfiles(source: SrtpKeySource, profiles: readonly SrtpProfile[]): number {
  if (!Array.isArray(profiles) || profiles.length === 0 || !profiles.every(isSrtpProfile)) {
    throw new SrtpOptionsError('preferSrtpProfiles: profiles must be a non-empty list of SRTP_AES128_CM_HMAC_SHA1_80 / SRTP_AEAD_AES_128_GCM');
  }
  const list = isDtls(source) ? [source] : ((source as { dtlsTransports?: unknown }).dtlsTransports as unknown[] | undefined) ?? [];
  let n = 0;
  for (const t of list) {
    if (!isDtls(t)) continue;
    if (t.state !== 'new') continue; // the handshake already chose
    (t as unknown as { srtpProfiles: number[] }).srtpProfiles = [...profiles];
    n++;
  }
  return n;
}
