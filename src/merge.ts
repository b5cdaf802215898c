/**
 * Last-write-wins merge of server changes into the local database
 * (`applyServerChanges`).
 *
 * Every incoming row becomes part of a multi-row UPSERT (`json_rows.ts`) whose conflict clause
 * carries the whole decision, so the merge needs no read-then-write round trip
 * and costs well under one statement per row — the same code runs against a
 * remote primary at the edge, where each round trip costs:
 *
 * - `lww: "row"`: an unknown row is inserted; a known row is replaced only when
 *   the incoming `system_version` is greater. A newer local change (pending in
 *   the outbox or not) is therefore never overwritten; an older pending change
 *   that lost is dropped from the outbox in the same transaction.
 * - `lww: "column"`: each column (and the tombstone flag `is_deleted`) carries
 *   its own version in `system_column_versions`; each is taken only where the
 *   incoming column version is greater, so concurrent edits of different
 *   columns both survive. The row's `system_version` is the greatest column
 *   version.
 *
 * Everything is validated before anything is written: an unknown table or
 * column, a malformed version or a value of the wrong type raises a
 * `SyncError` and applies nothing from that call. The clock then `receive`s the
 * newest version (refusing one beyond `maxDrift`). Rows, cursors and the clock
 * are written in one transaction, in bounded chunks, so memory stays bounded
 * for large pages.
 *
 * Equal versions are normally the same write (a version embeds its node id),
 * so applying a change twice, or changes in any order, converges. A replica
 * restored from an older copy of its file can issue a version again for
 * other values; the merge then orders the two states by their values, the
 * same way everywhere, so that case converges too.
 *
 * @module
 */

import type { SqlExecutor, SqlStatement, SqlValue } from "./adapter.ts";
import { SyncError } from "./errors.ts";
import { type HlcClock, isHlc } from "./hlc.ts";
import { supersededStatement } from "./outbox.ts";
import { COLUMN_VERSIONS } from "./schema.ts";
import { jsonSelectList, toJsonValue } from "./json_rows.ts";
import {
  type ColumnInfo,
  encodeValue,
  quoteId,
  SEQUENCE_COLUMN,
  type TableInfo,
} from "./table_info.ts";
import { persistClockStatement } from "./writes.ts";
import { describeValue, isRowId, ROW_ID_RULE } from "./values.ts";

/**
 * One row as the server sends it. The flat shape of the declarative_sqlite seed
 * (the row's columns next to `system_id`, `system_version`, `is_deleted`) is
 * accepted as well.
 */
export interface ServerRow {
  /** The row's `system_id`. */
  readonly id: string;
  /** HLC of the change. */
  readonly version: string;
  /** True (or 1) for a tombstone. */
  readonly deleted?: boolean | 0 | 1;
  /** Values of the declared columns; columns left out keep their stored value. */
  readonly data?: Record<string, unknown>;
  /** Per-column versions (`lww: "column"`); defaults to `version` for every column in `data`. */
  readonly columnVersions?: Record<string, string>;
  /** HLC of the row's creation; defaults to `version`. */
  readonly createdAt?: string;
}

/** The changes of one table in a pull response. */
export interface ServerTableChanges {
  /** The changed rows. */
  readonly rows: readonly (ServerRow | Record<string, unknown>)[];
  /** The server's cursor after these rows; stored and handed back on the next pull. */
  readonly cursor?: unknown;
  /** True when the server has more rows for this table. */
  readonly hasMore?: boolean;
}

/** The `changes` object of a pull response: per table, rows and cursor. */
export type ServerChanges = Readonly<Record<string, ServerTableChanges>>;

/** What `applyServerChanges` did. */
export interface ApplyResult {
  /** Rows received, per table. */
  readonly received: Readonly<Record<string, number>>;
  /** The newest version seen, if any row was received. */
  readonly newestVersion: string | undefined;
}

