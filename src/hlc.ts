/**
 * Hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
 *
 * A version is `<ms 19 digits>:<counter 9 digits>:<nodeId>`: fixed width, so the
 * plain string order is the clock order and SQL `>` on TEXT compares versions.
 * This is the declarative_sqlite encoding, so its clients interoperate.
 *
 * The clock never goes backwards: `now()` and `receive()` only move it forward,
 * a wall clock that jumps back is ignored until it catches up, and the database
 * persists the last issued value so a reopen continues from it. A remote version
 * more than `maxDrift` ahead of local wall time is refused with
 * `SyncError("clock_drift")` and leaves the clock untouched: adopting it would
 * poison every clock that later hears from this one. When the counter overflows
 * the clock advances its logical millisecond instead of throwing.
 *
 * @example
 * ```ts
 * const clock = createHlc({ nodeId: "device-a" });
 * const v1 = clock.now();
 * const v2 = clock.receive("0000001767225600000:000000004:device-b");
 * compareHlc(v1, v2) < 0; // true
 * ```
 *
 * @module
 */

import { SyncError } from "./errors.ts";

/** A version string: `<ms 19 digits>:<counter 9 digits>:<nodeId>`. */
export type Hlc = string;

/** The parts of a version. */
export interface HlcParts {
  /** Logical milliseconds since the Unix epoch. */
  readonly ms: number;
  /** Counter within the millisecond. */
  readonly counter: number;
  /** The node that issued the version. */
  readonly nodeId: string;
}

/** The largest counter value; one more advances the logical millisecond. */
export const MAX_COUNTER = 999_999_999;
/** Default for `maxDrift`: one minute. */
export const DEFAULT_MAX_DRIFT_MS = 60_000;

const MS_WIDTH = 19;
const COUNTER_WIDTH = 9;
/** A node id: 1–64 characters of `A–Z a–z 0–9 _ . -`. */
export const NODE_ID_PATTERN: RegExp = /^[A-Za-z0-9_.-]{1,64}$/;
/** A version: `<ms 19 digits>:<counter 9 digits>:<nodeId>`. */
export const HLC_PATTERN: RegExp = /^(\d{19}):(\d{9}):([A-Za-z0-9_.-]{1,64})$/;

/** Options of {@linkcode createHlc}. */
export interface HlcOptions {
  /** This node's id: 1–64 characters of `A–Z a–z 0–9 _ . -`. */
  nodeId: string;
  /** Wall clock in ms; injectable so tests are deterministic. Defaults to `Date.now`. */
  now?: () => number;
  /** How far (ms) a remote version may be ahead of local wall time. Defaults to 60 s. */
  maxDrift?: number;
  /** The last version this node issued or saw (e.g. persisted before a restart). */
  last?: Hlc;
}

/** A hybrid logical clock. */
export interface HlcClock {
  /** This node's id. */
  readonly nodeId: string;
  /** The most recent version issued or received. */
  readonly last: Hlc;
  /** The maximum accepted drift of remote versions, in ms. */
  readonly maxDrift: number;
  /** The wall clock this HLC reads. */
  readonly wallClock: () => number;
  /** A new version for a local event, greater than every version issued or received before. */
  now(): Hlc;
  /**
   * Merges a remote version into the clock and returns a new version greater than both.
   * @throws {SyncError} `clock_drift` when `remote` is more than `maxDrift` ahead of wall time,
   * `invalid_version` when it is malformed; the clock is untouched in both cases.
   */
  receive(remote: Hlc): Hlc;
}

/**
 * Formats version parts.
 *
 * @example
 * ```ts
 * formatHlc({ ms: 1, counter: 2, nodeId: "a" }); // "0000000000000000001:000000002:a"
 * ```
 */
export function formatHlc(parts: HlcParts): Hlc {
  const { ms, counter, nodeId } = parts;
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(`HLC milliseconds must be a non-negative safe integer, got ${ms}`);
  }
  if (!Number.isSafeInteger(counter) || counter < 0 || counter > MAX_COUNTER) {
    throw new RangeError(`HLC counter must be an integer in 0..${MAX_COUNTER}, got ${counter}`);
  }
  assertNodeId(nodeId);
  return `${String(ms).padStart(MS_WIDTH, "0")}:${
    String(counter).padStart(COUNTER_WIDTH, "0")
  }:${nodeId}`;
}

/**
 * Parses a version.
 *
 * @throws {SyncError} `invalid_version` naming the value when it is malformed.
 * @example
 * ```ts
 * parseHlc("0000001767225600000:000000004:device-b").counter; // 4
 * ```
 */
