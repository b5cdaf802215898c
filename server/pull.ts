/**
 * A pull on the server: per requested table, one page of the rows whose
 * sequence number (`sequence.ts`) is greater than the table's cursor, in
 * sequence order, as the JSON text of the response's `changes`.
 *
 * A page is one statement, and the pages of all requested tables go in one
 * read batch: one round trip to the database, one snapshot. SQLite writes
 * the page as JSON text in one value: no per-row work in JavaScript, and the
 * text goes into the response as it is (only blobs, which SQLite writes as
 * hex, are turned into the wire's base64 on the way). A page holds at most
 * `limit` rows and ends early, with `hasMore`, at the row that fills the
 * response's byte budget — found from the stored sizes of the values,
 * without reading them — yet carries at least one row while budget remains.
 * Tables share one budget, in request order: a table whose page no longer
 * fits in what the tables before it left answers `hasMore` with no rows and
 * its cursor unchanged (its page comes with the next pull).
 *
 * Each page is bounded by the newest number in the asker's scope, read in
 * the same snapshot: numbers are assigned under the write lock, so every
 * row up to it is committed and no page boundary can skip or repeat one,
 * whatever the clients' clocks; a replica that lags behind answers a
 * shorter page, never a gap. A scoped table shows a
 * principal only its rows (`scope.ts`). Rows the asker holds as they are
 * (the state its own push wrote: `PullRequest.held`) are left out, while
 * the cursor moves past them; a column table's row may merge other
 * replicas' columns into a push, so those are always sent.
 *
 * @example
 * ```ts
 * const asked = askedTables(tables, { tasks: null });
 * const { json } = await pullPages(adapter, asked, 1_000, { principal });
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
  type SqlValue,
  SyncError,
  type TableInfo,
} from "../src/internal.ts";
import { type Principal, scopeFilter } from "./scope.ts";
import { seq, SEQUENCE_BASE } from "./sequence.ts";

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

/** A pull's pages, and what they say of the database. */
export interface PulledPages {
  /** The JSON text of `PullResponse.changes`. */
  readonly json: string;
  /** The last sequence number given out, in the snapshot the pages were read from. */
  readonly sequence: number;
  /** True when no page carries rows or has more: the asker has everything. */
  readonly empty: boolean;
}

/** A requested table with its cursor, checked: {@linkcode askedTables}. */
export interface AskedTable {
  /** The table. */
  readonly info: TableInfo;
  /** The cursor as the request named it. */
  readonly cursor: string | null;
  /** The sequence number the cursor stands for (0 for `null`). */
  readonly after: number;
}

/**
 * The requested tables with their cursors, checked.
 *
 * @throws {SyncError} `unknown_table` for a table that is not synced,
 * `invalid_change` for a cursor that did not come from this server.
 */
export function askedTables(
  tables: ReadonlyMap<string, TableInfo>,
  cursors: Readonly<Record<string, string | null>>,
): AskedTable[] {
  return Object.entries(cursors).map(([table, cursor]) => {
    const info = tables.get(table);
    if (info === undefined || !info.synced) {
      throw new SyncError("unknown_table", `Unknown synced table ${table}`, {
        details: { table },
      });
    }
    return { info, cursor, after: cursorNumber(info, cursor) };
  });
}

/**
 * The answer of a pull that has nothing new for any of `asked`: each table's
 * empty page, its cursor as it was — what {@linkcode pullPages} answers
 * when the cursors have reached the database's sequence.
 */
export function emptyPagesJson(asked: readonly AskedTable[]): string {
  const parts = asked.map(({ info, cursor }) =>
    `${JSON.stringify(info.name)}:{"rows":[],"cursor":${
      JSON.stringify(cursor ?? "0")
    },"hasMore":false}`
  );
  return `{${parts.join(",")}}`;
}

/**
 * The pages of `asked` tables (from {@linkcode askedTables}), as the JSON
 * text of `PullResponse.changes`: one statement per table, all in one read
 * batch — one round trip, one snapshot.
 *
 * A table whose page leaves nothing after it gets the snapshot's last
 * sequence number as its cursor, not its own newest row's: no row of it can
 * be numbered at or below that number later (numbers are given out in
 * commit order), and a cursor that has reached the database's sequence is
 * one a server that knows the sequence answers without reading
 * (`database.ts`). A cursor thus tells how many numbers the server gave out
 * in all — not whose rows they went to, nor which.
 *
 * @throws {RangeError} when `limit` is not a positive integer.
 */
