/**
 * declarative-sync: offline-first data sync for libSQL.
 *
 * Declare your tables once; get a local database whose every write is stamped
 * with a hybrid logical clock and recorded in an outbox, and a last-write-wins
 * merge for what the server sends back. This module is the runtime-agnostic
 * core: it runs on Deno, Bun, Node, in a browser or a Worker, against any
 * {@linkcode SqlAdapter} (the libSQL one is at `@declarative/sync/libsql`).
 *
 * @example
 * ```ts
 * import { createClient } from "@libsql/client";
 * import { defineSchema, integer, openDatabase, table, text } from "@declarative/sync";
 * import { libsqlAdapter } from "@declarative/sync/libsql";
 *
 * const schema = defineSchema({
 *   tasks: table({
 *     title: text().notNull(),
 *     done: integer().notNull().default(0),
 *   }, { withSystemColumns: true }),
 * });
 * const db = await openDatabase({
 *   adapter: libsqlAdapter(createClient({ url: "file:app.db" })),
 *   schema,
 * });
 * const task = await db.insert("tasks", { title: "Buy milk" });
 * await db.update("tasks", task.system_id, { done: 1 });
 * console.log(await db.getDirtyRows()); // one change, at its latest version
 * ```
 *
 * @module
 */

export type {
  BatchMode,
  SqlAdapter,
  SqlExecutor,
  SqlResult,
  SqlStatement,
  SqlValue,
} from "./src/adapter.ts";
export {
  type AllOptions,
  type BatchCompletion,
  type Database,
  type DatabaseChange,
  type DatabaseOperations,
  type DirtyRowsOptions,
  openDatabase,
  type OpenDatabaseOptions,
  type OutboxBatch,
  type OutboxBatchOptions,
  type ReadOptions,
  type TableName,
  type Transaction,
} from "./src/database.ts";
export { SyncError, type SyncErrorCode } from "./src/errors.ts";
export {
  compareHlc,
  createHlc,
  DEFAULT_MAX_DRIFT_MS,
  formatHlc,
  type Hlc,
  type HlcClock,
  type HlcOptions,
  type HlcParts,
  isHlc,
  MAX_COUNTER,
  parseHlc,
  randomNodeId,
} from "./src/hlc.ts";
export { uuidv7 } from "./src/ids.ts";
export type { WatchOptions } from "./src/watch.ts";
export {
  type FetchResult,
  type SendResult,
  ServerSyncManager,
  type ServerSyncManagerOptions,
  type SyncClock,
  type SyncManagerEventMap,
  type SyncProgress,
  type SyncReport,
  type SyncState,
  type SyncStatus,
} from "./src/sync_manager.ts";
export {
  PROTOCOL_VERSION,
  type PullRow,
  type PushChange,
  type PushResult,
  type RejectionCode,
} from "./src/protocol.ts";
export type { ApplyResult, ServerChanges, ServerRow, ServerTableChanges } from "./src/merge.ts";
export {
  type ColumnDescription,
  compareSchemas,
  describeSchema,
  type DescribeSchemaOptions,
  type IndexDescription,
  type SchemaDescription,
  type SchemaDifference,
  type TableDescription,
} from "./src/schema_description.ts";
export type { DirtyRow, DirtyRowAck } from "./src/outbox.ts";
export type { RejectedRow, Rejection } from "./src/rejected.ts";
export {
  type AnyColumn,
  blob,
  boolean,
  type Column,
  type ColumnKind,
  type Columns,
  defineSchema,
  type IndexDef,
  type InsertOf,
  integer,
  json,
  type LwwMode,
  type OptionalKeys,
  type PatchOf,
  real,
  type RequiredKeys,
  type RowOf,
  type Schema,
  type Simplify,
  type SystemColumns,
  table,
  type TableDef,
  type TableOptions,
  text,
  type ValueOf,
} from "./src/schema.ts";
