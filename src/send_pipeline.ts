/**
 * The send half of a sync: the outbox goes out in bounded batches, oldest
 * change first, and each answer is written back to the outbox.
 *
 * It is a pipeline. Up to `concurrency` batches are in flight at once and
 * answered in order; the next batch is read while they travel. Each read
 * starts after the last entry of the batch before it, so what is in flight
 * needs no acknowledgement to be left out. Once batch N is answered the window
 * is topped up before N's verdicts are written, so the network never waits
 * for the database.
 *
 * Acknowledgements are gathered over {@linkcode ACK_BATCHES} batches and
 * written together, in one transaction: the outbox is not rewritten once per
 * batch. One that is lost (a crash) only sends its changes again, which LWW
 * makes harmless. Rejections are written at once, since they are reported.
 *
 * A failure (`send` rejects, returns `false`, or the outbox cannot be
 * written) fails the send, but not before the batches still in flight are
 * answered (no `send` call outlives its sync) and what was answered is
 * settled; the first error is the one thrown.
 *
 * The pipeline owns no state of the manager: it reads and writes the outbox
 * through a {@linkcode SendOutbox} and reports through callbacks, so it can
 * be tested alone over a real database.
 *
 * @example
 * ```ts
 * await sendOutbox({
 *   outbox: {
 *     read: (limit, after) => db.getOutboxBatch({ limit, after }),
 *     acknowledge: (completions) => db.completeBatches(completions),
 *     reject: async (rejections) => {
 *       await db.rejectDirtyRows(rejections);
 *       return rejectedRowsOf(await db.getRejectedRows(), rejections);
 *     },
 *   },
 *   send: (batch) => onSend(batch, db),
 *   batchSize: 500,
 *   concurrency: 2,
 *   waiting: await db.countDirtyRows(),
 *   onRejected: (rows) => console.warn("refused", rows),
 * });
 * ```
 *
 * @module
 */

import type { BatchCompletion, OutboxBatch } from "./database.ts";
import { SyncError } from "./errors.ts";
import type { DirtyRow } from "./outbox.ts";
import type { RejectedRow, Rejection } from "./rejected.ts";
import { mapVerdicts, type SendResult } from "./verdicts.ts";

/** The outbox as the pipeline sees it. */
export interface SendOutbox {
  /** Up to `limit` entries, oldest first; only those after the batch `after`. */
  read(limit: number, after?: OutboxBatch): Promise<OutboxBatch>;
  /** Acknowledges rows of the batches `read` returned, in one write. */
  acknowledge(completions: readonly BatchCompletion[]): Promise<void>;
  /** Moves refused changes to `_sync_rejected`; returns their stored entries. */
  reject(rejections: readonly Rejection[]): Promise<RejectedRow[]>;
}

/** How many changes of one answered batch were settled. */
export interface SettledBatch {
  /** Changes the batch carried. */
  readonly sent: number;
  /** Applied or stale: acknowledged (written with the next group of acknowledgements). */
  readonly acknowledged: number;
  /** Of `acknowledged`, the stale ones (the server had newer). */
  readonly stale: number;
  /** Moved to `_sync_rejected`. */
  readonly rejected: number;
}

/** Options of {@linkcode sendOutbox}. */
export interface SendPipelineOptions {
  /** Where the changes come from and where their verdicts go. */
  readonly outbox: SendOutbox;
  /** Sends one batch (the manager's `onSend`); `false` means "retry later". */
  readonly send: (batch: DirtyRow[]) => Promise<SendResult>;
  /** Changes per batch. */
  readonly batchSize: number;
  /** Batches in flight at once (1: the next is sent once the previous is answered). */
  readonly concurrency: number;
  /**
   * Changes in the outbox when the send began. The send reads enough batches
   * for them (and one more), so writes made meanwhile wait for the next sync
   * instead of keeping this one going.
   */
  readonly waiting: number;
  /** Called once per answered batch, after its rejections were written. */
  readonly onSettled?: (settled: SettledBatch) => void;
  /** Called with the stored entries of a batch's rejections, once written. */
  readonly onRejected?: (rows: RejectedRow[]) => void;
}

/** Answered batches whose acknowledgements are written together. */
export const ACK_BATCHES = 10;

