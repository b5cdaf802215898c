/**
 * Row ids: UUIDv7 (RFC 9562), made on the client. The first 48 bits are the
 * Unix time in ms, so ids sort by creation time and index well; the remaining
 * 74 bits are random, so two devices never collide.
 *
 * @module
 */

const HEX: readonly string[] = Array.from(
  { length: 256 },
  (_, i) => i.toString(16).padStart(2, "0"),
);

/**
 * A new UUIDv7.
 *
 * @param ms the timestamp to embed (defaults to `Date.now()`)
 * @example
 * ```ts
 * uuidv7(); // "019ac3f2-5b1e-7c4d-9a2b-3f4e5d6c7b8a"
 * ```
 */
export function uuidv7(ms: number = Date.now()): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let time = Math.max(0, Math.floor(ms));
  for (let i = 5; i >= 0; i--) {
    bytes[i] = time % 256;
    time = Math.floor(time / 256);
  }
  bytes[6] = 0x70 | (bytes[6]! & 0x0f);
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  let out = "";
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) out += "-";
    out += HEX[bytes[i]!];
  }
  return out;
}
