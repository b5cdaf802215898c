/**
 * A pull on the server: per requested table, one page of the rows whose
 * sequence number (`sequence.ts`) is greater than the table's cursor, in
 * sequence order, as the JSON text of the response's `changes`.
 *
 * A page is one query after one for the newest number. SQLite writes the
 * page as JSON text in one value: no per-row work in JavaScript, and the
 * text goes into the response as it is (only blobs, which SQLite writes as
 * hex, are turned into the wire's base64 on the way). A page holds at most
 * `limit` rows and ends early, with `hasMore`, at the row that fills the
 * response's byte budget — found from the stored sizes of the values,
 * without reading them — yet carries at least one row while budget remains.
 * Tables share one budget, in request order: a table the budget no longer
 * reaches answers `hasMore` with no rows and its cursor unchanged.
 *
 * The newest number is read first: numbers are assigned under the write
 * lock, so every row up to it is committed and no page boundary can skip
 * or repeat one, whatever the clients' clocks. A scoped table shows a
 * principal only its rows (`scope.ts`). Rows the asker holds as they are
 * (the state its own push wrote: `PullRequest.held`) are left out, while
 * the cursor moves past them; a column table's row may merge other
 * replicas' columns into a push, so those are always sent.
 *
 * @example
 * ```ts
 * const changes = await pullJson(adapter, tables, { tasks: null }, 1_000, { principal });
 * // '{"tasks":{"rows":[…],"cursor":"42","hasMore":false}}'
 * ```
 *
 * @module
 */

import {
  blobColumnsOf,
  COLUMN_VERSIONS,
  type ColumnInfo,
  CURSOR_PATTERN,
  dataJsonSql,
  describeValue,
  empty,
  type HeldRange,
  hexToBase64,
  id,
  jsonBooleanSql,
  type PullRow,
  raw,
  type Sql,
  sql,
  type SqlExecutor,
  SyncError,
  type TableInfo,
} from "../src/internal.ts";
import { type Principal, scopeFilter } from "./scope.ts";
import { seq } from "./sequence.ts";

/** Options of a pull. */
export interface PullOptions {
  /** Who is asking: scoped tables return only this principal's rows. */
  readonly principal?: Principal;
  /**
   * About how many bytes of rows one response may carry (default 4 MiB): a
   * page ends early, with `hasMore`, once its rows reach it, yet carries at
   * least one row.
   */
  readonly maxBytes?: number;
  /**
   * Ranges of the asker's own push responses (`PullRequest.held`): rows of
   * row-LWW tables still holding such a number are left out of its pages.
   */
  readonly held?: readonly HeldRange[];
}

/** Default byte budget of a pull response (`PullOptions.maxBytes`). */
export const DEFAULT_MAX_PULL_BYTES = 4 * 1024 * 1024;

// What a pulled row costs besides its values: keys, versions, flags.
const ROW_OVERHEAD_BYTES = 160;

/**
 * The pages of `cursors`' tables, as the JSON text of `PullResponse.changes`.
 *
 * @throws {RangeError} when `limit` is not a positive integer.
 * @throws {SyncError} `unknown_table` for a table that is not synced,
 * `invalid_change` for a cursor that did not come from this server.
 */
export async function pullJson(
  executor: SqlExecutor,
  tables: ReadonlyMap<string, TableInfo>,
  cursors: Readonly<Record<string, string | null>>,
  limit: number,
  options: PullOptions = {},
): Promise<string> {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`Pull limit must be a positive integer, got ${limit}`);
  }
  const parts: string[] = [];
  let budget = options.maxBytes ?? DEFAULT_MAX_PULL_BYTES;
  for (const [table, cursor] of Object.entries(cursors)) {
    const info = tables.get(table);
    if (info === undefined || !info.synced) {
      throw new SyncError("unknown_table", `Unknown synced table ${table}`, {
        details: { table },
      });
    }
    const { principal, held } = options;
    const page = await pullTable(executor, info, cursor, { limit, budget, principal, held });
    budget -= page.rowsJson.length;
    parts.push(
      `${JSON.stringify(table)}:{"rows":${page.rowsJson},"cursor":${
        JSON.stringify(page.cursor)
      },"hasMore":${page.hasMore}}`,
    );
  }
  return `{${parts.join(",")}}`;
}

// One table's page, as JSON text.
interface PageJson {
  readonly rowsJson: string;
  readonly cursor: string;
  readonly hasMore: boolean;
}

// What one table's page is cut to.
interface PageBounds {
  readonly limit: number;
  // The bytes the response may still carry.
  readonly budget: number;
  readonly principal?: Principal;
  readonly held?: readonly HeldRange[];
}

// One table's page: the rows after `cursor`, at most `limit` of them and
// about `budget` bytes of them, yet at least one whenever any is left and
// budget remains.
async function pullTable(
  executor: SqlExecutor,
  info: TableInfo,
  cursor: string | null,
  { limit, budget, principal, held }: PageBounds,
): Promise<PageJson> {
  const after = cursorNumber(info, cursor);
  const scope = scopeFilter(info, principal);
  const newest = await newestSequence(executor, info, scope);
  if (newest === undefined || newest <= after) {
    return { rowsJson: "[]", cursor: cursor ?? "0", hasMore: false };
  }
  if (budget <= 0) return { rowsJson: "[]", cursor: cursor ?? "0", hasMore: true };

  const own = ownRowsFilter(info, held);
  // The rows after `from`, up to the newest, that the asker may see and lacks.
  const rowsAfter = (from: number) => sql`${seq} > ${from} AND ${seq} <= ${newest}${scope}${own}`;
  const { rows: [page] } = await executor.execute(
    pageSql(info, rowsAfter(after), { limit, budget, newest }),
  );
  const last = Number(page?.last ?? newest);
  // `newest` is a row in scope: a page that stopped before it leaves more,
  // unless all that is left is the asker's own.
  let hasMore = last < newest;
  if (hasMore && own !== empty) {
    const { rows: [more] } = await executor.execute(
      sql`SELECT EXISTS (SELECT 1 FROM ${id(info.name)} WHERE ${rowsAfter(last)}) AS more`,
    );
    hasMore = Number(more?.more) === 1;
  }
  return {
    rowsJson: blobsToBase64(info, String(page?.rows ?? "[]")),
    cursor: hasMore ? String(last) : String(newest),
    hasMore,
  };
}

