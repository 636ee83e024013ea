/**
 * The watch page: `watch.html?stream=cam1&token=…` plays through the Canopy WebSocket protocol;
 * add `&whep=1` for plain WHEP. Everything it shows comes from the player library's events.
 */
import { watch, type Player, type PlayerStats } from '../player.ts';
import { $, flag, fmtKbps, fmtMs, fmtPct, logLine, param, setBadge, setText, showNotice } from './common.ts';

declare global {
  interface Window {
    /** The page's player, for diagnostics and the end-to-end tests. */
    canopyPlayer?: Player;
  }
}

function render(s: PlayerStats): void {
  setText('relay', s.relay ? s.relay.relayId : '–');
  setText('depth', s.relay?.depth === undefined ? '–' : String(s.relay.depth));
  setText('ttff', fmtMs(s.ttffMs));
  const src = s.latencySource === 'abs-capture-time' ? ' (abs-capture-time)' : s.latencySource === 'stats' ? ' (estimate from stats)' : '';
  setText('latency', s.latencyMs === undefined ? '–' : `${fmtMs(s.latencyMs)}${src}`);
  setText('loss', `${fmtPct(s.lossFraction)} now · ${s.packetsLost} of ${s.packetsReceived + s.packetsLost} packets since start`);
  setText('jitter', fmtMs(s.jitterMs));
  setText('bitrate', fmtKbps(s.kbps));
  setText('video-size', s.width ? `${s.width}×${s.height}${s.framesPerSecond ? ` @ ${Math.round(s.framesPerSecond)} fps` : ''}` : '–');
  setText('frames', String(s.framesDecoded));
  setText('migrations', String(s.migrations));
  setText('recovery', fmtMs(s.lastRecoveryMs));
}

function main(): void {
  const stream = param('stream');
  const token = param('token');
  if (!stream || !token) {
    showNotice('This page needs ?stream=NAME&token=WATCH_TOKEN in its address (`npm start` prints a working link).');
    setBadge('state', 'failed');
    return;
  }
  const whep = flag('whep');
  setText('stream-name', stream);
  setText('mode', whep ? 'plain WHEP' : 'WebSocket signaling');
  document.title = `Canopy · Watch ${stream}`;
  const video = $<HTMLVideoElement>('video');
  const url = `${location.origin}/whep/${encodeURIComponent(stream)}`;
  const player = watch(video, url, token, { whep, region: param('region') });
  window.canopyPlayer = player;

  player.on('state', ({ state, reason }) => {
    setBadge('state', state);
    document.body.dataset.state = state;
    logLine('log', `${state}${reason ? ` — ${reason}` : ''}`, state === 'failed' ? 'error' : undefined);
    if (state === 'failed') showNotice(`Playback stopped: ${reason ?? 'unknown error'}`);
  });
  player.on('placement', (p) => {
    document.body.dataset.relay = p.relayId;
    logLine('log', `placed on relay ${p.relayId}${p.depth !== undefined ? ` (depth ${p.depth})` : ''}`);
  });
  player.on('migrate', ({ reason, from, to }) => {
    document.body.dataset.migrations = String(player.stats.migrations);
    logLine('log', `migrate (${reason}): ${from?.relayId ?? '?'} → ${to?.relayId ?? '?'}`, 'migrate');
  });
  player.on('firstframe', ({ ttffMs, recoveryMs }) => {
    logLine('log', recoveryMs !== undefined ? `frames again ${Math.round(recoveryMs)} ms after losing the relay` : `first frame after ${Math.round(ttffMs)} ms`);
  });
  player.on('error', ({ code, message }) => logLine('log', `error ${code}: ${message}`, 'error'));
  player.on('stats', render);

  $('stop').addEventListener('click', () => player.close());
  $('unmute').addEventListener('click', (ev) => {
    video.muted = !video.muted;
    (ev.currentTarget as HTMLButtonElement).textContent = video.muted ? 'Unmute' : 'Mute';
    void video.play().catch(() => undefined);
  });
  addEventListener('pagehide', () => player.close());
}

main();
