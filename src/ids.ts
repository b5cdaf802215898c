/**
 * Row ids: UUIDv7 (RFC 9562), made on the client. The first 48 bits are the
 * Unix time in ms, so ids sort by creation time and index well; the 12 bits
 * after the version are a counter (RFC 9562 §6.2, method 1) so ids made within
 * one millisecond still sort in creation order; the remaining 62 bits are
 * random, so two devices never collide.
 *
 * @module
 */

const HEX_CODES: readonly number[] = Array.from("0123456789abcdef", (c) => c.charCodeAt(0));
const MAX_SEQUENCE = 0xfff;
// Random bytes are drawn in blocks: one getRandomValues call per id costs more
// than the rest of the id together on some runtimes.
const POOL_SIZE = 4096;
const pool = new Uint8Array(POOL_SIZE);
let poolOffset = POOL_SIZE;

let lastMs = -1;
let sequence = 0;

/**
 * A new UUIDv7, greater than every id this module made before.
 *
 * @param ms the timestamp to embed (defaults to `Date.now()`)
 * @example
 * ```ts
 * uuidv7(); // "019ac3f2-5b1e-7c4d-9a2b-3f4e5d6c7b8a"
 * ```
 */
export function uuidv7(ms: number = Date.now()): string {
  if (poolOffset + 16 > POOL_SIZE) {
    crypto.getRandomValues(pool);
    poolOffset = 0;
  }
  const bytes = pool.slice(poolOffset, poolOffset + 16);
  poolOffset += 16;
  let time = Math.max(0, Math.floor(ms));
  if (time > lastMs) {
    // a fresh millisecond: seed the counter in its lower half to leave room to count
    sequence = bytes[6]! & 0x07;
  } else {
    time = lastMs;
    sequence += 1;
    if (sequence > MAX_SEQUENCE) {
      time += 1;
      sequence = 0;
    }
  }
  lastMs = time;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = time % 256;
    time = Math.floor(time / 256);
  }
  bytes[6] = 0x70 | (sequence >> 8);
  bytes[7] = sequence & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  // Built from character codes in one call: the result is a flat string, not
  // a chain of concatenations kept alive by every id a caller holds.
  const codes = new Array<number>(36);
  let at = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) codes[at++] = 45; // "-"
    codes[at++] = HEX_CODES[bytes[i]! >> 4]!;
    codes[at++] = HEX_CODES[bytes[i]! & 15]!;
  }
  return String.fromCharCode(...codes);
}
