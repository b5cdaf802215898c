/**
 * `ServerSyncManager`: keeps a local database in sync in the background, with
 * the `onFetch` / `onSend` pair of the declarative_sqlite seed (or the ready
 * pair of `createHttpSync`).
 *
 * A sync sends first — the outbox in bounded batches, oldest change first,
 * `sendConcurrency` batches in flight while the next is read — then fetches
 * until no page is left (at most `maxFetchPages` pages a sync; the next sync
 * goes on from the stored cursors). Only one sync runs at a time; a call
 * during a sync joins it. A failed sync is retried on its own with capped
 * exponential backoff and jitter, whether or not anything is written locally
 * meanwhile; a successful one schedules the next after `syncInterval`.
 *
 * `onSend` may return `true` (all accepted), `false` (retry later) or one
 * verdict per change: `applied` and `stale` clear the outbox entry,
 * `rejected` moves it to `_sync_rejected` and emits a `rejected` event — it is
 * never retried forever and never blocks the changes behind it.
 *
 * Status is observable: a `status` event (detail: {@linkcode SyncStatus}) on
 * every change of state, pending count or error, so an app can show
 * "3 changes waiting".
 *
 * @example
 * ```ts
 * const manager = new ServerSyncManager({
 *   database,
 *   syncInterval: 300_000,
 *   ...createHttpSync({ url: "https://example.com/sync" }),
 * });
 * manager.addEventListener("status", (e) => render((e as CustomEvent<SyncStatus>).detail));
 * manager.start();
 * await manager.syncNow();
 * await manager.stop();
 * ```
 *
 * @module
 */

import type { Database } from "./database.ts";
import { SyncError } from "./errors.ts";
import type { DirtyRow, RejectedRow, Rejection } from "./outbox.ts";
import type { PushResult } from "./protocol.ts";
import type { TableDef } from "./schema.ts";

/** What `onSend` may return. */
export type SendResult =
  | boolean
  | readonly PushResult[]
  | { readonly results: readonly PushResult[] };

/** What `onFetch` may return: `true` or `{ hasMore: true }` asks for another page. */
export type FetchResult = void | boolean | { readonly hasMore: boolean };

/** The states of a manager. */
export type SyncState = "idle" | "syncing" | "offline" | "error";

/** A snapshot of a manager's status. */
export interface SyncStatus {
  /** idle, syncing, offline (the server cannot be reached) or error. */
  readonly state: SyncState;
  /** Changes waiting in the outbox. */
  readonly pending: number;
  /** Changes the server refused (see `database.getRejectedRows()`). */
  readonly rejected: number;
  /** When the last sync succeeded (ms since the epoch). */
  readonly lastSyncAt: number | undefined;
  /** The error of the last failed sync, cleared by a successful one. */
  readonly lastError: unknown;
  /** When the next attempt is due (ms since the epoch), while started. */
  readonly nextSyncAt: number | undefined;
}

/** Options of {@linkcode ServerSyncManager}. */
export interface ServerSyncManagerOptions<T extends Record<string, TableDef>> {
  /** The local database. */
  database: Database<T>;
  /** Time between successful syncs, ms (default 300,000). */
  syncInterval?: number;
  /** Gets the server's changes and applies them with `db.applyServerChanges`. */
  onFetch: (db: Database<T>, tableTimestamps: Record<string, unknown>) => Promise<FetchResult>;
  /** Sends outbox changes; see {@linkcode SendResult}. */
  onSend: (operations: DirtyRow[], db: Database<T>) => Promise<SendResult>;
  /** Changes per `onSend` call (default 500). */
  batchSize?: number;
  /**
   * Batches sent before the first of them is answered (default 1: `onSend`
   * is called again only once its previous call resolved). With more, the
   * next batch waits at the server while the client handles an answer, and
   * the network's round trip is paid once per window instead of once per
   * batch; answers are still handled in order. `createHttpSync` brings 2.
   */
  sendConcurrency?: number;
  /** First retry delay after a failure, ms (default 1,000). */
  retryDelay?: number;
  /** Largest retry delay, ms (default 60,000). */
  maxRetryDelay?: number;
  /** Most pages fetched in one sync (default 10,000). */
  maxFetchPages?: number;
  /** Random numbers in [0, 1) for the jitter (injectable for tests). */
  random?: () => number;
}

