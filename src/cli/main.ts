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
