/**
 * The broadcast page: `broadcast.html?stream=cam1&token=…` publishes camera (or screen) and
 * microphone over WHIP (RFC 9725) to signaling, which redirects (307) to the origin relay.
 * `&autostart=1` goes live on load (used by the tests and by kiosk setups).
 */
import { deleteSession, enableAbsCaptureTime, iceGathered, postSdp } from '../http-sdp.ts';
import { $, flag, fmtKbps, fmtMs, logLine, param, setBadge, setText, showNotice } from './common.ts';

type State = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

interface Session {
  pc: RTCPeerConnection;
  media: MediaStream;
  resource?: string;
  timer?: ReturnType<typeof setInterval>;
  prevBytes?: { at: number; bytes: number };
}

declare global {
  interface Window {
    /** Publishing state, for diagnostics and the end-to-end tests. */
    canopyBroadcast?: { state: State; relay?: string; kbps: number; framesSent: number };
  }
}

const status = { state: 'idle' as State, relay: undefined as string | undefined, kbps: 0, framesSent: 0 };
window.canopyBroadcast = status;
let session: Session | undefined;

function setState(s: State, why?: string): void {
  status.state = s;
  setBadge('state', s);
  document.body.dataset.state = s;
  logLine('log', `${s}${why ? ` — ${why}` : ''}`, s === 'failed' ? 'error' : undefined);
}

/** While live, the source can't change (it would need a new session); Go live and Stop swap. */
function setLive(live: boolean): void {
  $<HTMLButtonElement>('start').disabled = live;
  $<HTMLSelectElement>('source').disabled = live;
  $<HTMLInputElement>('mic').disabled = live;
  if (!live) $<HTMLButtonElement>('stop').disabled = true;
}

async function capture(source: string, mic: boolean): Promise<MediaStream> {
  if (source === 'screen') {
    const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 30 }, audio: false });
    if (mic) {
      const audio = await navigator.mediaDevices.getUserMedia({ audio: true });
      for (const t of audio.getAudioTracks()) screen.addTrack(t);
    }
    return screen;
  }
  return navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720, frameRate: 30 }, audio: mic });
}

async function start(stream: string, token: string): Promise<void> {
  if (session) return;
  setLive(true);
  setState('connecting', 'opening camera');
  let media: MediaStream;
  try {
    media = await capture($<HTMLSelectElement>('source').value, $<HTMLInputElement>('mic').checked);
  } catch (e) {
    setState('failed', `cannot capture: ${(e as Error).message}`);
    showNotice(`The browser refused the camera or screen: ${(e as Error).message}`);
    setLive(false);
    return;
  }
  $<HTMLVideoElement>('preview').srcObject = media;
  const pc = new RTCPeerConnection({ iceServers: [] });
  const s: Session = { pc, media };
  session = s;
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    // abs-capture-time lets every viewer compute glass-to-glass latency (relays forward it).
    if (enableAbsCaptureTime(t)) logLine('log', `abs-capture-time offered on ${track.kind}`);
  }
  pc.onconnectionstatechange = () => {
    if (session !== s) return;
    const st = pc.connectionState;
    setText('ice', st);
    if (st === 'connected') setState('connected', 'media flowing to the origin');
    else if (st === 'disconnected' || st === 'failed') setState(st, 'lost the origin relay');
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    const ex = await postSdp(`${location.origin}/whip/${encodeURIComponent(stream)}`, pc.localDescription!.sdp, token);
    if (session !== s) {
      void deleteSession(ex.resource, token);
      return;
    }
    s.resource = ex.resource;
    status.relay = new URL(ex.answeredBy).host;
    setText('relay', status.relay);
    logLine('log', `answer from ${status.relay}${ex.resource ? `, session ${new URL(ex.resource).pathname}` : ''}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: ex.answer });
  } catch (e) {
    setState('failed', (e as Error).message);
    showNotice(`Publishing failed: ${(e as Error).message}`);
    await stop(token);
    return;
  }
  $<HTMLButtonElement>('stop').disabled = false;
  s.timer = setInterval(() => void sample(s), 1000);
}

async function sample(s: Session): Promise<void> {
  const report = await s.pc.getStats().catch(() => undefined);
  if (!report || session !== s) return;
  let bytes = 0;
  let at = 0;
  let frames = 0;
  let size = '';
  let rtt: number | undefined;
  report.forEach((v: Record<string, unknown>) => {
    if (v.type === 'outbound-rtp') {
      bytes += Number(v.bytesSent ?? 0);
      at = Number(v.timestamp ?? 0);
      if (v.kind === 'video') {
        frames = Number(v.framesSent ?? v.framesEncoded ?? 0);
        if (v.frameWidth) size = `${String(v.frameWidth)}×${String(v.frameHeight)}${v.framesPerSecond ? ` @ ${Math.round(Number(v.framesPerSecond))} fps` : ''}`;
      }
    }
    if (v.type === 'candidate-pair' && v.nominated && typeof v.currentRoundTripTime === 'number') rtt = v.currentRoundTripTime * 1000;
  });
  if (s.prevBytes && at > s.prevBytes.at) status.kbps = ((bytes - s.prevBytes.bytes) * 8) / (at - s.prevBytes.at);
  s.prevBytes = { at, bytes };
  status.framesSent = frames;
  setText('bitrate', fmtKbps(status.kbps));
  setText('frames', String(frames));
  setText('video-size', size || '–');
  setText('rtt', fmtMs(rtt));
}

async function stop(token: string): Promise<void> {
  const s = session;
  if (!s) return;
  session = undefined;
  clearInterval(s.timer);
  // RFC 9725 §4.3: the client ends the session with DELETE on the resource URL.
  await deleteSession(s.resource, token);
  s.pc.close();
  for (const t of s.media.getTracks()) t.stop();
  $<HTMLVideoElement>('preview').srcObject = null;
  setLive(false);
  status.kbps = 0;
  setText('bitrate', '–');
  if (status.state !== 'failed') setState('closed', 'stopped');
}

function main(): void {
  const stream = param('stream');
  const token = param('token');
  if (!stream || !token) {
    showNotice('This page needs ?stream=NAME&token=PUBLISH_TOKEN in its address (`npm start` prints a working link).');
    $<HTMLButtonElement>('start').disabled = true;
    return;
  }
  setText('stream-name', stream);
  document.title = `Canopy · Broadcast ${stream}`;
  $<HTMLAnchorElement>('watch-link').href = `watch.html?stream=${encodeURIComponent(stream)}`;
  $('start').addEventListener('click', () => void start(stream, token));
  $('stop').addEventListener('click', () => void stop(token));
  addEventListener('pagehide', () => void stop(token));
  if (flag('autostart')) void start(stream, token);
}

main();
