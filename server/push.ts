/**
 * A push on the server: a verdict per change, and the accepted changes
 * written in one batch — one database round trip — each numbered from the
 * change sequence (`sequence.ts`) inside SQL.
 *
 * First every change is judged on its own, before any SQL: an unknown table,
 * a value that breaks a row rule (`encodeChange`: the valibot schemas at the
 * door checked the rest), a version more than `maxDrift` ahead of server
 * time (`clock_drift`) or a row outside the principal's scope (`forbidden`)
 * is rejected alone. The rest is written in one batch — shared, with its
 * statements, by the pushes that arrive at this instance meanwhile
 * (`group_commit.ts`, `push_plan.ts`, where the statements and the verdicts
 * they give are described): `applied` or `stale` as the UPSERT's conflict
 * clause decided, `forbidden` for a row stored under another scope. When the
 * database refuses the batch (a constraint the operator added), the push
 * runs again alone in a transaction, statement by statement, and a refused
 * statement's rows are written one by one so that only the offending ones
 * are rejected (`constraint`).
 *
 * @example
 * ```ts
 * const writes = createPushWriter(adapter);
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
  encodeChange,
  type HeldRange,
  type NormalizedRow,
  parseHlc,
  type PushChange,
  type PushResult,
  type RejectionCode,
  type SqlAdapter,
  type SqlExecutor,
  type SqlResult,
  SyncError,
  type SyncErrorCode,
  type TableInfo,
} from "../src/internal.ts";
import { createGroupCommit, type GroupCommit } from "./group_commit.ts";
import {
  type Accepted,
  type Chunk,
  type Member,
  type PendingPush,
  planPushes,
  type PushPlan,
  type PushWrite,
  readPushes,
  upsertOf,
} from "./push_plan.ts";
import { othersRowMessage, type Principal, scopeViolation } from "./scope.ts";
import { advanceSequenceStatement } from "./sequence.ts";

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

/** Writes pushes, each in a batch shared with the pushes arriving meanwhile. */
export type PushWriter = GroupCommit<PendingPush, PushWrite>;

/**
 * The writer of `adapter`'s pushes: pushes that arrive while a write runs
 * share the next batch and its statements (`push_plan.ts`); without `group`,
 * each push is written at once, in a batch of its own.
 */
export function createPushWriter(
  adapter: SqlAdapter,
  { group = true }: { readonly group?: boolean } = {},
): PushWriter {
  const commit = async (pushes: readonly PendingPush[]) => {
    const plan = planPushes(pushes);
    return readPushes(plan, await adapter.batch(plan.statements));
  };
  if (!group) return { write: async (push) => (await commit([push]))[0]! };
  return createGroupCommit(commit);
}

/**
 * Applies `changes` (already checked by the protocol schemas): one verdict
 * per change, and the accepted ones written through `writes`. When the
 * database refuses the push with a constraint, it is applied again in a
 * transaction of `adapter`, statement by statement, so that only the
 * offending rows are rejected.
 */
export async function applyPush(
  writes: PushWriter,
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
  const push: PendingPush = { accepted, principal: context.principal };
  let write: PushWrite;
  try {
    write = await writes.write(push, changes.length);
  } catch (error) {
    if (!isConstraint(error)) throw error;
    const plan = planPushes([push], { returning: true });
    write = readPushes(
      plan,
      await adapter.transaction((tx) => applyOneByOne(tx, plan, results)),
    )[0]!;
  }
  for (const [info, list] of accepted) {
    for (const { index, row } of list) {
      if (write.forbidden.has(index)) {
        results[index] = rejected(info.name, row.id, "forbidden", othersRowMessage(info, row.id));
      }
      results[index] ??= {
        table: info.name,
        id: row.id,
        status: write.applied.has(index) ? "applied" : "stale",
      };
    }
  }
  return { results, held: write.held };
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

// The plan of one push run statement by statement inside `tx`: a chunk the
// database refuses is written row by row, and only the rows it refuses are
// rejected (`constraint`). Answers as the batch would have, one per statement.
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
  const write = async (members: readonly Member[]) => {
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
      const { index, row } = member.item;
      results[index] = rejected(chunk.info.name, row.id, "constraint", error.message);
    }
  }
  return { rows, rowsAffected: rows.length };
}

function isConstraint(error: unknown): error is SyncError {
  return error instanceof SyncError && error.code === "constraint";
}