export async function pullPages(
  executor: SqlExecutor,
  asked: readonly AskedTable[],
  limit: number,
  options: PullOptions = {},
): Promise<PulledPages> {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`Pull limit must be a positive integer, got ${limit}`);
  }
  const budget = options.maxBytes ?? DEFAULT_MAX_PULL_BYTES;
  if (asked.length === 0) return { json: "{}", sequence: 0, empty: true };
  const statements = asked.map(({ info, after }) =>
    pageSql(info, after, { limit, budget, principal: options.principal, held: options.held })
  );
  const answers = statements.length === 1
    ? [await executor.execute(statements[0]!)]
    : await executor.batch(statements, "read");
  const sequence = Number(answers[0]?.rows[0]?.sequence ?? 0);
  // The bytes of rows the pages before carry.
  let used = 0;
  let empty = true;
  const parts = asked.map(({ info, cursor, after }, i) => {
    const page = pageOf(info, cursor, after, answers[i]!.rows[0], { used, budget, sequence });
    if (page.rowsJson !== "[]") used += page.rowsJson.length;
    if (page.rowsJson !== "[]" || page.hasMore) empty = false;
    return `${JSON.stringify(info.name)}:{"rows":${page.rowsJson},"cursor":${
      JSON.stringify(page.cursor)
    },"hasMore":${page.hasMore}}`;
  });
  return { json: `{${parts.join(",")}}`, sequence, empty };
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
  // The bytes the response may carry.
  readonly budget: number;
  readonly principal?: Principal;
  readonly held?: readonly HeldRange[];
}

// The page a table's statement answered. Each table's page was cut to the
// whole budget; one that no longer fits beside the rows of the pages before
// it is not sent: it answers `hasMore` with no rows and its cursor
// unchanged, and comes with the next pull.
function pageOf(
  info: TableInfo,
  cursor: string | null,
  after: number,
  answer: Record<string, SqlValue> | undefined,
  { used, budget, sequence }: {
    readonly used: number;
    readonly budget: number;
    readonly sequence: number;
  },
): PageJson {
  const newest = answer?.newest === null || answer?.newest === undefined
    ? undefined
    : Number(answer.newest);
  // Nothing is left after a page that ends at `newest`: the cursor moves to
  // the snapshot's sequence (see `pullPages`).
  const caughtUp = String(Math.max(after, sequence, newest ?? 0));
  if (newest === undefined || newest <= after) {
    return { rowsJson: "[]", cursor: caughtUp, hasMore: false };
  }
  const rowsJson = blobsToBase64(info, String(answer?.rows ?? "[]"));
  // The first page that carries rows goes whatever its size (it was cut to
  // the budget); later ones only if they fit in what is left.
  if (used > 0 && used + rowsJson.length > budget) {
    return { rowsJson: "[]", cursor: cursor ?? "0", hasMore: true };
  }
  const last = Number(answer?.last ?? newest);
  // `newest` is a row in scope: a page that stopped before it leaves more,
  // unless all that is left is the asker's own (`more` says).
  const hasMore = last < newest && Number(answer?.more ?? 1) === 1;
  return { rowsJson, cursor: hasMore ? String(last) : caughtUp, hasMore };
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

/**
 * The page statement of one table: the newest sequence number in the
 * asker's scope, and the rows after `after` up to it that the asker may see
 * and lacks, in sequence order, at most `limit`, ending at the row that
 * reaches `budget` bytes — as one JSON array with their count, their last
 * sequence number, and whether rows are left after them (`more`).
 *
 * The newest number bounds the page: numbers are assigned under the write
 * lock and the statement reads one snapshot, so every row up to it is
 * committed and no page boundary can skip or repeat one. The inner query
 * walks the sequence index and stops after `limit` rows, or at the row the
 * running sum of stored sizes finds. The aggregate has no ORDER BY of its
 * own: a page's rows are distinct and may come in any order (its cursor is
 * its largest sequence), and an ordered aggregate sorts its values, which
 * drops their JSON subtype, so every row object would have to be parsed
 * again.
 */
function pageSql(info: TableInfo, after: number, bounds: PageBounds): Sql {
  const { rowJson, size } = shapeOf(info);
  const { limit, budget } = bounds;
  const table = id(info.name);
  const scope = scopeFilter(info, bounds.principal);
  const own = ownRowsFilter(info, bounds.held);
  const newest = sql`(SELECT newest FROM top)`;
  // The rows after `from`, up to the newest, that the asker may see and lacks.
  const rowsAfter = (from: Sql) => sql`${seq} > ${from} AND ${seq} <= ${newest}${scope}${own}`;
  const end = sql`SELECT ${seq} FROM (SELECT ${seq}, sum(${size}) OVER
    (ORDER BY ${seq} ROWS UNBOUNDED PRECEDING) AS running FROM ${table}
    WHERE ${rowsAfter(sql`${after}`)} ORDER BY ${seq} LIMIT ${limit}) WHERE running >= ${budget}
    ORDER BY ${seq} LIMIT 1`;
  // Only the asker's own rows can make a short page the last one.
  const more = own === empty
    ? sql`1`
    : sql`EXISTS (SELECT 1 FROM ${table} WHERE ${rowsAfter(sql`coalesce(page.last, ${newest})`)})`;
  return sql`WITH top AS (SELECT max(${seq}) AS newest FROM ${table} WHERE 1 = 1${scope}),
    page AS (SELECT json_group_array(${rowJson}) AS rows, count(*) AS total, max(${seq}) AS last
      FROM (SELECT * FROM ${table} WHERE ${rowsAfter(sql`${after}`)}
        AND ${seq} <= coalesce((${end}), ${newest}) ORDER BY ${seq} LIMIT ${limit}))
    SELECT ${newest} AS newest, page.rows, page.total, page.last, ${more} AS more,
      ${raw(SEQUENCE_BASE)} AS sequence FROM page`;
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
