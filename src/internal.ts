/**
 * The core's surface for the sync server: the one file `server/` imports
 * the core through (as libsql-client-ts gives its shared internals one
 * surface, `@libsql/core/util`). What is here is internal — not part of the
 * public API and free to change with the server — but it is all there is:
 * a server module that needs more of the core adds it here, where the seam
 * stays visible.
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
} from "./adapter.ts";
export { SyncError, type SyncErrorCode } from "./errors.ts";
export { DEFAULT_MAX_DRIFT_MS, parseHlc } from "./hlc.ts";
export { dataJsonSql, jsonBooleanSql } from "./json_rows.ts";
export { libsqlAdapter } from "./libsql.ts";
export { groupByColumns, upsertStatement } from "./merge.ts";
export { migrate, type MigrationExtension } from "./migrate.ts";
export { encodeChange, type NormalizedRow } from "./normalize.ts";
export * from "./protocol.ts";
export * from "./protocol_schemas.ts";
export { COLUMN_VERSIONS, type Schema, type TableDef } from "./schema.ts";
export { type SchemaResponse, schemaResponse } from "./schema_description.ts";
export { empty, id, join, raw, Sql, sql, type SqlPart } from "./sql.ts";
export { type ColumnInfo, describeTables, type ExtraColumn, type TableInfo } from "./table_info.ts";
export { describeValue } from "./values.ts";
export { errorFromResponse, isWireErrorCode } from "./wire_errors.ts";
export { blobColumnsOf, hexToBase64 } from "./wire.ts";