// The sequence number a cursor stands for (a `null` cursor: before the first).
function cursorNumber(info: TableInfo, cursor: string | null): number {
  if (cursor === null) return 0;
  if (!CURSOR_PATTERN.test(cursor)) {
    throw new SyncError(
      "invalid_change",
      `Invalid cursor ${describeValue(cursor)} for ${info.name}`,
      { details: { table: info.name } },
    );
  }
  return Number(cursor);
}

// The condition leaving out the rows the asker holds as they are: those
// still holding a number of its `held` ranges. Never on a column table,
// whose row may have merged other replicas' columns into the asker's push.
function ownRowsFilter(info: TableInfo, held: readonly HeldRange[] | undefined): Sql {
  if (held === undefined || held.length === 0 || info.perColumn) return empty;
  return sql` AND NOT EXISTS (SELECT 1 FROM json_each(${JSON.stringify(held)}) h
    WHERE ${seq} BETWEEN h.value ->> 0 AND h.value ->> 1)`;
}

// The newest sequence number of the rows in `scope`, if any.
async function newestSequence(
  executor: SqlExecutor,
  info: TableInfo,
  scope: Sql,
): Promise<number | undefined> {
  const { rows: [top] } = await executor.execute(
    sql`SELECT max(${seq}) AS top FROM ${id(info.name)} WHERE 1 = 1${scope}`,
  );
  return top?.top === null || top?.top === undefined ? undefined : Number(top.top);
}

/**
 * The page query: the rows of `rows` in sequence order, at most `limit`,
 * ending at the row that reaches `budget` bytes (or at `newest` when none
 * does), as one JSON array with their count and last sequence number.
 *
 * The inner query walks the sequence index and stops after `limit` rows, or
 * at the row the running sum of stored sizes finds. The aggregate has no
 * ORDER BY of its own: a page's rows are distinct and may come in any order
 * (its cursor is its largest sequence), and an ordered aggregate sorts its
 * values, which drops their JSON subtype, so every row object would have to
 * be parsed again.
 */
function pageSql(
  info: TableInfo,
  rows: Sql,
  { limit, budget, newest }: { limit: number; budget: number; newest: number },
): Sql {
  const { rowJson, size } = shapeOf(info);
  const table = id(info.name);
  const end = sql`SELECT ${seq} FROM (SELECT ${seq}, sum(${size}) OVER
    (ORDER BY ${seq} ROWS UNBOUNDED PRECEDING) AS running FROM ${table}
    WHERE ${rows} ORDER BY ${seq} LIMIT ${limit}) WHERE running >= ${budget}
    ORDER BY ${seq} LIMIT 1`;
  return sql`SELECT json_group_array(${rowJson}) AS rows, count(*) AS total,
    max(${seq}) AS last FROM (SELECT * FROM ${table} WHERE ${rows}
    AND ${seq} <= coalesce((${end}), ${newest}) ORDER BY ${seq} LIMIT ${limit})`;
}

// The parts of a table's page query, and its blob columns (built once per table).
interface TableShape {
  // One pulled row as a JSON object (`PullRow`), blobs as hex.
  readonly rowJson: Sql;
  // A row's size in bytes as the page's budget counts it.
  readonly size: Sql;
  readonly blobs: readonly ColumnInfo[];
}

const shapes = new WeakMap<TableInfo, TableShape>();

function shapeOf(info: TableInfo): TableShape {
  let shape = shapes.get(info);
  if (shape === undefined) {
    shapes.set(
      info,
      shape = { rowJson: rowJsonSql(info), size: sizeSql(info), blobs: blobColumnsOf(info) },
    );
  }
  return shape;
}

function rowJsonSql(info: TableInfo): Sql {
  const fields = [
    `'id', system_id`,
    `'version', system_version`,
    `'createdAt', system_created_at`,
    `'deleted', ${jsonBooleanSql("is_deleted")}`,
    `'data', ${dataJsonSql(info)}`,
  ];
  if (info.perColumn) fields.push(`'columnVersions', json(${id(COLUMN_VERSIONS).sql})`);
  return raw(`json_object(${fields.join(", ")})`);
}

// Sizes are the values' stored lengths (hex doubles a blob), which SQLite
// knows without reading the values.
function sizeSql(info: TableInfo): Sql {
  const sizes = info.columns.map((c) =>
    `coalesce(octet_length(${c.quoted}), 0)${c.kind === "blob" ? " * 2" : ""}`
  );
  return raw([`${ROW_OVERHEAD_BYTES}`, `octet_length(system_id)`, ...sizes].join(" + "));
}

// The page's rows with their blobs, which SQLite wrote as hex, as base64.
function blobsToBase64(info: TableInfo, rowsJson: string): string {
  const { blobs } = shapeOf(info);
  if (blobs.length === 0) return rowsJson;
  const rows = JSON.parse(rowsJson) as PullRow[];
  for (const row of rows) {
    for (const column of blobs) {
      const hex = row.data[column.name];
      if (typeof hex === "string") row.data[column.name] = hexToBase64(hex);
    }
  }
  return JSON.stringify(rows);
}
