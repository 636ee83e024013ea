/**
 * werift peer plumbing for the relay: create, answer/offer with complete ICE gathering, and the
 * few places where the relay reaches into werift internals (documented in docs/architecture.md):
 *  - the ingress receiver's own NACK generator and receiver reports are switched off, because the
 *    forwarding core generates both from its statistics (RFC 4585 §6.2.1, RFC 3550 §6.4.2);
 *  - raw RTCP compounds built by the core are sent through the DTLS transport's SRTCP session.
 */
import { RTCPeerConnection, type RTCRtpReceiver, type RTCDtlsTransport } from 'werift';
import { relayPeerConfig } from './media.ts';

/**
 * A relay's peer connection. `offerer` (the relay's WHEP client toward its parent): BUNDLE
 * from the start ('max-bundle'). With werift's default policy an offerer gathers an ICE
 * transport per m-line and, once the answer bundles them, never closes the sockets of the
 * transports it dropped: two descriptors lost per pull of a video+audio stream.
 */
export function createPeer(host: string, portRange?: [number, number], iceServers?: { urls: string }[], offerer = false): RTCPeerConnection {
  const cfg = relayPeerConfig(host, portRange, iceServers);
  if (offerer) cfg.bundlePolicy = 'max-bundle';
  return new RTCPeerConnection(cfg);
}

export async function iceGathered(pc: RTCPeerConnection, timeoutMs = 5000): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve) => {
    // Gathering host candidates on loopback finishes in milliseconds; on timeout answer with what we have.
    const t = setTimeout(done, timeoutMs);
    const sub = pc.iceGatheringStateChange.subscribe((s) => {
      if (s === 'complete') done();
    });
    function done(): void {
      clearTimeout(t);
      sub.unSubscribe();
      resolve();
    }
  });
}

/** Stop werift's receiver from sending its own NACKs and receiver reports. */
export function muteReceiverFeedback(receiver: RTCRtpReceiver): void {
  const r = receiver as unknown as {
    nack?: { addPacket?: (p: unknown) => void; close?: () => void };
    rtcpRunning?: boolean;
  };
  if (r.nack) {
    r.nack.addPacket = () => {};
    r.nack.close?.();
  }
  // runRtcp() returns at once while rtcpRunning is set (werift 0.25 rtpReceiver.js).
  r.rtcpRunning = true;
}

/** Send a raw (unencrypted) RTCP compound through the transport's SRTCP session. */
export function sendRawRtcp(dtls: RTCDtlsTransport | undefined, compound: Uint8Array): void {
  if (!dtls || dtls.state !== 'connected') return;
  const buf = Buffer.from(compound.buffer, compound.byteOffset, compound.byteLength);
  const pkt = { serialize: () => buf } as unknown as Parameters<RTCDtlsTransport['sendRtcp']>[0][number];
  dtls.sendRtcp([pkt]).catch(() => {});
}

/** Extract the ice-ufrag/ice-pwd and candidate lines of an SDP fragment (RFC 8840 §9). */
export function parseSdpFrag(frag: string): { ufrag?: string; pwd?: string; candidates: { candidate: string; mid?: string }[] } {
  let ufrag: string | undefined;
  let pwd: string | undefined;
  let mid: string | undefined;
  const candidates: { candidate: string; mid?: string }[] = [];
  for (const raw of frag.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('a=ice-ufrag:')) ufrag = line.slice(12);
    else if (line.startsWith('a=ice-pwd:')) pwd = line.slice(10);
    else if (line.startsWith('a=mid:')) mid = line.slice(6);
    else if (line.startsWith('a=candidate:')) candidates.push({ candidate: line.slice(2), mid });
  }
  return { ufrag, pwd, candidates };
}

/** The first ice-ufrag of an SDP. */
export function sdpUfrag(sdp: string): string | undefined {
  const m = /a=ice-ufrag:(\S+)/.exec(sdp);
  return m?.[1];
}

/** Cheap structural check before werift sees the offer (RFC 8866 §5: v= first, at least one m=). */
export function looksLikeSdpOffer(sdp: string): string | undefined {
  if (!sdp.startsWith('v=0')) return 'body is not an SDP offer (must start with v=0)';
  if (!/\r?\nm=(audio|video) /.test(sdp)) return 'SDP offer has no audio or video m-line';
  if (!/a=ice-ufrag:/.test(sdp) || !/a=fingerprint:/.test(sdp)) return 'SDP offer lacks ICE credentials or a DTLS fingerprint';
  return undefined;
}