/** Rows per UPSERT statement (bound as one JSON argument). */
const ROWS_PER_STATEMENT = 1_000;
/** Statements per round trip inside the apply transaction. */
const STATEMENTS_PER_BATCH = 4;

/** An incoming row, validated and encoded for SQL. */
export interface NormalizedRow {
  readonly id: string;
  readonly version: string;
  readonly createdAt: string;
  readonly deleted: 0 | 1;
  /** Encoded values by column index; `undefined` where the change does not carry the column. */
  readonly values: (SqlValue | undefined)[];
  /** The indexes of the columns carried, as a key: rows with equal keys share a statement shape. */
  readonly signature: string;
  /** Column tables: version per present column and `is_deleted`. */
  readonly columnVersions: Record<string, string> | undefined;
}

interface TablePlan {
  readonly info: TableInfo;
  readonly rows: NormalizedRow[];
  readonly cursor: unknown;
  readonly hasCursor: boolean;
}

/**
 * Validates `changes` completely and returns the per-table plans and the newest version.
 *
 * @throws {SyncError} `unknown_table`, `unknown_column`, `invalid_version`,
 * `invalid_change` or `invalid_value`, naming the table, row and column.
 */
export function planServerChanges(
  changes: ServerChanges,
  tables: ReadonlyMap<string, TableInfo>,
): { plans: TablePlan[]; newest: string | undefined } {
  if (typeof changes !== "object" || changes === null || Array.isArray(changes)) {
    throw new SyncError("invalid_change", "Server changes must be an object keyed by table name");
  }
  const plans: TablePlan[] = [];
  let newest: string | undefined;
  for (const [table, tableChanges] of Object.entries(changes)) {
    const info = tables.get(table);
    if (info === undefined || !info.synced) {
      throw new SyncError("unknown_table", `Unknown synced table ${table} in server changes`, {
        details: { table },
      });
    }
    if (typeof tableChanges !== "object" || tableChanges === null) {
      throw new SyncError("invalid_change", `Changes of table ${table} must be an object`, {
        details: { table },
      });
    }
    const input = tableChanges.rows ?? [];
    if (!Array.isArray(input)) {
      throw new SyncError("invalid_change", `rows of table ${table} must be an array`, {
        details: { table },
      });
    }
    const rows = new Array<NormalizedRow>(input.length);
    for (let i = 0; i < input.length; i++) {
      const row = normalizeRow(info, input[i]);
      if (newest === undefined || row.version > newest) newest = row.version;
      rows[i] = row;
    }
    plans.push({
      info,
      rows,
      cursor: tableChanges.cursor ?? null,
      hasCursor: "cursor" in tableChanges && tableChanges.cursor !== undefined,
    });
  }
  return { plans, newest };
}

/**
 * Writes validated plans inside the caller's transaction: rows, superseded
 * outbox entries, cursors and the clock.
 */
export async function writeServerChanges(
  tx: SqlExecutor,
  plans: readonly TablePlan[],
  hlc: HlcClock,
): Promise<void> {
  let pending: SqlStatement[] = [];
  const flush = async () => {
    if (pending.length > 0) await tx.batch(pending);
    pending = [];
  };
  for (const plan of plans) {
    for (const group of groupByColumns(plan.info, plan.rows)) {
      for (let start = 0; start < group.rows.length; start += ROWS_PER_STATEMENT) {
        pending.push(
          upsertStatement(
            plan.info,
            group.columns,
            group.rows.slice(start, start + ROWS_PER_STATEMENT),
          ),
        );
        if (pending.length >= STATEMENTS_PER_BATCH) await flush();
      }
    }
    if (plan.rows.length > 0 && !plan.info.perColumn) pending.push(supersededStatement(plan.info));
    if (plan.hasCursor) {
      pending.push({
        sql: `INSERT INTO _sync_cursors (table_name, cursor) VALUES (?, ?) ` +
          `ON CONFLICT (table_name) DO UPDATE SET cursor = excluded.cursor`,
        args: [plan.info.name, JSON.stringify(plan.cursor)],
      });
    }
  }
  pending.push(persistClockStatement(hlc));
  await flush();
}