export function parseHlc(value: unknown): HlcParts {
  const match = typeof value === "string" ? HLC_PATTERN.exec(value) : null;
  if (match === null) {
    throw new SyncError(
      "invalid_version",
      `Invalid HLC version ${
        JSON.stringify(value)
      }: expected "<ms 19 digits>:<counter 9 digits>:<nodeId>"`,
      { details: { value } },
    );
  }
  const ms = Number(match[1]);
  if (!Number.isSafeInteger(ms)) {
    throw new SyncError("invalid_version", `Invalid HLC version ${value}: milliseconds overflow`, {
      details: { value },
    });
  }
  return { ms, counter: Number(match[2]), nodeId: match[3]! };
}

/** True when `value` is a well-formed version. */
export function isHlc(value: unknown): value is Hlc {
  return typeof value === "string" && HLC_PATTERN.test(value) &&
    Number.isSafeInteger(Number(value.slice(0, MS_WIDTH)));
}

/**
 * Orders two versions: negative when `a` is older, positive when newer, 0 when equal.
 * Equal to plain string comparison, which is the point of the encoding.
 */
export function compareHlc(a: Hlc, b: Hlc): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// Formats versions of one node. The formatted millisecond is cached: many
// versions share one, and number to string conversion dominates the cost of
// a version on some engines.
function versionFormatter(nodeId: string): (ms: number, counter: number) => Hlc {
  let prefixMs = -1;
  let prefix = "";
  const suffix = `:${nodeId}`;
  return (ms, counter) => {
    if (ms !== prefixMs) {
      prefixMs = ms;
      prefix = `${String(ms).padStart(MS_WIDTH, "0")}:`;
    }
    return prefix + String(counter).padStart(COUNTER_WIDTH, "0") + suffix;
  };
}

function driftError(remote: Hlc, remoteMs: number, wall: number, maxDrift: number): SyncError {
  return new SyncError(
    "clock_drift",
    `Remote version ${remote} is ${
      remoteMs - wall
    } ms ahead of local time (maxDrift ${maxDrift} ms)`,
    { details: { remote, localTime: wall, maxDrift } },
  );
}

/**
 * Creates a hybrid logical clock.
 *
 * @example
 * ```ts
 * let wall = 1_000;
 * const clock = createHlc({ nodeId: "n1", now: () => wall });
 * clock.now(); // "0000000000000001000:000000000:n1"
 * wall = 500; // the wall clock jumps back
 * clock.now(); // "0000000000000001000:000000001:n1"
 * ```
 */
export function createHlc(options: HlcOptions): HlcClock {
  const { nodeId } = options;
  assertNodeId(nodeId);
  const wallClock = options.now ?? Date.now;
  const maxDrift = options.maxDrift ?? DEFAULT_MAX_DRIFT_MS;
  if (!(maxDrift >= 0)) throw new RangeError(`maxDrift must be >= 0, got ${maxDrift}`);

  let ms = 0;
  let counter = 0;
  if (options.last !== undefined) {
    const last = parseHlc(options.last);
    ms = last.ms;
    counter = last.counter;
  }

  const format = versionFormatter(nodeId);
  // Sets the state, carrying a counter overflow into the logical millisecond.
  const advance = (nextMs: number, nextCounter: number): Hlc => {
    if (nextCounter > MAX_COUNTER) {
      nextMs += 1;
      nextCounter = 0;
    }
    ms = nextMs;
    counter = nextCounter;
    return format(ms, counter);
  };

  return {
    nodeId,
    maxDrift,
    wallClock,
    get last(): Hlc {
      return formatHlc({ ms, counter, nodeId });
    },
    now(): Hlc {
      const wall = readWall(wallClock);
      return wall > ms ? advance(wall, 0) : advance(ms, counter + 1);
    },
    receive(remote: Hlc): Hlc {
      const r = parseHlc(remote);
      const wall = readWall(wallClock);
      if (r.ms - wall > maxDrift) throw driftError(remote, r.ms, wall, maxDrift);
      const top = Math.max(wall, ms, r.ms);
      if (top === ms && top === r.ms) return advance(top, Math.max(counter, r.counter) + 1);
      if (top === ms) return advance(top, counter + 1);
      if (top === r.ms) return advance(top, r.counter + 1);
      return advance(top, 0);
    },
  };
}

function readWall(wallClock: () => number): number {
  const wall = Math.floor(wallClock());
  if (!Number.isSafeInteger(wall) || wall < 0) {
    throw new RangeError(`The wall clock returned ${wall}; expected ms since the Unix epoch`);
  }
  return wall;
}

function assertNodeId(nodeId: unknown): asserts nodeId is string {
  if (typeof nodeId !== "string" || !NODE_ID_PATTERN.test(nodeId)) {
    throw new TypeError(
      `Invalid node id ${JSON.stringify(nodeId)}: use 1-64 characters of A-Z a-z 0-9 _ . -`,
    );
  }
}

/** A random node id (16 hex characters). */
export function randomNodeId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