/**
 * Sends the outbox: every change that waited when it began, in batches.
 *
 * @throws {SyncError} `send_refused` when `send` returned `false`; otherwise
 * the first error of `send` or of the outbox.
 */
export async function sendOutbox(options: SendPipelineOptions): Promise<void> {
  const window = openWindow(options);
  const acknowledgements = gatherAcknowledgements(
    options.outbox,
    options.batchSize * ACK_BATCHES,
  );
  try {
    await window.fill();
    for (let sent = window.inFlight.shift(); sent; sent = window.inFlight.shift()) {
      const result = await sent.answer;
      if (result === false) {
        throw new SyncError("send_refused", "onSend returned false; the changes will be retried");
      }
      await window.fill();
      await acknowledgements.add(await settle(sent.batch, result, options));
    }
    await acknowledgements.flush();
  } catch (error) {
    await drain(window.inFlight.splice(0), acknowledgements, options);
    throw error;
  }
}

// A sent batch and its answer to come.
interface InFlight {
  readonly batch: OutboxBatch;
  readonly answer: Promise<SendResult>;
}

// The batches in flight, and the read of the next one.
function openWindow(options: SendPipelineOptions): {
  inFlight: InFlight[];
  fill(): Promise<void>;
} {
  const { outbox, send, batchSize, concurrency } = options;
  const rounds = Math.ceil(options.waiting / batchSize) + 1;
  const inFlight: InFlight[] = [];
  let next: Promise<OutboxBatch> | undefined = handled(outbox.read(batchSize));
  let round = 1;
  // Sends batches until the window is full or the outbox (or the rounds) ran out.
  const fill = async () => {
    while (inFlight.length < concurrency && next !== undefined) {
      const batch = await next;
      if (batch.rows.length === 0) {
        next = undefined;
        return;
      }
      inFlight.push({ batch, answer: handled(Promise.resolve(send(batch.rows))) });
      next = round++ < rounds ? handled(outbox.read(batchSize, batch)) : undefined;
    }
  };
  return { inFlight, fill };
}

// Acknowledgements waiting to be written, in groups of `flushAt` or more.
function gatherAcknowledgements(outbox: SendOutbox, flushAt: number): {
  keep(completion: BatchCompletion): void;
  add(completion: BatchCompletion): Promise<void>;
  flush(): Promise<void>;
} {
  let waiting: BatchCompletion[] = [];
  let rows = 0;
  const keep = (completion: BatchCompletion) => {
    if (completion.rows?.length === 0) return;
    waiting.push(completion);
    rows += completion.rows?.length ?? completion.batch.rows.length;
  };
  const flush = async () => {
    if (waiting.length === 0) return;
    const completions = waiting;
    waiting = [];
    rows = 0;
    await outbox.acknowledge(completions);
  };
  return {
    keep,
    add: async (completion) => {
      keep(completion);
      if (rows >= flushAt) await flush();
    },
    flush,
  };
}

// Applies the verdicts of one answered batch: writes and reports its
// rejections, and returns the changes to acknowledge. A change without a
// verdict stays queued for the next sync (reads move on past it, so it is
// not sent again now).
async function settle(
  batch: OutboxBatch,
  result: Exclude<SendResult, false>,
  options: SendPipelineOptions,
): Promise<BatchCompletion> {
  const { acknowledged, rejections, stale } = mapVerdicts(batch.rows, result);
  if (rejections.length > 0) {
    options.onRejected?.(await options.outbox.reject(rejections));
  }
  options.onSettled?.({
    sent: batch.rows.length,
    acknowledged: acknowledged.length,
    stale,
    rejected: rejections.length,
  });
  return { batch, rows: acknowledged };
}

// After a failure: waits for the answers still to come and keeps what they
// settled; errors here are dropped, since the first one is reported.
async function drain(
  inFlight: readonly InFlight[],
  acknowledgements: ReturnType<typeof gatherAcknowledgements>,
  options: SendPipelineOptions,
): Promise<void> {
  for (const { batch, answer } of inFlight) {
    const result = await answer.catch(() => false as const);
    if (result === false) continue;
    await settle(batch, result, options).then(acknowledgements.keep, () => undefined);
  }
  await acknowledgements.flush().catch(() => undefined);
}

// A promise whose rejection is reported where it is awaited, and not as
// unhandled if a failure before that point ends the send first.
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}
