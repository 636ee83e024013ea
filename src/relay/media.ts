/**
 * What a relay negotiates: codecs, RTCP feedback and header extensions, and the werift peer
 * configuration every relay peer connection (publisher, viewer, parent) uses.
 *
 * No RTX and no transport-cc: retransmissions go on the media SSRC (RFC 4585 §6.2.1 NACK answered
 * with the original packet, which RFC 4588 §1 allows when RTX is not negotiated), and a relay
 * forwards without bandwidth estimation, so a TWCC sequence extension would be a lie.
 */
import {
  RTCRtpCodecParameters,
  RTCRtpHeaderExtensionParameters,
  type PeerConfig,
  type RTCRtpTransceiver,
} from 'werift';
import { useNativeX25519 } from './werift-x25519.ts';
import { NO_STUN_URL, skipSentinelStun } from './werift-ice.ts';
import { cacheDtlsSigningKey } from './werift-signing.ts';
import { setsockoptRcvbuf } from '../util/rcvbuf.ts';

export const EXT_MID = 'urn:ietf:params:rtp-hdrext:sdes:mid';
export const EXT_ABS_CAPTURE_TIME = 'http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time';
export const EXT_AUDIO_LEVEL = 'urn:ietf:params:rtp-hdrext:ssrc-audio-level';
export const EXT_VIDEO_ORIENTATION = 'urn:3gpp:video-orientation';

/** Extension ids this relay uses when it is the offerer (pulling from a parent). */
export const EXT_IDS: Readonly<Record<string, number>> = {
  [EXT_MID]: 1,
  [EXT_ABS_CAPTURE_TIME]: 3,
  [EXT_AUDIO_LEVEL]: 4,
  [EXT_VIDEO_ORIENTATION]: 5,
};

const videoFeedback = () => [
  { type: 'nack' },
  { type: 'nack', parameter: 'pli' },
  { type: 'ccm', parameter: 'fir' },
];

export function relayCodecs(): { video: RTCRtpCodecParameters[]; audio: RTCRtpCodecParameters[] } {
  return {
    video: [
      new RTCRtpCodecParameters({ mimeType: 'video/VP8', clockRate: 90000, payloadType: 96, rtcpFeedback: videoFeedback() }),
      new RTCRtpCodecParameters({
        mimeType: 'video/H264',
        clockRate: 90000,
        payloadType: 102,
        rtcpFeedback: videoFeedback(),
        parameters: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f',
      }),
      new RTCRtpCodecParameters({ mimeType: 'video/VP9', clockRate: 90000, payloadType: 98, rtcpFeedback: videoFeedback() }),
      new RTCRtpCodecParameters({ mimeType: 'video/AV1', clockRate: 90000, payloadType: 45, rtcpFeedback: videoFeedback() }),
    ],
    audio: [
      new RTCRtpCodecParameters({ mimeType: 'audio/opus', clockRate: 48000, channels: 2, payloadType: 111, rtcpFeedback: [{ type: 'nack' }] }),
    ],
  };
}

export function relayHeaderExtensions(): { video: RTCRtpHeaderExtensionParameters[]; audio: RTCRtpHeaderExtensionParameters[] } {
  const ext = (uri: string) => new RTCRtpHeaderExtensionParameters({ id: EXT_IDS[uri]!, uri });
  return {
    video: [ext(EXT_MID), ext(EXT_ABS_CAPTURE_TIME), ext(EXT_VIDEO_ORIENTATION)],
    audio: [ext(EXT_MID), ext(EXT_ABS_CAPTURE_TIME), ext(EXT_AUDIO_LEVEL)],
  };
}

/**
 * werift ICE options that gather host candidates only, fast.
 *
 * werift 0.25 treats an empty `iceServers` as "use stun.l.google.com:19302" (ice.ts
 * DEFAULT_STUN_SERVER): every gathering then does a DNS lookup and sends STUN off the machine, and
 * when the resolver is slow or the network closed, setLocalDescription stalls for the 5 s STUN
 * gather timeout. That stall was the 5 s tail of every migration and fast join we measured. With
 * no STUN server wanted we point STUN at the loopback discard port and cap the gather at 50 ms,
 * which leaves exactly the host candidates; werift-ice.ts then removes even those 50 ms by
 * telling werift that sentinel means no STUN at all. A deployment that wants server-reflexive
 * candidates passes its own `iceServers` and gets werift's normal gathering.
 */
export function hostOnlyIce(host: string, iceServers: { urls: string }[] = []): Partial<PeerConfig> {
  // Every werift peer we make is configured here first (see werift-x25519.ts, werift-ice.ts,
  // werift-signing.ts).
  useNativeX25519();
  skipSentinelStun();
  cacheDtlsSigningKey();
  const cfg: Partial<PeerConfig> = iceServers.length > 0
    ? { iceServers }
    : { iceServers: [{ urls: NO_STUN_URL }], iceStunGatherTimeout: 0.05 };
  cfg.iceUseIpv6 = false;
  // A peer given an address gathers exactly that one, on sockets bound to it: werift gathers
  // every interface address (never loopback) on sockets bound to 0.0.0.0 unless told otherwise,
  // so turn its interface gathering off, add the address, and bind there. 0.0.0.0 keeps werift's
  // default: every interface address, sockets on all interfaces.
  if (host !== '0.0.0.0') {
    const addr = host === 'localhost' ? '127.0.0.1' : host;
    cfg.iceUseIpv4 = false; // werift's interface gathering only (ice.ts getHostAddresses)
    cfg.iceAdditionalHostAddresses = [addr];
    cfg.iceInterfaceAddresses = { udp4: addr };
  }
  return cfg;
}

/** werift configuration for a relay-side peer connection. */
export function relayPeerConfig(host: string, portRange?: [number, number], iceServers?: { urls: string }[]): Partial<PeerConfig> {
  // A relay's upstream socket must ride out a busy event loop (see util/rcvbuf.ts).
  setsockoptRcvbuf();
  const cfg: Partial<PeerConfig> = {
    codecs: relayCodecs(),
    headerExtensions: relayHeaderExtensions(),
    ...hostOnlyIce(host, iceServers),
  };
  if (portRange) cfg.icePortRange = portRange;
  return cfg;
}

/** Codec family from a mime type, for keyframe detection. */
export type CodecKind = 'vp8' | 'vp9' | 'h264' | 'av1' | 'opus' | 'other';
export function codecKind(mimeType: string): CodecKind {
  const m = mimeType.toLowerCase();
  if (m === 'video/vp8') return 'vp8';
  if (m === 'video/vp9') return 'vp9';
  if (m === 'video/h264') return 'h264';
  if (m === 'video/av1') return 'av1';
  if (m === 'audio/opus') return 'opus';
  return 'other';
}

/** Negotiated sending parameters of a transceiver after setLocal/RemoteDescription. */
export interface Negotiated {
  kind: 'video' | 'audio';
  mid: string;
  payloadType: number;
  mimeType: string;
  clockRate: number;
  /** extension id by URI as negotiated on this m-line */
  extIds: Map<string, number>;
}

export function negotiated(t: RTCRtpTransceiver): Negotiated | undefined {
  const codec = t.codecs[0];
  if (!codec) return undefined;
  const extIds = new Map<string, number>();
  for (const e of t.headerExtensions) extIds.set(e.uri, e.id);
  return {
    kind: t.kind as 'video' | 'audio',
    mid: t.mid ?? '',
    payloadType: codec.payloadType,
    mimeType: codec.mimeType,
    clockRate: codec.clockRate,
    extIds,
  };
}
