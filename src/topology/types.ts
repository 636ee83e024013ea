/**
 * The topology contract: which relays exist, which relay carries which stream, who feeds whom,
 * and where the next viewer goes. Two stores implement it (MemoryTopology for one process,
 * RedisTopology for many); signaling and the mesh wiring code against `Topology` only.
 *
 * Slot accounting (both stores): a relay has `capacity` downstream slots shared by all the
 * streams it carries. A viewer takes one slot; a child relay takes one slot in its parent. For
 * every stream a relay carries it keeps `fanout` slots in reserve for child relays, so a relay
 * full of viewers can still grow the tree beneath it:
 *   viewers + streams * fanout <= capacity      (viewer admission)
 *   children(stream) <= fanout                   (per stream, per relay)
 * Together these give viewers + children <= capacity at all times.
 */

/** What a relay tells the store when it (re-)registers. */
export interface RelayRegistration {
  /** Unique, stable across restarts of the relay process. */
  id: string;
  /** Free-form region name ('' = none); placement prefers a viewer's region. */
  region?: string;
  /** Base HTTP URL of the relay (WHIP/WHEP live under it), e.g. http://10.0.0.5:8443. */
  url: string;
  /** Downstream slots (viewers + child relays) across all streams. Integer >= 1. */
  capacity: number;
  /** Child relays this relay may feed per stream. Integer >= 0 (0 = leaf only). */
  fanout: number;
  /** Lease length; the relay must heartbeat more often than this. Default: the store's leaseMs. */
  leaseMs?: number;
  /**
   * What the relay carries right now, for reconciliation after a store outage or a relay
   * restart (the media plane is the truth; the store adopts it where it can).
   */
  carrying?: CarriedStream[];
}

/** One stream a (re-)registering relay already carries. */
export interface CarriedStream {
  stream: string;
  /** The relay it pulls from, or null when it is the stream's origin (it holds the WHIP publish). */
  parentId: string | null;
  /** Topology viewer ids of the sessions it serves for this stream. */
  viewers?: string[];
}

/** Result of registerRelay: the stored record and what happened to each carried stream. */
export interface RegisterResult {
  relay: RelayInfo;
  /** Streams adopted into the store as carried by this relay. */
  accepted: string[];
  /**
   * Streams the store could not adopt (e.g. the parent is unknown to the store, or the stream
   * has another live origin). The relay should stop carrying them (unpull) or re-register
   * later, once its parent has re-registered.
   */
  rejected: Array<{ stream: string; reason: string }>;
}

/** A relay as the store sees it. */
export interface RelayInfo {
  id: string;
  region: string;
  url: string;
  capacity: number;
  fanout: number;
  /** Last load the relay reported in a heartbeat (its own measure; informational). */
  load: number;
  /** Viewer slots reserved in the store, across all streams (authoritative for placement). */
  viewers: number;
  /** Child relays it feeds, across all streams. */
  children: number;
  /** Streams it carries. */
  streams: number;
  /** Drained relays accept nothing new. */
  draining: boolean;
  /** False once its lease expired (declared down) — such a record is kept until deregistered or re-registered. */
  up: boolean;
  /** Lease expiry, ms on the store's time base (see the store's docs). */
  leaseExpiresAt: number;
}

/** One relay in one stream's tree. */
export interface TreeNode {
  relayId: string;
  /** null for the origin. */
  parentId: string | null;
  /** 0 = origin. */
  depth: number;
  /** Viewers this relay serves for this stream. */
  viewers: number;
  /** Child relays it feeds for this stream. */
  children: number;
  /** When it became idle (no viewers, no children), or null when busy. Store time base. */
  idleSinceMs: number | null;
}

/** A stream's tree, nodes sorted by depth then relay id. */
export interface StreamTree {
  stream: string;
  originId: string;
  nodes: TreeNode[];
  /** Total viewers on the tree. */
  viewers: number;
}

/** Where a viewer goes. */
export interface Placement {
  stream: string;
  /** The reservation id: pass it to releaseViewer, and as `?viewer=` to the relay. */
  viewerId: string;
  relay: RelayInfo;
  /** Depth of `relay` in the stream's tree (0 = origin). */
  depth: number;
  /**
   * Present when the tree grew for this viewer: `relayId` (== relay.id) must start pulling the
   * stream from `parentId` before the viewer's offer reaches it.
   */
  attach?: { relayId: string; parentId: string };
}

export interface PlaceOptions {
  /** Preferred region (the viewer's); '' or absent = no preference. */
  region?: string;
  /** Reuse a viewer id (idempotent retry); default: a fresh random id. */
  viewerId?: string;
}

/** Event kinds; the names are those of TopologyEvent.Kind in src/proto/canopy.proto. */
export type TopologyEventKind =
  | 'RELAY_DOWN' // relayId's lease expired; it was declared down (exactly once across processes)
  | 'STREAM_ENDED' // stream ended (endStream, or its origin went down / deregistered)
  | 'RELAY_REPARENTED' // relayId must now pull stream from parentId (repair or drain)
  | 'VIEWER_MOVE' // viewerId must move to relayId (relayId '' = no relay had room: disconnect)
  | 'RELAY_ATTACHED' // relayId must start pulling stream from parentId (tree grew)
  | 'RELAY_DETACHED' // relayId stops carrying stream (idle past the grace period, drained, or cut off)
  | 'RELAY_DRAINING'; // relayId is draining: it accepts nothing new

