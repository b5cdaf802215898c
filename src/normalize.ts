/**
 * Incoming rows, validated and encoded for SQL: what the merge writes.
 *
 * Two doors lead here. A pull page reaches `applyServerChanges` as plain
 * objects (the wire shape, or the seed's flat shape), so
 * {@linkcode normalizeRow} checks everything about a row. A push reaches the
 * server already checked against the valibot schemas of `protocol_schemas.ts`
 * (shape, types, known columns), so {@linkcode encodeChange} applies only
 * the rules the schemas leave to each row, and a row that breaks one is
 * rejected alone: the row id rule, well-formed strings, JSON depth and size,
 * canonical base64, and versions no newer than the change's own (their form
 * is checked again, cheaply, for direct callers of the server's `push`).
 *
 * Blobs come as bytes from a pull and as base64 from a push; a push's go
 * straight to the hex text the UPSERT binds, without becoming bytes.
 *
 * @module
 */

import type { SqlValue } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import { isHlc } from "./hlc.ts";
import type { PushChange } from "./protocol.ts";
import { COLUMN_VERSIONS } from "./schema.ts";
import { encodeValue, type TableInfo } from "./table_info.ts";
import { describeValue, isRowId, ROW_ID_RULE } from "./values.ts";
import { base64ToHex } from "./wire.ts";

/** An incoming row, validated and encoded for SQL. */
export interface NormalizedRow {
  /** The row's `system_id`. */
  readonly id: string;
  /** HLC of the change. */
  readonly version: string;
  /** HLC of the row's creation. */
  readonly createdAt: string;
  /** 1 for a tombstone. */
  readonly deleted: 0 | 1;
  /**
   * Encoded values by column index (blobs as bytes or as hex text);
   * `undefined` where the change does not carry the column.
   */
  readonly values: (SqlValue | undefined)[];
  /** The indexes of the columns carried, as a key: rows with equal keys share a statement shape. */
  readonly signature: string;
  /** Column tables: version per present column and `is_deleted`. */
  readonly columnVersions: Record<string, string> | undefined;
}

// The parts of a row every shape has, before its values are encoded.
interface RowHead {
  readonly id: string;
  readonly version: string;
  readonly createdAt: string;
  readonly deleted: 0 | 1;
  readonly data: Readonly<Record<string, unknown>>;
  readonly columnVersions: unknown;
}

const FLAT_SYSTEM_KEYS: ReadonlySet<string> = new Set([
  "system_id",
  "system_version",
  "system_created_at",
  "is_deleted",
  COLUMN_VERSIONS,
]);

/**
 * Validates one incoming row (wire or flat shape) and encodes its values.
 *
 * @throws {SyncError} naming the table, row and column of the first problem.
 */
export function normalizeRow(info: TableInfo, raw: unknown): NormalizedRow {
  const head = readHead(info, raw);
  const values = encodeData(info, head.id, head.data);
  return finish(info, head, values);
}

/**
 * Encodes one change of a push the protocol schemas accepted, applying the
 * rules they leave to each row (see the module doc).
 *
 * @throws {SyncError} naming the rule the row breaks: the row alone is rejected.
 */
export function encodeChange(info: TableInfo, change: PushChange): NormalizedRow {
  if (!isRowId(change.id)) throw invalidId(info, change.id);
  // The door checked the versions' form; a direct caller of the server's
  // `push` did not pass one, and the check is cheap.
  if (!isHlc(change.version)) throw invalidVersion(info, change.id, change.version);
  const createdAt = change.createdAt ?? change.version;
  if (!isHlc(createdAt) || createdAt > change.version) throw invalidCreation(info, change.id);
  if (typeof change.deleted !== "boolean") {
    throw invalid(
      info,
      change.id,
      `deleted must be a boolean, got ${describeValue(change.deleted)}`,
    );
  }
  const head: RowHead = {
    id: change.id,
    version: change.version,
    createdAt,
    deleted: change.deleted ? 1 : 0,
    data: wireData(info, change.id, change.data),
    columnVersions: change.columnVersions,
  };
  return finish(info, head, encodeData(info, change.id, head.data, base64ToHex));
}

function finish(info: TableInfo, head: RowHead, values: (SqlValue | undefined)[]): NormalizedRow {
  let signature = "";
  for (let i = 0; i < values.length; i++) if (values[i] !== undefined) signature += `${i},`;
  const columnVersions = info.perColumn ? columnVersionsOf(info, head, values) : undefined;
  const { id, version, createdAt, deleted } = head;
  return { id, version, createdAt, deleted, values, signature, columnVersions };
}

