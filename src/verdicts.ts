/**
 * What `onSend` answered for one batch, turned into what the outbox must do:
 * the changes to acknowledge and the ones to move to `_sync_rejected`.
 *
 * A pure function, kept apart from the pipeline that sends the batches, so
 * the rules of the protocol's per-row verdicts read in one place:
 *
 * - `true`: every change of the batch was accepted.
 * - `applied` and `stale` (the server has newer; it comes back on pull):
 *   acknowledged.
 * - `rejected`: a rejection, with the server's code (`"rejected"` when it gave
 *   none) and message.
 * - no verdict for a change, or a status this version does not know: the
 *   change stays queued for the next sync. Nothing is dropped on a guess.
 *
 * (`false`, "retry later", never gets here: it fails the send first.)
 *
 * @example
 * ```ts
 * const { acknowledged, rejections } = mapVerdicts(batch, [
 *   { table: "tasks", id: batch[0]!.id, status: "applied" },
 *   { table: "tasks", id: batch[1]!.id, status: "rejected", code: "forbidden" },
 * ]);
 * ```
 *
 * @module
 */

import type { DirtyRow } from "./outbox.ts";
import type { RejectedRow, Rejection } from "./rejected.ts";
import type { PushResult } from "./protocol.ts";
import type { RejectionCode } from "./wire_errors.ts";

/**
 * What `onSend` may return: `true` (all accepted), `false` (retry later), or
 * one verdict per change, as an array or as the push response's `results`.
 */
export type SendResult =
  | boolean
  | readonly PushResult[]
  | { readonly results: readonly PushResult[] };

/** The outcome of one answered batch. */
export interface Verdicts {
  /** Changes to remove from the outbox (applied or stale). */
  readonly acknowledged: DirtyRow[];
  /** How many of `acknowledged` were stale (the server had newer). */
  readonly stale: number;
  /** Changes to move to `_sync_rejected`, with the server's reason. */
  readonly rejections: Rejection[];
}

/** The code of a rejection whose verdict gave none. */
const DEFAULT_REJECTION_CODE: RejectionCode = "rejected";
const DEFAULT_REJECTION_MESSAGE = "The server rejected the change";

const KNOWN: ReadonlySet<string> = new Set(["applied", "stale", "rejected"]);

/** Identifies a row across the outbox, the verdicts and `_sync_rejected`. */
function rowKey(row: { readonly table: string; readonly id: string }): string {
  return `${row.table}\u0000${row.id}`;
}

/**
 * Sorts the changes of a sent batch by the verdicts `onSend` returned for it.
 *
 * @param batch The changes as they were sent.
 * @param result What `onSend` returned for them (not `false`).
 */
export function mapVerdicts(
  batch: readonly DirtyRow[],
  result: Exclude<SendResult, false>,
): Verdicts {
  const verdicts = result === true
    ? undefined
    : Array.isArray(result)
    ? result as readonly PushResult[]
    : (result as { results: readonly PushResult[] }).results;
  const byKey = new Map(verdicts?.map((verdict) => [rowKey(verdict), verdict]));
  const acknowledged: DirtyRow[] = [];
  const rejections: Rejection[] = [];
  let stale = 0;
  for (const change of batch) {
    const verdict: Pick<PushResult, "status" | "code" | "message"> | undefined =
      verdicts === undefined ? { status: "applied" } : byKey.get(rowKey(change));
    // No verdict, or one this version does not know: the change stays queued.
    if (verdict === undefined || !KNOWN.has(verdict.status)) continue;
    if (verdict.status === "rejected") {
      rejections.push({
        change,
        code: verdict.code ?? DEFAULT_REJECTION_CODE,
        message: verdict.message ?? DEFAULT_REJECTION_MESSAGE,
      });
    } else {
      if (verdict.status === "stale") stale++;
      acknowledged.push(change);
    }
  }
  return { acknowledged, rejections, stale };
}

/**
 * The stored entries of `_sync_rejected` that belong to `rejections`: what a
 * `rejected` event reports once they were written.
 */
export function rejectedRowsOf(
  stored: readonly RejectedRow[],
  rejections: readonly Rejection[],
): RejectedRow[] {
  const keys = new Set(rejections.map((rejection) => rowKey(rejection.change)));
  return stored.filter((row) => keys.has(rowKey(row)));
}