/** A topology event, delivered to subscribers in every process sharing the store. */
export interface TopologyEvent {
  kind: TopologyEventKind;
  stream: string;
  relayId: string;
  parentId: string;
  viewerId: string;
  originId: string;
  /** Store time when it happened. */
  atMs: number;
  /**
   * The relay `relayId` names, resolved by the receiving store when it can (always for
   * VIEWER_MOVE with a non-empty relayId, so a subscriber can build a Migrate placement).
   */
  relay?: RelayInfo;
  /** Depth of relayId in the stream's tree, when the store knows it (VIEWER_MOVE, attach, reparent). */
  depth?: number;
}

export type TopologyListener = (event: TopologyEvent) => void;

/** Largest batch placeViewers accepts (a Redis script blocks the server while it runs). */
export const MAX_PLACE_BATCH = 1000;

/** What a failed entry of placeViewers holds (a TopologyError from errors.ts). */
export interface TopologyErrorLike extends Error {
  code: string;
}

/** What one maintenance step did. */
export interface ReapResult {
  /** Relays this call declared down (another process may have declared others). */
  down: string[];
  /** Streams repaired (or ended, when their origin was lost). */
  repaired: string[];
  /** Relays detached as idle: `${stream}/${relayId}`. */
  detached: string[];
  /** Viewers moved by the repairs this call made. */
  movedViewers: number;
  /** Relays re-parented by the repairs this call made. */
  movedRelays: number;
}

/**
 * The topology store. Every method that changes state is atomic with respect to every other
 * process using the same store: concurrent placements never overfill a relay or build a cycle.
 * Methods reject with TopologyError subclasses (see errors.ts); RedisTopology rejects with
 * StoreUnavailableError within its command timeout when Redis cannot be reached.
 */
export interface Topology {
  /** Add or refresh a relay and its lease; adopt what it already carries (`carrying`). */
  registerRelay(reg: RelayRegistration): Promise<RegisterResult>;
  /** Renew the lease and report load. UnknownRelayError when the store no longer knows it (re-register). */
  heartbeat(relayId: string, load: number): Promise<void>;
  /** Mark draining: nothing new lands on it; its viewers and child relays are moved (events). */
  drainRelay(relayId: string): Promise<void>;
  /** Remove a relay now (graceful shutdown): same repair as a lease expiry, without waiting. */
  deregisterRelay(relayId: string): Promise<void>;
  /**
   * End a relay's lease now, for a relay that someone found unreachable: it is declared down
   * (RELAY_DOWN, exactly once across processes) and repaired as if its lease had run out. A
   * heartbeat that lands first wins (the relay is alive). Resolves true when this call declared
   * it down; false when it was already down, unknown, or heartbeated meanwhile.
   */
  expireLease(relayId: string): Promise<boolean>;
  /** A relay accepted a WHIP publish: it becomes the stream's origin (depth 0). */
  registerStream(stream: string, originRelayId: string): Promise<StreamTree>;
  /** The publish ended: drop the tree, every viewer reservation; STREAM_ENDED. */
  endStream(stream: string): Promise<void>;
  /** Reserve a slot for a viewer, growing the tree when needed. NoStreamError / NoCapacityError. */
  placeViewer(stream: string, opts?: PlaceOptions): Promise<Placement>;
  /**
   * Place up to MAX_PLACE_BATCH viewers of one stream in one atomic step (one round trip to
   * Redis) — for join storms and simulations. Entry i is the Placement for requests[i] or the
   * TopologyError for it (NoCapacityError). Rejects as a whole with NoStreamError.
   */
  placeViewers(stream: string, requests: readonly PlaceOptions[]): Promise<Array<Placement | TopologyErrorLike>>;
  /** Free a viewer's slot. Returns false when the reservation was unknown (already released or moved away). */
  releaseViewer(stream: string, viewerId: string): Promise<boolean>;
  /** A stream's tree, or undefined when the stream is not live. */
  getTree(stream: string): Promise<StreamTree | undefined>;
  /** One relay, or undefined. */
  getRelay(relayId: string): Promise<RelayInfo | undefined>;
  /** Every registered relay (up or declared down), sorted by id. */
  listRelays(): Promise<RelayInfo[]>;
  /** Live stream names, sorted. */
  listStreams(): Promise<string[]>;
  /** Receive every topology event (from every process sharing the store). Returns unsubscribe. */
  subscribe(listener: TopologyListener): () => void;
  /**
   * One maintenance step, run periodically by every process (or by the store's own timer, see
   * `reapIntervalMs`): declare lease-expired relays down (exactly once across processes), repair
   * each affected stream atomically, and detach relays idle longer than the grace period.
   */
  reapExpired(): Promise<ReapResult>;
  /** Stop timers and connections. Idempotent. */
  close(): Promise<void>;
}

/** Options common to both stores. */
export interface TopologyOptions {
  /** Default relay lease, ms (a relay heartbeats at about a third of this). Default 5000. */
  leaseMs?: number;
  /** An idle relay (no viewers, no children) detaches after this long, ms. Default 30000. */
  idleGraceMs?: number;
  /** Run reapExpired on a timer every this many ms; 0 = never (the caller runs it). Default 0. */
  reapIntervalMs?: number;
}
