/**
 * A push on the server: a verdict per change, and the accepted changes
 * written in one batch — one database round trip — each numbered from the
 * change sequence (`sequence.ts`) inside SQL.
 *
 * First every change is judged on its own, before any SQL: an unknown table,
 * a value that breaks a row rule (`encodeChange`: the valibot schemas at the
 * door checked the rest), a version more than `maxDrift` ahead of server
 * time (`clock_drift`) or a row outside the principal's scope (`forbidden`)
 * is rejected alone. Then one batch, shared with the pushes that arrive
 * meanwhile (`group_commit.ts`), holds per table: the query for rows stored
 * under another scope (`forbidden`), and multi-row UPSERTs of at most
 * {@linkcode ROWS_PER_STATEMENT} rows, each numbering its rows from the
 * stored sequence and returning the rows it applied, and each followed by
 * the statement that moves the sequence on. The conflict clause decides
 * `applied` or `stale`, and never writes a row stored under another scope.
 * When the database refuses the batch (a constraint the operator added), the
 * push runs again in a transaction, statement by statement, and a refused
 * statement's rows are written one by one so that only the offending ones
 * are rejected (`constraint`).
 *
 * A row changed twice in one push is written in two rounds, each judged by
 * its own statement: the later change must not make the earlier one look
 * stale (on a column table both can keep columns).
 *
 * The numbers the applied rows got are answered as one range
 * (`PushResponse.held`): the push's statements run one after another, so no
 * number in it belongs to another push.
 *
 * @example
 * ```ts
 * const writes = createGroupCommit(adapter);
 * const { results, held } = await applyPush(writes, adapter, tables, request.changes, {
 *   principal,
 *   maxDrift: 60_000,
 *   serverTime: Date.now(),
 * });
 * ```
 *
 * @module
 */

import {
  type ColumnInfo,
  encodeChange,
  groupByColumns,
  type HeldRange,
  type NormalizedRow,
  parseHlc,
  type PushChange,
  type PushResult,
  type RejectionCode,
  type SqlAdapter,
  type SqlExecutor,
  type SqlResult,
  type SqlStatement,
  SyncError,
  type SyncErrorCode,
  type TableInfo,
  upsertStatement,
} from "../src/internal.ts";
import type { GroupCommit } from "./group_commit.ts";
import {
  enforcedScope,
  othersRowMessage,
  othersStatement,
  type Principal,
  rowsOfOthers,
  scopeViolation,
} from "./scope.ts";
import { advanceSequenceStatement, SEQUENCE_BASE, SEQUENCE_COLUMN } from "./sequence.ts";

/** What a push did: {@linkcode applyPush}'s answer. */
export interface PushOutcome {
  /** One verdict per change, in order. */
  readonly results: PushResult[];
  /** The sequence numbers the applied changes hold, as ranges. */
  readonly held: HeldRange[];
}

/** How one push is judged. */
export interface PushContext {
  /** Who is pushing: scoped tables accept only this principal's rows. */
  readonly principal: Principal | undefined;
  /** How far (ms) a version may be ahead of `serverTime`. */
  readonly maxDrift: number;
  /** The server's wall clock (ms) as the push arrived. */
  readonly serverTime: number;
}

/** Rows per UPSERT statement on the server. */
const ROWS_PER_STATEMENT = 500;

// The codes `encodeChange` refuses a row with: each is a rejection code too.
const ROW_RULE_CODES = [
  "unknown_column",
  "invalid_value",
  "invalid_version",
  "invalid_change",
] as const satisfies readonly (RejectionCode & SyncErrorCode)[];

function isRowRuleCode(code: SyncErrorCode): code is (typeof ROW_RULE_CODES)[number] {
  return (ROW_RULE_CODES as readonly string[]).includes(code);
}

// A change that passed the checks before SQL, at its position in the push.
interface Accepted {
  readonly index: number;
  readonly row: NormalizedRow;
}

// One UPSERT of the push: its rows, and where its statement sits in the plan.
interface Chunk {
  readonly info: TableInfo;
  readonly columns: readonly ColumnInfo[];
  readonly members: readonly Accepted[];
  readonly scoped: boolean;
  // The index of its UPSERT in `PushPlan.statements`; the sequence's advance follows it.
  readonly statement: number;
}

