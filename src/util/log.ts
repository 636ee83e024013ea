/**
 * Structured, namespaced logging: one JSON object a line on stderr. `CANOPY_LOG` picks the
 * level (debug, info, warn, error; default info, or warn under vitest), `CANOPY_DEBUG` a
 * comma-separated list of namespace prefixes that log at debug.
 */
export type Level = 'debug' | 'info' | 'warn' | 'error';
const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

function defaultLevel(): Level {
  const env = process.env.CANOPY_LOG as Level | undefined;
  if (env && env in order) return env;
  return process.env.VITEST ? 'warn' : 'info';
}

const threshold = order[defaultLevel()];
const debugPrefixes = (process.env.CANOPY_DEBUG ?? '').split(',').filter(Boolean);

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(sub: string): Logger;
}

export function logger(ns: string): Logger {
  const debugOn = debugPrefixes.some((p) => ns.startsWith(p));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>): void => {
    if (order[level] < threshold && !(level === 'debug' && debugOn)) return;
    const line: Record<string, unknown> = { t: new Date().toISOString(), level, ns, msg };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) line[k] = v instanceof Error ? v.message : v;
    }
    process.stderr.write(JSON.stringify(line) + '\n');
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (sub) => logger(`${ns}:${sub}`),
  };
}
