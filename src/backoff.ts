/**
 * How long a sync manager waits before it tries a failed sync again, and the
 * defaults of its tuning options, resolved once.
 *
 * The delay is capped exponential backoff with "equal jitter": the n-th
 * failure in a row waits `min(maxRetryDelay, retryDelay * 2^(n-1))`, of which
 * the first half always and the second half times a random number in [0, 1).
 * Never less than half keeps retries from collapsing to zero; the random half
 * spreads clients that failed together (a server restart) so they do not come
 * back at the same instant. It is a pure function of the failure count, with
 * the random source passed in (as `denoland/std`'s `retry` computes its
 * delays), so a test pins it with `random: () => 1`.
 *
 * {@linkcode resolveManagerOptions} checks the options and fills in the
 * defaults in this one place: the pieces of the manager get plain numbers and
 * never repeat a `?? 500`.
 *
 * @example
 * ```ts
 * const options = resolveManagerOptions({ retryDelay: 1_000, random: () => 0.5 });
 * backoffDelay(1, options); // 750: half of 1 s, plus half of the other half
 * backoffDelay(3, options); // 3_000: half of 4 s, plus a quarter of it
 * ```
 *
 * @module
 */

import { type SyncClock, systemClock } from "./sync_clock.ts";

/** What {@linkcode backoffDelay} needs. */
export interface BackoffOptions {
  /** The delay after the first failure, before the jitter, ms. */
  readonly retryDelay: number;
  /** The largest delay, before the jitter, ms. */
  readonly maxRetryDelay: number;
  /** Random numbers in [0, 1). */
  readonly random: () => number;
}

/**
 * The delay before the next attempt after `failures` failures in a row
 * (1 for the first): capped exponential, with equal jitter.
 *
 * @param failures Failed attempts in a row, at least 1.
 * @returns Milliseconds, in [half, all] of the capped exponential delay.
 */
export function backoffDelay(failures: number, options: BackoffOptions): number {
  // The exponent is capped too, so a long outage cannot overflow to Infinity.
  const exponential = Math.min(
    options.maxRetryDelay,
    options.retryDelay * 2 ** Math.min(failures - 1, 30),
  );
  return exponential / 2 + options.random() * (exponential / 2);
}

/** The tuning options of a sync manager, each optional (see `ServerSyncManagerOptions`). */
export interface ManagerTuning {
  /** Time between successful syncs, ms. */
  readonly syncInterval?: number;
  /** Changes per `onSend` call. */
  readonly batchSize?: number;
  /** Batches sent before the first of them is answered. */
  readonly sendConcurrency?: number;
  /** First retry delay after a failure, ms. */
  readonly retryDelay?: number;
  /** Largest retry delay, ms. */
  readonly maxRetryDelay?: number;
  /** Most pages fetched in one sync. */
  readonly maxFetchPages?: number;
  /**
   * Time from a local write to the send of it, ms (default 25); `false`
   * sends only every `syncInterval`.
   */
  readonly sendDelay?: number | false;
  /** Random numbers in [0, 1) for the jitter. */
  readonly random?: () => number;
  /** Wall time and timers. */
  readonly clock?: SyncClock;
}

/** {@linkcode ManagerTuning} with every default filled in. */
export interface ResolvedManagerOptions extends BackoffOptions {
  /** Time between successful syncs, ms (default 300,000). */
  readonly syncInterval: number;
  /** Changes per `onSend` call (default 500). */
  readonly batchSize: number;
  /** Batches in flight at once (default 1). */
  readonly sendConcurrency: number;
  /** Most pages fetched in one sync (default 10,000). */
  readonly maxFetchPages: number;
  /** Time from a local write to its send, ms (default 25), or `false`: at the next interval. */
  readonly sendDelay: number | false;
  /** Wall time and timers (default {@linkcode systemClock}). */
  readonly clock: SyncClock;
}

// Soon enough that a write reaches the server within a few tens of
// milliseconds, late enough that the writes of one user action go together.
const DEFAULT_SEND_DELAY_MS = 25;

const POSITIVE = [
  "syncInterval",
  "batchSize",
  "sendConcurrency",
  "retryDelay",
  "maxRetryDelay",
  "maxFetchPages",
] as const;

/**
 * Checks a manager's tuning options and fills in the defaults.
 *
 * @throws {RangeError} for a number that is not positive and finite, or a
 * `sendConcurrency` that is not an integer.
 */
export function resolveManagerOptions(options: ManagerTuning): ResolvedManagerOptions {
  for (const name of POSITIVE) {
    const value = options[name];
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
      throw new RangeError(`${name} must be a positive number, got ${value}`);
    }
  }
  const { sendConcurrency, sendDelay } = options;
  if (
    sendDelay !== undefined && sendDelay !== false &&
    !(Number.isFinite(sendDelay) && sendDelay >= 0)
  ) {
    throw new RangeError(`sendDelay must be a non-negative number or false, got ${sendDelay}`);
  }
  if (sendConcurrency !== undefined && !Number.isSafeInteger(sendConcurrency)) {
    throw new RangeError(`sendConcurrency must be a positive integer, got ${sendConcurrency}`);
  }
  return {
    syncInterval: options.syncInterval ?? 300_000,
    batchSize: options.batchSize ?? 500,
    sendConcurrency: sendConcurrency ?? 1,
    retryDelay: options.retryDelay ?? 1_000,
    maxRetryDelay: options.maxRetryDelay ?? 60_000,
    maxFetchPages: options.maxFetchPages ?? 10_000,
    sendDelay: sendDelay ?? DEFAULT_SEND_DELAY_MS,
    random: options.random ?? Math.random,
    clock: options.clock ?? systemClock,
  };
}
