/**
 * The value codec: blobs between their three forms. JSON carries every
 * column kind as is except blobs, which travel as base64 strings on the wire
 * and as hex text into and out of SQLite (JSON arguments and results have no
 * bytes; SQLite has `hex`/`unhex` but no base64). The column kinds of the
 * schema say which values to convert, so nothing else is guessed.
 *
 * The server converts between base64 and hex directly, without building the
 * bytes; the client holds bytes, which is what its API hands out.
 *
 * Every decoder reads its input in one pass, without a regular expression,
 * so any length decodes in linear time and bounded stack.
 *
 * @module
 */

import { SyncError } from "./errors.ts";
import type { ColumnInfo, TableInfo } from "./table_info.ts";

/** Encodes bytes as base64. */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  }
  return btoa(binary);
}

// The value of each base64 character code (standard alphabet), -1 for others.
const BASE64_VALUES: Int8Array = (() => {
  const values = new Int8Array(128).fill(-1);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i;
  return values;
})();

/**
 * Decodes canonical base64 (standard alphabet, `=` padding to a multiple of
 * four) to bytes.
 *
 * @throws {SyncError} `invalid_value` for any other text.
 */
export function fromBase64(text: string): Uint8Array {
  const bytes = new Uint8Array(base64Length(text));
  decodeBase64(text, (index, byte) => {
    bytes[index] = byte;
  });
  return bytes;
}

/**
 * Decodes canonical base64 straight to SQLite's hex text (lowercase).
 *
 * @throws {SyncError} `invalid_value` for text that is not canonical base64.
 */
export function base64ToHex(text: string): string {
  const out = new Uint8Array(base64Length(text) * 2);
  decodeBase64(text, (index, byte) => {
    const pair = HEX_PAIRS[byte]!;
    out[2 * index] = pair >> 8;
    out[2 * index + 1] = pair & 0xff;
  });
  return ascii.decode(out);
}

/** Encodes hex text (SQLite's `hex()`, any case) straight to base64. */
export function hexToBase64(hex: string): string {
  const length = hex.length >> 1;
  const out = new Uint8Array(Math.ceil(length / 3) * 4);
  let o = 0;
  const byteAt = (i: number) => {
    const high = HEX_VALUES[hex.charCodeAt(2 * i)] ?? -1;
    const low = HEX_VALUES[hex.charCodeAt(2 * i + 1)] ?? -1;
    if (high < 0 || low < 0) throw new RangeError(`Invalid hex digit near ${2 * i}`);
    return (high << 4) | low;
  };
  for (let i = 0; i < length; i += 3) {
    const left = length - i;
    const group = (byteAt(i) << 16) | (left > 1 ? byteAt(i + 1) << 8 : 0) |
      (left > 2 ? byteAt(i + 2) : 0);
    out[o++] = BASE64_CODES[group >> 18]!;
    out[o++] = BASE64_CODES[(group >> 12) & 63]!;
    out[o++] = left > 1 ? BASE64_CODES[(group >> 6) & 63]! : PAD;
    out[o++] = left > 2 ? BASE64_CODES[group & 63]! : PAD;
  }
  return ascii.decode(out);
}

// The number of bytes `text` decodes to, if its length can be base64.
function base64Length(text: string): number {
  if (text.length % 4 !== 0) throw invalidBase64(text, "its length is not a multiple of 4");
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  return (text.length / 4) * 3 - padding;
}

// Decodes canonical base64, handing each byte to `write` with its index.
function decodeBase64(text: string, write: (index: number, byte: number) => void): void {
  const length = base64Length(text);
  const padding = (text.length / 4) * 3 - length;
  let out = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    let group = 0;
    for (let j = 0; j < 4; j++) {
      if (last && j >= 4 - padding) {
        group <<= 6;
        continue;
      }
      const code = text.charCodeAt(i + j);
      const value = code < 128 ? BASE64_VALUES[code]! : -1;
      if (value < 0) throw invalidBase64(text, `unexpected character at ${i + j}`);
      group = (group << 6) | value;
    }
    write(out++, group >> 16);
    if (out < length) write(out++, (group >> 8) & 0xff);
    if (out < length) write(out++, group & 0xff);
  }
}

function invalidBase64(text: string, why: string): SyncError {
  return new SyncError("invalid_value", `Invalid base64 blob: ${why}`, {
    details: { length: text.length },
  });
}

const BASE64_CODES: Uint8Array = new TextEncoder().encode(
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
);
const PAD = "=".charCodeAt(0);

// The two ASCII hex digits of every byte value, as character codes.
const HEX_PAIRS: Uint16Array = (() => {
  const digits = "0123456789abcdef";
  const pairs = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    pairs[i] = (digits.charCodeAt(i >> 4) << 8) | digits.charCodeAt(i & 15);
  }
  return pairs;
})();
const ascii = new TextDecoder();

/** Bytes as lowercase hex text, built natively (a blob can be megabytes). */
export function toHex(bytes: Uint8Array): string {
  const out = new Uint8Array(bytes.length * 2);
  for (let i = 0; i < bytes.length; i++) {
    const pair = HEX_PAIRS[bytes[i]!]!;
    out[2 * i] = pair >> 8;
    out[2 * i + 1] = pair & 0xff;
  }
  return ascii.decode(out);
}

// The value of each hex digit's character code, -1 for others.
const HEX_VALUES: Int8Array = (() => {
  const values = new Int8Array(128).fill(-1);
  for (let i = 0; i < 16; i++) {
    values["0123456789abcdef".charCodeAt(i)] = i;
    values["0123456789ABCDEF".charCodeAt(i)] = i;
  }
  return values;
})();

/** Decodes SQLite's `hex()` text (or any hex) to bytes. */
export function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length >> 1);
  for (let i = 0; i < bytes.length; i++) {
    const high = HEX_VALUES[hex.charCodeAt(2 * i)] ?? -1;
    const low = HEX_VALUES[hex.charCodeAt(2 * i + 1)] ?? -1;
    if (high < 0 || low < 0) throw new RangeError(`Invalid hex digit near ${2 * i}`);
    bytes[i] = (high << 4) | low;
  }
  return bytes;
}

/** A row's data as it goes on the wire: blobs become base64. */
export function dataToWire(
  info: TableInfo,
  data: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  return convertBlobs(info, data, (value) => value instanceof Uint8Array ? toBase64(value) : value);
}

/** A row's data as it comes off the wire: base64 blobs become bytes. */
export function dataFromWire(
  info: TableInfo,
  data: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  return convertBlobs(info, data, (value) => typeof value === "string" ? fromBase64(value) : value);
}

const blobColumns = new WeakMap<TableInfo, ColumnInfo[]>();

/** The blob columns of a table (cached). */
export function blobColumnsOf(info: TableInfo): readonly ColumnInfo[] {
  let blobs = blobColumns.get(info);
  if (blobs === undefined) {
    blobColumns.set(info, blobs = info.columns.filter((c) => c.kind === "blob"));
  }
  return blobs;
}

// Applies `convert` to the blob columns of `data`; tables without blobs pass through.
function convertBlobs(
  info: TableInfo,
  data: Readonly<Record<string, unknown>>,
  convert: (value: unknown) => unknown,
): Record<string, unknown> {
  const blobs = blobColumnsOf(info);
  if (blobs.length === 0) return data as Record<string, unknown>;
  const out: Record<string, unknown> = { ...data };
  for (const column of blobs) {
    if (column.name in out) out[column.name] = convert(out[column.name]);
  }
  return out;
}