/**
 * Keeps a local database in sync: push the outbox, then pull, in the
 * background and on demand.
 */
export class ServerSyncManager<T extends Record<string, TableDef> = Record<string, TableDef>>
  extends EventTarget {
  readonly #options: ServerSyncManagerOptions<T>;
  readonly #db: Database<T>;
  #status: SyncStatus = {
    state: "idle",
    pending: 0,
    rejected: 0,
    lastSyncAt: undefined,
    lastError: undefined,
    nextSyncAt: undefined,
  };
  #running: Promise<void> | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #started = false;
  #failures = 0;
  #unsubscribe: (() => void) | undefined;
  #recounting = false;
  // Local writes so far, and how many there had been when the running sync
  // started: a `syncNow()` after a later write must not just join that sync.
  #writes = 0;
  #writesBeforeRun = 0;
  #followUp: Promise<void> | undefined;
  readonly #stopCounting: () => void;

  /** Creates a stopped manager; call `start()` to sync in the background. */
  constructor(options: ServerSyncManagerOptions<T>) {
    super();
    if (typeof options.onFetch !== "function" || typeof options.onSend !== "function") {
      throw new TypeError("ServerSyncManager needs onFetch and onSend functions");
    }
    for (
      const name of [
        "syncInterval",
        "batchSize",
        "sendConcurrency",
        "retryDelay",
        "maxRetryDelay",
        "maxFetchPages",
      ] as const
    ) {
      const value = options[name];
      if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
        throw new RangeError(`${name} must be a positive number, got ${value}`);
      }
    }
    const { sendConcurrency } = options;
    if (sendConcurrency !== undefined && !Number.isSafeInteger(sendConcurrency)) {
      throw new RangeError(`sendConcurrency must be a positive integer, got ${sendConcurrency}`);
    }
    this.#options = options;
    this.#db = options.database;
    this.#stopCounting = this.#db.onChange(() => {
      this.#writes += 1;
    });
  }

  /** The current status. */
  get status(): SyncStatus {
    return this.#status;
  }

  /** True between `start()` and `stop()`. */
  get started(): boolean {
    return this.#started;
  }

  /** Syncs now, then every `syncInterval`; failures retry with backoff. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    // Local writes change the pending count between syncs: keep it current.
    this.#unsubscribe = this.#db.onChange(() => this.#recount());
    this.#schedule(0);
  }

  /** Stops the background syncs and waits for a running one to finish. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#update({ nextSyncAt: undefined });
    await this.#running?.catch(() => undefined);
  }

  /** Stops the manager for good (`await using manager = new ServerSyncManager(…)`). */
  async [Symbol.asyncDispose](): Promise<void> {
    this.#stopCounting();
    await this.stop();
  }

  /**
   * Syncs now: sends the outbox, then fetches; resolves once everything
   * written before the call was sent. A call during a sync joins it when
   * nothing was written since that sync started; otherwise it waits for it
   * and runs one more (calls meanwhile share that one).
   * @throws the sync's error (a background retry is scheduled if started).
   */
  syncNow(): Promise<void> {
    if (this.#running !== undefined) {
      if (this.#writes === this.#writesBeforeRun) return this.#running;
      this.#followUp ??= this.#running.catch(() => undefined).then(() => {
        this.#followUp = undefined;
        return this.syncNow();
      });
      return this.#followUp;
    }
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#writesBeforeRun = this.#writes;
    const run = this.#sync().finally(() => {
      this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  async #sync(): Promise<void> {
    this.#update({ state: "syncing", nextSyncAt: undefined });
    try {
      await this.#send();
      await this.#fetch();
      this.#failures = 0;
      this.#update({
        state: "idle",
        lastSyncAt: Date.now(),
        lastError: undefined,
        ...(await this.#counts()),
      });
      this.dispatchEvent(new CustomEvent("synced", { detail: this.#status }));
      if (this.#started) this.#schedule(this.#options.syncInterval ?? 300_000);
    } catch (error) {
      this.#failures += 1;
      const offline = error instanceof SyncError && error.code === "offline";
      this.#update({
        state: offline ? "offline" : "error",
        lastError: error,
        ...(await this.#counts().catch(() => ({}))),
      });
      if (this.#started) this.#schedule(this.#retryDelay());
      throw error;
    }
  }

  async #send(): Promise<void> {
    const batchSize = this.#options.batchSize ?? 500;
    const waiting = await this.#db.countDirtyRows();
    this.#update({ pending: waiting });
    // Enough rounds for what waited at the start: writes made during the sync
    // wait for the next one instead of keeping this one going.
    const rounds = Math.ceil(waiting / batchSize) + 1;
    const read = (after?: DirtyRow) => this.#db.getDirtyRows({ limit: batchSize, after });
    const send = (batch: DirtyRow[]) =>
      handled(Promise.resolve(this.#options.onSend(batch, this.#db)));
    const window = this.#options.sendConcurrency ?? 1;
    // A pipeline: up to `window` batches in flight, answered in order, and the
    // next batch read while they travel. Each read starts after the last
    // entry of the batch before it, so what is in flight needs no
    // acknowledgement to be left out; once batch N is answered, the window
    // is topped up before N's verdicts are written.
    const inFlight: { batch: DirtyRow[]; sending: Promise<SendResult> }[] = [];
    let next: Promise<DirtyRow[]> | undefined = handled(read());
    let round = 1;
    const fill = async () => {
      while (inFlight.length < window && next !== undefined) {
        const batch = await next;
        if (batch.length === 0) {
          next = undefined;
          return;
        }
        inFlight.push({ batch, sending: send(batch) });
        next = round++ < rounds ? handled(read(batch.at(-1))) : undefined;
      }
    };
    // Acknowledgements wait for a few batches and are written together, in
    // one transaction: the outbox is not rewritten once per batch. One that
    // is lost (a crash) only sends its changes again, which LWW makes harmless.
    const acknowledged: DirtyRow[] = [];
    const flushAt = batchSize * ACK_BATCHES;
    const flush = async () => {
      if (acknowledged.length === 0) return;
      await this.#db.acknowledgeDirtyRows(acknowledged.splice(0));
    };
    try {
      await fill();
      while (inFlight.length > 0) {
        const { batch, sending } = inFlight.shift()!;
        const result = await sending;
        if (result === false) {
          throw new SyncError("send_refused", "onSend returned false; the changes will be retried");
        }
        await fill();
        acknowledged.push(...await this.#settle(batch, result));
        if (acknowledged.length >= flushAt) await flush();
      }
      await flush();
    } catch (error) {
      // The sync fails, but not before the batches still in flight are
      // answered (no onSend call outlives its sync), and what was answered is
      // settled; the first error is the one reported.
      for (const { batch, sending } of inFlight.splice(0)) {
        const result = await sending.catch(() => false as const);
        if (result === false) continue;
        await this.#settle(batch, result).then(
          (rows) => acknowledged.push(...rows),
          () => undefined,
        );
      }
      await flush().catch(() => undefined);
      throw error;
    }
  }

  // Applies the verdicts of one sent batch: stores the rejections and returns
  // the changes to acknowledge. A change without a verdict stays queued for
  // the next sync (reads move on past it, so it is not resent now).
  async #settle(
    batch: readonly DirtyRow[],
    result: Exclude<SendResult, false>,
  ): Promise<DirtyRow[]> {
    const verdicts = result === true
      ? undefined
      : Array.isArray(result)
      ? result as readonly PushResult[]
      : (result as { results: readonly PushResult[] }).results;
    const byKey = new Map(verdicts?.map((v) => [`${v.table}\u0000${v.id}`, v]));
    const acknowledged: DirtyRow[] = [];
    const rejections: Rejection[] = [];
    for (const change of batch) {
      const verdict = verdicts === undefined
        ? { status: "applied" }
        : byKey.get(`${change.table}\u0000${change.id}`);
      // No verdict, or one this version does not know: the change stays queued.
      if (verdict === undefined) continue;
      if (
        verdict.status !== "applied" && verdict.status !== "stale" &&
        verdict.status !== "rejected"
      ) {
        continue;
      }
      if (verdict.status === "rejected") {
        rejections.push({
          change,
          code: (verdict as PushResult).code ?? "rejected",
          message: (verdict as PushResult).message ?? "The server rejected the change",
        });
      } else {
        acknowledged.push(change);
      }
    }
    if (rejections.length > 0) {
      await this.#db.rejectDirtyRows(rejections);
      const rejected = await this.#db.getRejectedRows();
      const keys = new Set(rejections.map((r) => `${r.change.table}\u0000${r.change.id}`));
      this.dispatchEvent(
        new CustomEvent<RejectedRow[]>("rejected", {
          detail: rejected.filter((r) => keys.has(`${r.table}\u0000${r.id}`)),
        }),
      );
    }
    // Counted exactly once the sync ends; meanwhile, what this batch settled.
    this.#update({
      pending: Math.max(0, this.#status.pending - acknowledged.length - rejections.length),
      rejected: this.#status.rejected + rejections.length,
    });
    return acknowledged;
  }

  async #fetch(): Promise<void> {
    const maxPages = this.#options.maxFetchPages ?? 10_000;
    for (let page = 0; page < maxPages; page++) {
      const result = await this.#options.onFetch(this.#db, await this.#db.getCursors());
      const more = result === true ||
        (typeof result === "object" && result !== null && result.hasMore === true);
      if (!more) return;
    }
  }

  async #counts(): Promise<{ pending: number; rejected: number }> {
    const [pending, rejected] = await Promise.all([
      this.#db.countDirtyRows(),
      this.#db.countRejectedRows(),
    ]);
    return { pending, rejected };
  }

  // Counts the outbox once for a burst of writes.
  #recount(): void {
    if (this.#recounting) return;
    this.#recounting = true;
    setTimeout(() => {
      this.#recounting = false;
      if (this.#running !== undefined) return; // the sync counts when it ends
      this.#db.countDirtyRows().then(
        (pending) => this.#update({ pending }),
        () => undefined,
      );
    }, 0);
  }

  #retryDelay(): number {
    const first = this.#options.retryDelay ?? 1_000;
    const cap = this.#options.maxRetryDelay ?? 60_000;
    const exponential = Math.min(cap, first * 2 ** Math.min(this.#failures - 1, 30));
    const random = this.#options.random ?? Math.random;
    // "Equal jitter": at least half the delay, so retries spread without collapsing to zero.
    return exponential / 2 + random() * (exponential / 2);
  }

  #schedule(delay: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.syncNow().catch(() => undefined); // reported through status; retried by #sync
    }, delay);
    this.#update({ nextSyncAt: Date.now() + delay });
  }

  #update(change: Partial<SyncStatus>): void {
    const next = { ...this.#status, ...change };
    const same = (Object.keys(next) as (keyof SyncStatus)[]).every((key) =>
      Object.is(next[key], this.#status[key])
    );
    if (same) return;
    this.#status = next;
    this.dispatchEvent(new CustomEvent<SyncStatus>("status", { detail: next }));
  }
}

// Batches whose acknowledgements are written together.
const ACK_BATCHES = 10;

// A promise whose rejection is reported where it is awaited, and not as
// unhandled if a failure before that point ends the sync first.
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}
