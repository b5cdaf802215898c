/** Shared test fixtures: real libSQL databases, in memory or in a temporary file. */

import { createClient } from "@libsql/client";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { libsqlAdapter } from "../src/libsql.ts";
import type { SqlAdapter } from "../src/adapter.ts";
import { type Database, openDatabase, type OpenDatabaseOptions } from "../src/database.ts";
import type { TableDef } from "../src/schema.ts";

/** A temporary directory removed by the returned `cleanup`. */
export function tempDir(): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), "declarative-sync-"));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** A libSQL adapter over `:memory:` or a `file:` URL. */
export function memoryAdapter(): SqlAdapter {
  return libsqlAdapter(createClient({ url: ":memory:" }));
}

/** A libSQL adapter over a file. */
export function fileAdapter(path: string): SqlAdapter {
  return libsqlAdapter(createClient({ url: `file:${path}` }));
}

/** Opens a database on a fresh `:memory:` libSQL. */
export function openMemory<T extends Record<string, TableDef>>(
  options: Omit<OpenDatabaseOptions<T>, "adapter">,
): Promise<Database<T>> {
  return openDatabase({ ...options, adapter: memoryAdapter() });
}

/** A wall clock under the test's control. */
export function manualClock(
  start = 1_767_225_600_000,
): { now: () => number; set(ms: number): void; advance(ms: number): void } {
  let ms = start;
  return {
    now: () => ms,
    set: (value) => {
      ms = value;
    },
    advance: (delta) => {
      ms += delta;
    },
  };
}

/**
 * `target` as it is, except that `name` runs through `wrap`, which gets the
 * original method (bound) and returns its replacement: a spy on a real object.
 */
export function withMethod<T extends object, K extends keyof T>(
  target: T,
  name: K,
  wrap: (original: T[K]) => T[K],
): T {
  const original = (target[name] as (...args: unknown[]) => unknown).bind(target) as T[K];
  const replacement = wrap(original);
  return new Proxy(target, {
    get(object, property) {
      if (property === name) return replacement;
      const value = Reflect.get(object, property, object);
      return typeof value === "function" ? value.bind(object) : value;
    },
  });
}