// The statements of one push, and what each answers.
interface PushPlan {
  readonly statements: SqlStatement[];
  // Per table with an enforced scope: where its query for others' rows sits.
  readonly others: {
    readonly info: TableInfo;
    readonly list: readonly Accepted[];
    readonly statement: number;
  }[];
  readonly chunks: Chunk[];
}

/**
 * Applies `changes` (already checked by the protocol schemas): one verdict
 * per change, and the accepted ones written in one batch through `writes`
 * (`group_commit.ts`). When the database refuses the batch with a
 * constraint, the push is applied again in a transaction of `adapter`,
 * statement by statement, so that only the offending rows are rejected.
 */
export async function applyPush(
  writes: GroupCommit,
  adapter: SqlAdapter,
  tables: ReadonlyMap<string, TableInfo>,
  changes: readonly PushChange[],
  context: PushContext,
): Promise<PushOutcome> {
  const results = new Array<PushResult>(changes.length);
  const accepted = new Map<TableInfo, Accepted[]>();
  changes.forEach((change, index) => {
    const verdict = judge(tables.get(change.table), change, context);
    if (!("row" in verdict)) {
      results[index] = verdict;
      return;
    }
    const list = accepted.get(verdict.info) ?? [];
    list.push({ index, row: verdict.row });
    accepted.set(verdict.info, list);
  });
  if (accepted.size === 0) return { results, held: [] };
  const plan = planPush(accepted, context.principal);
  let answers: readonly SqlResult[];
  try {
    answers = await writes.write(plan.statements, changes.length);
  } catch (error) {
    if (!isConstraint(error)) throw error;
    answers = await adapter.transaction((tx) => applyOneByOne(tx, plan, results));
  }
  return { results, held: settle(plan, answers, results) };
}

// The verdict on one change before any SQL: a rejection, or its row to write.
function judge(
  info: TableInfo | undefined,
  change: PushChange,
  { principal, maxDrift, serverTime }: PushContext,
): PushResult | { readonly info: TableInfo; readonly row: NormalizedRow } {
  if (info === undefined || !info.synced) {
    return rejected(change.table, change.id, "unknown_table", "Unknown synced table");
  }
  try {
    const row = encodeChange(info, change);
    const lead = parseHlc(row.version).ms - serverTime;
    if (lead > maxDrift) {
      return rejected(
        info.name,
        row.id,
        "clock_drift",
        `Version ${row.version} is ${lead} ms ahead of server time ${serverTime} (maxDrift ${maxDrift} ms)`,
      );
    }
    const violation = scopeViolation(info, row, principal);
    if (violation !== undefined) return rejected(info.name, row.id, "forbidden", violation);
    return { info, row };
  } catch (error) {
    if (!(error instanceof SyncError) || !isRowRuleCode(error.code)) throw error;
    return rejected(info.name, change.id, error.code, error.message);
  }
}

function rejected(table: string, id: string, code: RejectionCode, message: string): PushResult {
  return { table, id, status: "rejected", code, message };
}

// The statements of a push: per table, the query for rows stored under
// another scope, then per round and column set the UPSERTs of at most
// ROWS_PER_STATEMENT rows, each followed by the sequence's advance.
function planPush(
  accepted: ReadonlyMap<TableInfo, readonly Accepted[]>,
  principal: Principal | undefined,
): PushPlan {
  const plan: PushPlan = { statements: [], others: [], chunks: [] };
  for (const [info, list] of accepted) {
    const others = othersStatement(info, list.map((a) => a.row.id), principal);
    if (others !== undefined) {
      plan.others.push({ info, list, statement: plan.statements.length });
      plan.statements.push(others);
    }
    const scoped = enforcedScope(info, principal) !== undefined;
    for (const round of byOccurrence(list)) {
      const byRow = new Map(round.map((a) => [a.row, a]));
      for (const group of groupByColumns(info, round.map((a) => a.row))) {
        const members = group.rows.map((row) => byRow.get(row)!);
        for (let start = 0; start < members.length; start += ROWS_PER_STATEMENT) {
          const slice = members.slice(start, start + ROWS_PER_STATEMENT);
          const chunk = { info, columns: group.columns, members: slice, scoped };
          plan.chunks.push({ ...chunk, statement: plan.statements.length });
          plan.statements.push(upsertOf(chunk), advanceSequenceStatement(slice.length));
        }
      }
    }
  }
  return plan;
}