// The system fields of a row in either shape, checked.
function readHead(info: TableInfo, raw: unknown): RowHead {
  if (typeof raw !== "object" || raw === null) {
    throw invalid(info, undefined, "a row must be an object");
  }
  const input = raw as Record<string, unknown>;
  const flat = !("id" in input) && "system_id" in input;
  const id = flat ? input.system_id : input.id;
  if (!isRowId(id)) throw invalidId(info, id);
  const version = flat ? input.system_version : input.version;
  if (!isHlc(version)) throw invalidVersion(info, id, version);
  const createdAt = (flat ? input.system_created_at : input.createdAt) ?? version;
  if (!isHlc(createdAt) || createdAt > version) throw invalidCreation(info, id);
  const deleted = flat ? input.is_deleted : input.deleted;
  if (deleted !== undefined && typeof deleted !== "boolean" && deleted !== 0 && deleted !== 1) {
    throw invalid(info, id, `deleted must be a boolean, got ${describeValue(deleted)}`);
  }
  return {
    id,
    version,
    createdAt,
    deleted: deleted === true || deleted === 1 ? 1 : 0,
    data: flat ? flatData(input) : wireData(info, id, input.data),
    columnVersions: input.columnVersions,
  };
}

function flatData(input: Record<string, unknown>): Record<string, unknown> {
  const data: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (!FLAT_SYSTEM_KEYS.has(key)) data[key] = value;
  }
  return data;
}

function wireData(info: TableInfo, id: string, given: unknown): Record<string, unknown> {
  if (given === undefined || given === null) return {};
  if (typeof given !== "object" || Array.isArray(given)) {
    throw invalid(info, id, "data must be an object");
  }
  return given as Record<string, unknown>;
}

// The values of `data` encoded by column index. `blob` converts a blob that
// arrives as text (base64 on a push).
function encodeData(
  info: TableInfo,
  id: string,
  data: Readonly<Record<string, unknown>>,
  blob?: (text: string) => string,
): (SqlValue | undefined)[] {
  const values = new Array<SqlValue | undefined>(info.columns.length);
  for (const name in data) {
    const value = data[name];
    const column = info.byName.get(name);
    if (column === undefined) throw unknownColumn(info, id, name);
    if (value === undefined) continue;
    const encoded = blob !== undefined && column.kind === "blob" && typeof value === "string"
      ? blob(value)
      : encodeValue(info.name, name, column.kind, value);
    if (encoded === null && column.notNull) {
      throw invalid(info, id, `column ${name} is notNull, got null`);
    }
    values[column.index] = encoded;
  }
  return values;
}

// Column tables: the version of each carried column and of the tombstone
// flag. Without explicit versions the change is a whole-row write, the
// tombstone flag included; with them, only what they list was written.
function columnVersionsOf(
  info: TableInfo,
  head: RowHead,
  values: readonly (SqlValue | undefined)[],
): Record<string, string> {
  const { id, version, columnVersions: given } = head;
  if (given !== undefined && (typeof given !== "object" || given === null)) {
    throw invalid(info, id, "columnVersions must be an object");
  }
  const explicit = (given ?? {}) as Record<string, unknown>;
  for (const [name, columnVersion] of Object.entries(explicit)) {
    const column = info.byName.get(name);
    if (name !== "is_deleted" && column === undefined) throw unknownColumn(info, id, name);
    if (column !== undefined && values[column.index] === undefined) continue; // carries nothing
    if (!isHlc(columnVersion) || columnVersion > version) {
      throw new SyncError(
        "invalid_version",
        `Invalid version ${
          describeValue(columnVersion)
        } of column ${name} in row ${id} of ${info.name}`,
        { details: { table: info.name, id, column: name } },
      );
    }
  }
  // Own properties only: a column may be named like an Object method.
  const explicitOf = (name: string) =>
    Object.hasOwn(explicit, name) ? explicit[name] as string : undefined;
  const versions: Record<string, string> = {};
  for (const column of info.columns) {
    if (values[column.index] !== undefined) {
      versions[column.name] = explicitOf(column.name) ?? version;
    }
  }
  if (given === undefined) versions.is_deleted = version;
  else if (explicitOf("is_deleted") !== undefined) versions.is_deleted = explicitOf("is_deleted")!;
  return versions;
}

function invalidId(info: TableInfo, id: unknown): SyncError {
  return new SyncError(
    "invalid_value",
    `Invalid row id ${describeValue(id)} for ${info.name}: expected ${ROW_ID_RULE}`,
    { details: { table: info.name } },
  );
}

function invalidVersion(info: TableInfo, id: string, version: unknown): SyncError {
  return new SyncError(
    "invalid_version",
    `Invalid version ${describeValue(version)} for row ${id} of ${info.name}`,
    { details: { table: info.name, id } },
  );
}

function invalidCreation(info: TableInfo, id: string): SyncError {
  return new SyncError(
    "invalid_version",
    `Invalid creation version for row ${id} of ${info.name}`,
    { details: { table: info.name, id } },
  );
}

function unknownColumn(info: TableInfo, id: string, name: string): SyncError {
  return new SyncError(
    "unknown_column",
    `Unknown column ${name} in table ${info.name} (row ${id})`,
    {
      details: { table: info.name, id, column: name },
    },
  );
}

function invalid(info: TableInfo, id: string | undefined, why: string): SyncError {
  return new SyncError(
    "invalid_change",
    `Invalid change for ${info.name}${id === undefined ? "" : ` row ${id}`}: ${why}`,
    { details: { table: info.name, id } },
  );
}
