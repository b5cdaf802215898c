/**
 * `_sync_meta`: the database's own facts, one key per row — the node id,
 * the last HLC issued or received, the schema hash of the last migration,
 * and what a role keeps besides (the server's change sequence).
 *
 * Its DDL and the core's writes to it are here. It is read where a read
 * must share a round trip with others: by the migration, in its one batch
 * (`migrate.ts`); the server's sequence counts in it inside SQL
 * (`server/sequence.ts`).
 *
 * @module
 */

import type { SqlStatement } from "./adapter.ts";
import type { HlcClock } from "./hlc.ts";
import { sql } from "./sql.ts";

/** The DDL of `_sync_meta`. */
export const META_TABLE_SQL: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS _sync_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)`,
];

/** What `_sync_meta` held when the database was opened. */
export interface StoredMeta {
  /** Node id, if one was stored. */
  readonly nodeId: string | undefined;
  /** Last HLC issued or received, if stored. */
  readonly hlc: string | undefined;
}

/** Sets one key. */
export function setMetaStatement(key: string, value: string): SqlStatement {
  return sql`INSERT INTO _sync_meta (key, value) VALUES (${key}, ${value})
    ON CONFLICT (key) DO UPDATE SET value = excluded.value`;
}

/** Persists the clock so a reopen continues after every version this database has seen. */
export function persistClockStatement(hlc: HlcClock): SqlStatement {
  return sql`INSERT INTO _sync_meta (key, value) VALUES ('hlc', ${hlc.last})
    ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE excluded.value > _sync_meta.value`;
}
