/** Relay counters and their Prometheus text exposition (format 0.0.4). */
export class RelayMetrics {
  packetsIn = 0;
  /** of which decrypted by the fast ingress (not werift) */
  packetsInFast = 0;
  /** of which read by the native batched reader (no per-datagram Node callback) */
  packetsInBatched = 0;
  rtcpInFast = 0;
  stunFast = 0;
  consentChecks = 0;
  consentResponses = 0;
  bytesIn = 0;
  packetsOut = 0;
  bytesOut = 0;
  /** of packetsOut: sent in sendmsg calls carrying several packets (UDP GSO), and those calls */
  packetsOutGso = 0;
  gsoSends = 0;
  /** packets dropped toward a downstream whose send queue was full (backpressure) */
  packetsDropped = 0;
  retransmits = 0;
  retransmitMisses = 0;
  nacksReceived = 0;
  nacksSentUpstream = 0;
  plisReceived = 0;
  plisSentUpstream = 0;
  fastJoinPackets = 0;
  fastJoins = 0;
  invalidPackets = 0;
  rtcpErrors = 0;
  sessionsOpened = 0;
  sessionsClosed = 0;
  httpErrors = new Map<number, number>();
  reparents = 0;

  /** glass-to-relay latency from abs-capture-time (ms): count, sum and last sample */
  captureLatencyCount = 0;
  captureLatencySum = 0;
  captureLatencyLast = 0;

  captureLatency(ms: number): void {
    if (!(ms > -60_000 && ms < 60_000)) return; // clocks far apart: not a latency
    this.captureLatencyCount++;
    this.captureLatencySum += ms;
    this.captureLatencyLast = ms;
  }

  httpError(status: number): void {
    this.httpErrors.set(status, (this.httpErrors.get(status) ?? 0) + 1);
  }

  render(relayId: string, gauges: { streams: number; viewers: number; relays: number; publishers: number }): string {
    const l = `relay="${relayId.replace(/["\\\n]/g, '_')}"`;
    const lines: string[] = [];
    const c = (name: string, help: string, v: number, type = 'counter'): void => {
      lines.push(`# HELP canopy_relay_${name} ${help}`, `# TYPE canopy_relay_${name} ${type}`, `canopy_relay_${name}{${l}} ${v}`);
    };
    c('streams', 'Streams carried by this relay', gauges.streams, 'gauge');
    c('viewers', 'Viewer sessions', gauges.viewers, 'gauge');
    c('child_relays', 'Child relay sessions pulling from this relay', gauges.relays, 'gauge');
    c('publishers', 'WHIP publisher sessions', gauges.publishers, 'gauge');
    c('packets_in_total', 'RTP packets received from upstream', this.packetsIn);
    c('bytes_in_total', 'RTP bytes received from upstream', this.bytesIn);
    c('packets_in_fast_total', 'Upstream RTP packets decrypted by the fast ingress instead of werift', this.packetsInFast);
    c('packets_in_batched_total', 'Upstream RTP packets of the fast ingress read in native batches (recvmmsg) instead of one Node callback each', this.packetsInBatched);
    c('rtcp_in_fast_total', 'RTCP compounds from downstreams handled by the fast intake instead of werift', this.rtcpInFast);
    c('stun_keepalives_fast_total', 'STUN keepalive/consent requests from downstreams answered without werift', this.stunFast);
    c('consent_checks_total', 'RFC 7675 consent checks sent to downstreams (without werift)', this.consentChecks);
    c('consent_responses_total', 'Consent check responses accepted from downstreams', this.consentResponses);
    c('packets_out_total', 'RTP packets sent to downstreams', this.packetsOut);
    c('bytes_out_total', 'RTP bytes sent to downstreams (before SRTP)', this.bytesOut);
    c('packets_out_gso_total', 'RTP packets to downstreams that left in a UDP GSO send of several packets', this.packetsOutGso);
    c('gso_sends_total', 'UDP GSO sends (one sendmsg carrying several packets to one downstream)', this.gsoSends);
    c('packets_dropped_total', 'Packets dropped for a downstream whose send queue was full', this.packetsDropped);
    c('retransmits_total', 'Retransmissions answered from the ring', this.retransmits);
    c('retransmit_misses_total', 'NACKed packets no longer in the ring', this.retransmitMisses);
    c('nacks_received_total', 'NACK packets received from downstreams', this.nacksReceived);
    c('nacks_sent_total', 'NACK packets sent upstream', this.nacksSentUpstream);
    c('plis_received_total', 'PLI/FIR received from downstreams', this.plisReceived);
    c('plis_sent_total', 'Keyframe requests sent upstream after merging', this.plisSentUpstream);
    c('fast_joins_total', 'Downstreams started from the keyframe cache', this.fastJoins);
    c('fast_join_packets_total', 'Packets sent from the keyframe cache', this.fastJoinPackets);
    c('invalid_packets_total', 'Upstream RTP packets the core refused', this.invalidPackets);
    c('rtcp_errors_total', 'RTCP compounds that failed to parse', this.rtcpErrors);
    c('sessions_opened_total', 'WHIP/WHEP sessions opened', this.sessionsOpened);
    c('sessions_closed_total', 'WHIP/WHEP sessions closed', this.sessionsClosed);
    c('reparents_total', 'Pulls that replaced an existing parent', this.reparents);
    lines.push(
      '# HELP canopy_relay_capture_latency_ms Capture (abs-capture-time) to arrival at this relay, per packet',
      '# TYPE canopy_relay_capture_latency_ms summary',
      `canopy_relay_capture_latency_ms_sum{${l}} ${this.captureLatencySum.toFixed(3)}`,
      `canopy_relay_capture_latency_ms_count{${l}} ${this.captureLatencyCount}`,
    );
    c('capture_latency_last_ms', 'Latest capture-to-arrival latency sample', Number(this.captureLatencyLast.toFixed(3)), 'gauge');
    lines.push('# HELP canopy_relay_http_errors_total HTTP error replies by status', '# TYPE canopy_relay_http_errors_total counter');
    for (const [s, n] of this.httpErrors) lines.push(`canopy_relay_http_errors_total{${l},status="${s}"} ${n}`);
    return lines.join('\n') + '\n';
  }
}