/**
 * Validates one incoming row (wire or flat shape) and encodes its values.
 *
 * @throws {SyncError} naming the table, row and column of the first problem.
 */
export function normalizeRow(info: TableInfo, raw: unknown): NormalizedRow {
  if (typeof raw !== "object" || raw === null) {
    throw invalid(info, undefined, "a row must be an object");
  }
  const input = raw as Record<string, unknown>;
  const flat = !("id" in input) && "system_id" in input;
  const id = flat ? input.system_id : input.id;
  if (!isRowId(id)) {
    throw new SyncError(
      "invalid_value",
      `Invalid row id ${describeValue(id)} for ${info.name}: expected ${ROW_ID_RULE}`,
      { details: { table: info.name } },
    );
  }
  const version = flat ? input.system_version : input.version;
  if (!isHlc(version)) {
    throw new SyncError(
      "invalid_version",
      `Invalid version ${describeValue(version)} for row ${id} of ${info.name}`,
      { details: { table: info.name, id } },
    );
  }
  const createdAt = (flat ? input.system_created_at : input.createdAt) ?? version;
  if (!isHlc(createdAt) || createdAt > version) {
    throw new SyncError(
      "invalid_version",
      `Invalid creation version for row ${id} of ${info.name}`,
      {
        details: { table: info.name, id },
      },
    );
  }
  const deletedRaw = flat ? input.is_deleted : input.deleted;
  if (
    deletedRaw !== undefined && typeof deletedRaw !== "boolean" && deletedRaw !== 0 &&
    deletedRaw !== 1
  ) {
    throw invalid(info, id, `deleted must be a boolean, got ${describeValue(deletedRaw)}`);
  }
  const deleted = deletedRaw === true || deletedRaw === 1 ? 1 : 0;

  let data: Record<string, unknown>;
  if (flat) {
    data = {};
    for (const [key, value] of Object.entries(input)) {
      if (
        key === "system_id" || key === "system_version" || key === "system_created_at" ||
        key === "is_deleted" || key === COLUMN_VERSIONS
      ) continue;
      data[key] = value;
    }
  } else {
    const given = input.data ?? {};
    if (typeof given !== "object" || given === null || Array.isArray(given)) {
      throw invalid(info, id, "data must be an object");
    }
    data = given as Record<string, unknown>;
  }

  const values = new Array<SqlValue | undefined>(info.columns.length);
  for (const name in data) {
    const value = data[name];
    const column = info.byName.get(name);
    if (column === undefined) {
      throw new SyncError(
        "unknown_column",
        `Unknown column ${name} in table ${info.name} (row ${id})`,
        {
          details: { table: info.name, id, column: name },
        },
      );
    }
    if (value === undefined) continue;
    const encoded = encodeValue(info.name, name, column.kind, value);
    if (encoded === null && column.notNull) {
      throw invalid(info, id, `column ${name} is notNull, got null`);
    }
    values[column.index] = encoded;
  }
  let signature = "";
  for (let i = 0; i < values.length; i++) if (values[i] !== undefined) signature += `${i},`;

  let columnVersions: Record<string, string> | undefined;
  if (info.perColumn) {
    columnVersions = {};
    const given = input.columnVersions;
    if (given !== undefined && (typeof given !== "object" || given === null)) {
      throw invalid(info, id, "columnVersions must be an object");
    }
    const explicit = (given ?? {}) as Record<string, unknown>;
    for (const [name, columnVersion] of Object.entries(explicit)) {
      const column = info.byName.get(name);
      if (name !== "is_deleted" && (column === undefined || values[column.index] === undefined)) {
        if (column !== undefined) continue; // a version without a value carries nothing
        throw new SyncError(
          "unknown_column",
          `Unknown column ${name} in table ${info.name} (row ${id})`,
          {
            details: { table: info.name, id, column: name },
          },
        );
      }
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
    for (const column of info.columns) {
      if (values[column.index] !== undefined) {
        columnVersions[column.name] = explicitOf(column.name) ?? version;
      }
    }
    // Without explicit versions the change is a whole-row write, the tombstone
    // flag included; with them, only what they list was written.
    if (given === undefined) columnVersions.is_deleted = version;
    else if (explicitOf("is_deleted") !== undefined) {
      columnVersions.is_deleted = explicitOf("is_deleted")!;
    }
  }
  return { id, version, createdAt, deleted, values, signature, columnVersions };
}

function invalid(info: TableInfo, id: string | undefined, why: string): SyncError {
  return new SyncError(
    "invalid_change",
    `Invalid change for ${info.name}${id === undefined ? "" : ` row ${id}`}: ${why}`,
    { details: { table: info.name, id } },
  );
}

/** Groups rows by the set of columns they carry: each group shares one statement shape. */
export function groupByColumns(
  info: TableInfo,
  rows: readonly NormalizedRow[],
): { columns: ColumnInfo[]; rows: NormalizedRow[] }[] {
  const groups = new Map<string, { columns: ColumnInfo[]; rows: NormalizedRow[] }>();
  for (const row of rows) {
    const group = groups.get(row.signature);
    if (group !== undefined) {
      group.rows.push(row);
      continue;
    }
    const columns = info.columns.filter((c) => row.values[c.index] !== undefined);
    groups.set(row.signature, { columns, rows: [row] });
  }
  return [...groups.values()];
}

/** Server-side options of {@linkcode upsertStatement}. */
export interface UpsertOptions {
  /** Each row's change sequence number (the server): the rows applied hold theirs afterwards. */
  readonly sequence?: readonly number[];
  /**
   * The table's scope column must already hold the incoming row's value for
   * a stored row to be changed: a write never crosses scopes, whatever
   * checks ran before it.
   */
  readonly scoped?: boolean;
}

/**
 * The UPSERT of `rows`, all carrying `columns`, as one statement. With
 * `sequence` (the server), each row also gets its change sequence number, so
 * the rows it applied are the ones holding those numbers afterwards.
 *
 * The creation version follows the winning change: the newer version brings
 * its own `system_created_at`, so every replica ends with the same one.
 */
export function upsertStatement(
  info: TableInfo,
  columns: readonly ColumnInfo[],
  rows: readonly NormalizedRow[],
  { sequence, scoped = false }: UpsertOptions = {},
): SqlStatement {
  const elements: unknown[] = new Array(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r]!;
    const element: unknown[] = [row.id, row.version, row.createdAt, row.deleted];
    if (info.perColumn) element.push(JSON.stringify(row.columnVersions));
    if (sequence !== undefined) element.push(sequence[r]!);
    for (const column of columns) {
      element.push(toJsonValue(row.values[column.index]!, column.kind));
    }
    elements[r] = element;
  }
  return {
    sql: upsertSql(info, columns, sequence !== undefined, scoped && info.def.scope !== undefined),
    args: [JSON.stringify(elements)],
  };
}