function upsertOf(chunk: Omit<Chunk, "statement">): SqlStatement {
  return upsertStatement(chunk.info, chunk.columns, chunk.members.map((a) => a.row), {
    stamp: { column: SEQUENCE_COLUMN, base: SEQUENCE_BASE },
    scoped: chunk.scoped,
  });
}

// The verdicts the answers of `plan` give, into `results` (rejections made
// before stay), and the numbers the push's rows were given, as one range:
// the push's statements run one after another, so every number between its
// first and its last applied row is its own (the stale ones are held by no row).
function settle(plan: PushPlan, answers: readonly SqlResult[], results: PushResult[]): HeldRange[] {
  for (const { info, list, statement } of plan.others) {
    for (const position of rowsOfOthers(answers[statement]!)) {
      const { index, row } = list[position]!;
      results[index] = rejected(info.name, row.id, "forbidden", othersRowMessage(info, row.id));
    }
  }
  let first = Infinity;
  let last = -Infinity;
  for (const { info, members, statement } of plan.chunks) {
    const applied = new Map<string, number>();
    for (const row of answers[statement]!.rows) {
      applied.set(String(row.system_id), Number(row[SEQUENCE_COLUMN]));
    }
    for (const { index, row } of members) {
      const number = applied.get(row.id);
      if (number !== undefined) {
        first = Math.min(first, number);
        last = Math.max(last, number);
      }
      results[index] ??= {
        table: info.name,
        id: row.id,
        status: number === undefined ? "stale" : "applied",
      };
    }
  }
  return first <= last ? [[first, last]] : [];
}

// The plan run statement by statement inside `tx`: a chunk the database
// refuses is written row by row, and only the rows it refuses are rejected
// (`constraint`). Answers as the batch would have, one per statement.
async function applyOneByOne(
  tx: SqlExecutor,
  plan: PushPlan,
  results: PushResult[],
): Promise<SqlResult[]> {
  const answers: SqlResult[] = [];
  const chunkAt = new Map(plan.chunks.map((chunk) => [chunk.statement, chunk]));
  for (let i = 0; i < plan.statements.length; i++) {
    const chunk = chunkAt.get(i);
    if (chunk === undefined) {
      answers.push(await tx.execute(plan.statements[i]!));
      continue;
    }
    answers.push(await upsertRowByRow(tx, chunk, results), { rows: [], rowsAffected: 0 });
    i++; // the chunk's advance of the sequence ran with each row
  }
  return answers;
}

// A chunk as one statement, or row by row when the database refuses it.
async function upsertRowByRow(
  tx: SqlExecutor,
  chunk: Chunk,
  results: PushResult[],
): Promise<SqlResult> {
  const write = async (members: readonly Accepted[]) => {
    const [answer] = await tx.batch([
      upsertOf({ ...chunk, members }),
      advanceSequenceStatement(members.length),
    ]);
    return answer!;
  };
  try {
    return await write(chunk.members);
  } catch (error) {
    if (!isConstraint(error)) throw error;
  }
  const rows: SqlResult["rows"] = [];
  for (const member of chunk.members) {
    try {
      rows.push(...(await write([member])).rows);
    } catch (error) {
      if (!isConstraint(error)) throw error;
      results[member.index] = rejected(chunk.info.name, member.row.id, "constraint", error.message);
    }
  }
  return { rows, rowsAffected: rows.length };
}

function isConstraint(error: unknown): error is SyncError {
  return error instanceof SyncError && error.code === "constraint";
}

// The changes in rounds: the first change of each row, then the second of
// each row changed twice, and so on, each round in push order.
function byOccurrence(list: readonly Accepted[]): Accepted[][] {
  const rounds: Accepted[][] = [];
  const seen = new Map<string, number>();
  for (const item of list) {
    const occurrence = seen.get(item.row.id) ?? 0;
    seen.set(item.row.id, occurrence + 1);
    (rounds[occurrence] ??= []).push(item);
  }
  return rounds;
}
