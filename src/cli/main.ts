/**
 * `canopy <command>`: start (the whole mesh in one process), relay, signaling, token.
 * Each command lives in its own module and is imported only when used.
 */
import { parseFlags, parseDuration, UsageError } from './args.ts';
import { mintToken, ROLES, type Role } from '../auth/token.ts';

const USAGE = `usage: canopy <command> [flags]

commands:
  start       run signaling and relays on this machine (embedded topology unless --redis)
  signaling   run one signaling process (needs REDIS_URL for more than one process)
  relay       run one relay process (needs REDIS_URL)
  token       mint a token: canopy token --stream S --role publish|watch|relay|admin [--ttl 1h]
`;

/** `canopy <command> --help`. */
const HELP: Record<string, string> = {
  start: `usage: canopy start [flags]      (npm start -- [flags])

The whole mesh on this machine: signaling and relays in one process on the memory topology
(relay-0 is the origin), or with --redis signaling here and one \`canopy relay\` process per relay.
Prints the broadcast, watch and topology URLs with working tokens.

  --host ADDR          bind address for signaling and relays (default 127.0.0.1)
  --port N             signaling port (default 8080)
  --relays N           relays (default 3; with --redis one per core)
  --capacity N         downstream slots per relay (default 50)
  --fanout N           child relays per relay (default 2)
  --media-ports A-B    UDP port range for media, split between the relays
  --ice-server URL     STUN server for ICE (e.g. stun:stun.example.org:3478); default host candidates only
  --redis URL          Redis topology; relays run as separate processes
  --stream S           stream name in the printed URLs (default demo)
  --broker             signaling forwards WHIP/WHEP SDP itself instead of answering 307
  --web-root DIR       static pages to serve (default build/web)
`,
  relay: `usage: REDIS_URL=... CANOPY_SECRET=... canopy relay [flags]

One relay process: registers in the shared topology, heartbeats, follows pull/re-parent events.

  --id ID              relay id (default <hostname>-<pid>)
  --host ADDR          bind address for HTTP and media (default 127.0.0.1)
  --port N             HTTP port (default: ephemeral)
  --public-url URL     URL others reach this relay at, behind NAT or a proxy
  --region R           region for placement
  --capacity N         downstream slots (default 500)
  --fanout N           child relays (default 4)
  --media-ports A-B    UDP port range for media
  --ice-server URL     STUN server for ICE; default host candidates only
  --lease MS           heartbeat lease in ms (default 3000)
  --redis URL          instead of REDIS_URL
  --redis-prefix P     key prefix (default canopy; or CANOPY_REDIS_PREFIX)
`,
  signaling: `usage: REDIS_URL=... CANOPY_SECRET=... canopy signaling [flags]

One signaling process on the shared topology; run as many as you like behind a load balancer.

  --host ADDR              bind address (default 127.0.0.1)
  --port N                 port (default 8080)
  --broker                 forward WHIP/WHEP SDP instead of answering 307
  --web-root DIR           static pages to serve
  --joins-per-second N     WebSocket joins per socket per second (default 5)
  --frames-per-second N    WebSocket frames per socket per second (default 50)
  --sessions-per-ip N      open sessions per client IP (default 200)
  --max-frame BYTES        largest WebSocket frame (default 65536)
  --reap MS                how often this process looks for expired relay leases (default 500)
  --redis URL              instead of REDIS_URL
  --redis-prefix P         key prefix (default canopy; or CANOPY_REDIS_PREFIX)
`,
  token: `usage: CANOPY_SECRET=... canopy token --stream S --role publish|watch|relay|admin [--ttl 1h]
`,
};

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  async token(argv) {
    const { flags } = parseFlags(argv, { stream: 'string', role: 'string', ttl: 'string' });
    const secret = process.env.CANOPY_SECRET;
    if (!secret) throw new UsageError('CANOPY_SECRET is not set; tokens are signed with the mesh secret');
    const role = flags.role as Role;
    if (!ROLES.includes(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
    const stream = typeof flags.stream === 'string' ? flags.stream : role === 'admin' || role === 'relay' ? '*' : '';
    if (!stream) throw new UsageError('--stream is required');
    const ttl = typeof flags.ttl === 'string' ? parseDuration(flags.ttl) / 1000 : 3600;
    process.stdout.write(mintToken(secret, stream, role, Math.floor(ttl), Date.now()) + '\n');
    return 0;
  },
};

/** Commands implemented in their own modules, loaded lazily. */
const lazy: Record<string, string> = {
  start: './start.ts',
  relay: './relay.ts',
  signaling: './signaling.ts',
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  if (HELP[name] && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(HELP[name]!);
    return 0;
  }
  try {
    let cmd: Command | undefined = commands[name];
    if (!cmd && lazy[name]) {
      let mod: { run?: Command };
      try {
        mod = (await import(lazy[name]!)) as { run?: Command };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((e as Error).message).includes(lazy[name]!.slice(2))) {
          process.stderr.write(`canopy ${name}: not built yet in this version (see README status table)\n`);
          return 1;
        }
        throw e;
      }
      cmd = mod.run;
    }
    if (!cmd) throw new UsageError(`unknown command ${name}\n\n${USAGE}`);
    return await cmd(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`canopy ${name}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