const upsertSqlCache = new WeakMap<TableInfo, Map<string, string>>();

// A row value ordering the given columns of `row` totally, NULL first: two
// states written under one version (a replica restored from an older copy of
// its file can issue a version again) are then ordered by their values, so
// every replica keeps the same one. (SQLite's row-value comparison is
// unknown when an element is NULL; the IS NULL flag comes first instead.)
function orderKey(row: string, columns: readonly string[]): string {
  return `(${columns.map((c) => `${row}.${c} IS NOT NULL, coalesce(${row}.${c}, 0)`).join(", ")})`;
}

// The UPSERT of rows carrying `carried`, cached per table, column set and role.
function upsertSql(
  info: TableInfo,
  carried: readonly ColumnInfo[],
  sequenced: boolean,
  scoped: boolean,
): string {
  const columns = carried.map((c) => c.name);
  let cache = upsertSqlCache.get(info);
  if (cache === undefined) upsertSqlCache.set(info, cache = new Map());
  const key = `${sequenced}:${scoped}:${columns.join(",")}`;
  const cached = cache.get(key);
  if (cached !== undefined) return cached;

  const quoted = columns.map(quoteId);
  const t = info.quoted;
  const system = [`system_id`, `system_version`, `system_created_at`, `is_deleted`];
  if (info.perColumn) system.push(quoteId(COLUMN_VERSIONS));
  if (sequenced) system.push(SEQUENCE_COLUMN);
  const select = jsonSelectList([...system.map(() => undefined), ...carried.map((c) => c.kind)]);
  const head = `INSERT INTO ${t} (${[...system, ...quoted].join(", ")}) ` +
    `SELECT ${select} FROM json_each(?) WHERE true ON CONFLICT (system_id) DO UPDATE SET `;
  const sameScope = scoped
    ? ` AND ${t}.${quoteId(info.def.scope!)} IS excluded.${quoteId(info.def.scope!)}`
    : "";
  let sql: string;
  if (!info.perColumn) {
    const sets = [
      `system_version = excluded.system_version`,
      `system_created_at = excluded.system_created_at`,
      `is_deleted = excluded.is_deleted`,
    ].concat(quoted.map((c) => `${c} = excluded.${c}`));
    if (sequenced) sets.push(`${SEQUENCE_COLUMN} = excluded.${SEQUENCE_COLUMN}`);
    const state = (row: string) => orderKey(row, [`system_created_at`, `is_deleted`, ...quoted]);
    sql = head + `${sets.join(", ")} WHERE (excluded.system_version > ${t}.system_version OR ` +
      `(excluded.system_version = ${t}.system_version AND ${state("excluded")} > ${
        state(t)
      }))${sameScope}`;
  } else {
    const cv = quoteId(COLUMN_VERSIONS);
    const mine = (name: string) => `coalesce(${t}.${cv} ->> '$.${name}', '')`;
    const theirs = (name: string) => `(excluded.${cv} ->> '$.${name}')`;
    const newer = (name: string) =>
      `(${theirs(name)} > ${mine(name)} OR (${theirs(name)} = ${mine(name)} AND ` +
      `${orderKey("excluded", [quoteId(name)])} > ${orderKey(t, [quoteId(name)])}))`;
    const tracked = [...columns, "is_deleted"];
    const sets = tracked.map((name) => {
      const c = quoteId(name);
      return `${c} = CASE WHEN ${newer(name)} THEN excluded.${c} ELSE ${t}.${c} END`;
    });
    // A column the change does not carry has no incoming version: keep ours.
    // (NULL where neither side has one: json_patch then adds no key.)
    const merged = tracked
      .map((name) => `'${name}', nullif(max(${mine(name)}, coalesce(${theirs(name)}, '')), '')`)
      .join(", ");
    sets.push(`${cv} = json_patch(${t}.${cv}, json_object(${merged}))`);
    // SET expressions read the row as it was: the creation version comes with
    // the newer row version, which is the greatest column version.
    sets.push(
      `system_created_at = CASE WHEN excluded.system_version > ${t}.system_version OR ` +
        `(excluded.system_version = ${t}.system_version AND ` +
        `excluded.system_created_at > ${t}.system_created_at) ` +
        `THEN excluded.system_created_at ELSE ${t}.system_created_at END`,
    );
    sets.push(`system_version = max(${t}.system_version, excluded.system_version)`);
    if (sequenced) sets.push(`${SEQUENCE_COLUMN} = excluded.${SEQUENCE_COLUMN}`);
    sql = head + `${sets.join(", ")} WHERE (${tracked.map(newer).join(" OR ")})${sameScope}`;
  }
  cache.set(key, sql);
  return sql;
}
