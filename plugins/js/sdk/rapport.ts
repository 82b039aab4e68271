// The Rapport SDK for plugins built with componentize-qjs: the few things every JS plugin needs
// that a component without WASI does not give it.
//
// - `console.*` writes to the contract's `log` (the plugin's execution trace). Without WASI,
//   QuickJS's own console would call the stubbed stdout and trap the whole call.
// - `plugin(...)` wraps the world's exports so that an uncaught exception becomes a
//   `plugin-error` the host records ("uncaught TypeError: ..."), instead of a trap that says
//   only "unreachable executed". Throw `PluginError` for an error you mean.
// - There is no clock: `Date.now()` throws a `PluginError` saying where time comes from
//   (`change.at`, `batch.now`); the stub would trap.
// - Random numbers repeat the same sequence on every call (the generator is seeded when the
//   component is built): fine for sampling that must be reproducible, useless for secrets.
import { log } from 'rapport:plugin/log@0.1.0';
import { get as getConfig } from 'rapport:plugin/config@0.1.0';

export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** An error the plugin means: its message (and field) reach the person who made the write. */
export class PluginError extends Error {
  readonly field: string | null;
  constructor(message: string, field?: string) {
    super(message);
    this.name = 'PluginError';
    this.field = field ?? null;
  }
}

function text(args: unknown[]): string {
  return args
    .map((a) => {
      if (typeof a === 'string') return a;
      if (a instanceof Error) return `${a.name}: ${a.message}`;
      try {
        return JSON.stringify(a) ?? String(a);
      } catch {
        return String(a);
      }
    })
    .join(' ');
}

interface Console {
  log(...args: unknown[]): void;
  info(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  trace(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
}
declare global {
  // eslint-disable-next-line no-var
  var console: Console;
}

const logger = (level: Level) => (...args: unknown[]) => log(level, text(args));
globalThis.console = {
  log: logger('info'),
  info: logger('info'),
  debug: logger('debug'),
  trace: logger('trace'),
  warn: logger('warn'),
  error: logger('error'),
};
Date.now = () => {
  throw new PluginError('a plugin has no clock: use the time the host passes in (`change.at`, `batch.now`)');
};

/** The organization's configuration for this plugin, parsed (`{}` when none was set). */
export function config<T extends object>(defaults: T): T {
  const value: unknown = JSON.parse(getConfig());
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new PluginError('the configuration must be a JSON object');
  }
  return { ...defaults, ...(value as Partial<T>) };
}

/** What the host records for an exception: the plugin's own error as is, anything else named. */
function asPluginError(e: unknown): { message: string; field: string | null } {
  if (e instanceof PluginError) return { message: e.message, field: e.field };
  const message = e instanceof Error ? `uncaught ${e.name}: ${e.message}` : `uncaught exception: ${text([e])}`;
  if (e instanceof Error && e.stack) log('error', `${message}\n${e.stack}`);
  return { message, field: null };
}

/** Wraps one export: exceptions become `plugin-error`s (see the module's comment). */
export function guard<A extends unknown[], R>(f: (...args: A) => R): (...args: A) => R {
  return (...args: A): R => {
    try {
      return f(...args);
    } catch (e) {
      throw asPluginError(e);
    }
  };
}
