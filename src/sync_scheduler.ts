/**
 * When a sync manager's next sync runs: its scheduling alone, as Replicache's
 * connection loop keeps its own apart from what a push or pull does.
 *
 * - One run at a time. `syncNow()` during a run joins it, unless something
 *   was written since it started ({@linkcode SyncScheduler.noteWrite}): then
 *   it waits for that run and starts exactly one more, which every call made
 *   meanwhile shares. So a resolved `syncNow()` always covers the writes made
 *   before it was called, and a burst of calls costs one extra run, not one
 *   each.
 * - While started, the next run is due `interval` after a success and
 *   `retryDelay(failures)` after a failure: a failed run is retried on its own,
 *   whether or not anything is written meanwhile.
 * - With `writeDelay`, a write while started brings the next run forward to
 *   `writeDelay` after it, and writes made during a run lead to one more run
 *   `writeDelay` after it ends: a burst of writes goes out together. Not
 *   while failing: a failed run keeps its backoff, whatever is written.
 * - `start()` runs at once; `stop()` cancels the timer and waits for a run.
 *
 * It knows nothing of outboxes or HTTP: it runs an injected `run()`, which
 * rejects when the sync failed, and reads time through an injected clock.
 *
 * @example
 * ```ts
 * const scheduler = new SyncScheduler({
 *   run: () => syncOnce(),
 *   clock: systemClock,
 *   interval: 300_000,
 *   retryDelay: (failures) => backoffDelay(failures, options),
 *   onScheduled: (at) => console.log("next sync", at),
 * });
 * scheduler.start();
 * await scheduler.syncNow();
 * await scheduler.stop();
 * ```
 *
 * @module
 */

import type { SyncClock } from "./sync_clock.ts";

/** Options of {@linkcode SyncScheduler}. */
export interface SyncSchedulerOptions {
  /** One sync; rejects when it failed. */
  readonly run: () => Promise<void>;
  /**
   * Called at once when a run ended (`error` set when it failed), before the
   * next run is scheduled: where the outcome is reported, in the same turn as
   * the schedule, so whoever awaits that report sees the next due time.
   */
  readonly onSettled?: (error: unknown, failed: boolean) => void;
  /** Called with the time the next run is due, or `undefined` when none is (stopped). */
  readonly onScheduled?: (at: number | undefined) => void;
  /** Wall time and timers. */
  readonly clock: SyncClock;
  /** Time from a successful run to the next, ms. */
  readonly interval: number;
  /** Time from the `failures`-th failed run in a row to the next attempt, ms. */
  readonly retryDelay: (failures: number) => number;
  /** Time from a write to the run that sends it, ms; without it, writes wait for `interval`. */
  readonly writeDelay?: number;
}

/** Runs one sync at a time, now or when due. */
export class SyncScheduler {
  readonly #options: SyncSchedulerOptions;
  #started = false;
  #running: Promise<void> | undefined;
  #followUp: Promise<void> | undefined;
  #timer: unknown;
  #dueAt: number | undefined;
  #failures = 0;
  // Writes so far, and how many there had been when the running sync started.
  #writes = 0;
  #writesBeforeRun = 0;

  /** Creates a stopped scheduler. */
  constructor(options: SyncSchedulerOptions) {
    this.#options = options;
  }

  /** True between `start()` and `stop()`. */
  get started(): boolean {
    return this.#started;
  }

  /** True while a run is going on. */
  get running(): boolean {
    return this.#running !== undefined;
  }

  /** Runs now, then keeps running when due. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#schedule(0);
  }

  /** Cancels the next run and waits for the one going on (its error is not thrown). */
  async stop(): Promise<void> {
    this.#started = false;
    this.#cancelTimer();
    this.#options.onScheduled?.(undefined);
    await this.#running?.catch(() => undefined);
  }

  /** Tells the scheduler something was written: a run that started before it does not cover it. */
  noteWrite(): void {
    this.#writes += 1;
    const { writeDelay, clock } = this.#options;
    if (!this.#started || writeDelay === undefined || this.#failures > 0) return;
    // A run going on schedules the next when it ends.
    if (this.#running !== undefined) return;
    if (this.#dueAt === undefined || this.#dueAt > clock.now() + writeDelay) {
      this.#schedule(writeDelay);
    }
  }

  /** Runs now, or joins the run going on (see the module doc); rejects with the run's error. */
  syncNow(): Promise<void> {
    if (this.#running !== undefined) {
      if (this.#writes === this.#writesBeforeRun) return this.#running;
      this.#followUp ??= this.#running.catch(() => undefined).then(() => {
        this.#followUp = undefined;
        return this.syncNow();
      });
      return this.#followUp;
    }
    this.#cancelTimer();
    this.#writesBeforeRun = this.#writes;
    const run = this.#cycle().finally(() => {
      this.#running = undefined;
    });
    this.#running = run;
    return run;
  }

  // One run, its report, and the schedule of the next, in that order.
  async #cycle(): Promise<void> {
    const { run, onSettled, interval, retryDelay } = this.#options;
    try {
      await run();
    } catch (error) {
      this.#failures += 1;
      onSettled?.(error, true);
      if (this.#started) this.#schedule(retryDelay(this.#failures));
      throw error;
    }
    this.#failures = 0;
    onSettled?.(undefined, false);
    const { writeDelay } = this.#options;
    const written = this.#writes !== this.#writesBeforeRun;
    if (this.#started) {
      this.#schedule(written && writeDelay !== undefined ? writeDelay : interval);
    }
  }

  #schedule(delay: number): void {
    const { clock } = this.#options;
    this.#cancelTimer();
    this.#dueAt = clock.now() + delay;
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined;
      this.#dueAt = undefined;
      // Reported through onSettled; retried by the schedule that follows it.
      this.syncNow().catch(() => undefined);
    }, delay);
    this.#options.onScheduled?.(clock.now() + delay);
  }

  #cancelTimer(): void {
    if (this.#timer !== undefined) this.#options.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dueAt = undefined;
  }
}
