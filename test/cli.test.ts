/**
 * The `canopy` command's argument handling: per-command help, flag errors, ICE server parsing.
 * (Starting meshes is covered by the mesh tests; this stays in process except for one spawn.)
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseDuration, parseFlags, UsageError } from '../src/cli/args.ts';
import { parseIceServers, parseInteger, parsePortRange } from '../src/cli/relay.ts';

const BIN = fileURLToPath(new URL('../bin/canopy.mjs', import.meta.url));

function canopy(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, CANOPY_SECRET: '' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('canopy flags', () => {
  it('parses --name value, --name=value and booleans, and refuses unknown flags', () => {
    const { flags, rest } = parseFlags(['--port', '9000', '--host=0.0.0.0', '--broker', 'x'], { port: 'string', host: 'string', broker: 'boolean' });
    expect(flags).toEqual({ port: '9000', host: '0.0.0.0', broker: true });
    expect(rest).toEqual(['x']);
    expect(() => parseFlags(['--nope'], {})).toThrow(/unknown flag --nope/);
    expect(() => parseFlags(['--port'], { port: 'string' })).toThrow(/--port needs a value/);
  });

  it('parses durations, integers and port ranges with clear errors', () => {
    expect(parseDuration('1500ms')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(() => parseDuration('soon')).toThrow(UsageError);
    expect(parseInteger('7', '--relays', 1, 64, 3)).toBe(7);
    expect(parseInteger(undefined, '--relays', 1, 64, 3)).toBe(3);
    expect(() => parseInteger('0', '--relays', 1, 64, 3)).toThrow(/--relays must be an integer 1..64/);
    expect(parsePortRange('40000-40999')).toEqual([40000, 40999]);
    expect(() => parsePortRange('80-90')).toThrow(/1024 <= A <= B/);
  });

  it('parses --ice-server lists and refuses anything but stun:/turn: URLs', () => {
    expect(parseIceServers(undefined)).toEqual([]);
    expect(parseIceServers('stun:stun.example.org:3478, stun:10.0.0.1')).toEqual([{ urls: 'stun:stun.example.org:3478' }, { urls: 'stun:10.0.0.1' }]);
    expect(() => parseIceServers('http://x')).toThrow(/--ice-server must be stun:HOST/);
    expect(() => parseIceServers(true)).toThrow(/needs a URL/);
  });
});

describe('canopy command', () => {
  it('prints per-command help, and a usage error (exit 2) for a bad flag', () => {
    const help = canopy('start', '--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--relays N/);
    expect(help.out).toMatch(/--ice-server URL/);
    const bad = canopy('relay', '--bogus');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/canopy relay: unknown flag --bogus/);
    const noSecret = canopy('token', '--stream', 's', '--role', 'watch');
    expect(noSecret.code).toBe(2);
    expect(noSecret.err).toMatch(/CANOPY_SECRET is not set/);
  });
});
