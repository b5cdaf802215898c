/**
 * Row values on the wire. JSON carries every column kind as is except blobs,
 * which travel as base64 strings; the column kinds of the schema say which
 * values to convert, so nothing else is guessed.
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
 * four) to bytes, in one pass over the text and without a regular
 * expression, so any length decodes in linear time and bounded stack.
 *
 * @throws {SyncError} `invalid_value` for any other text.
 */
export function fromBase64(text: string): Uint8Array {
  const invalid = (why: string) =>
    new SyncError("invalid_value", `Invalid base64 blob: ${why}`, {
      details: { length: text.length },
    });
  if (text.length % 4 !== 0) throw invalid("its length is not a multiple of 4");
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const bytes = new Uint8Array((text.length / 4) * 3 - padding);
  let out = 0;
  for (let i = 0; i < text.length; i += 4) {
    const last = i + 4 === text.length;
    let group = 0;
    for (let j = 0; j < 4; j++) {
      const code = text.charCodeAt(i + j);
      if (last && j >= 4 - padding) {
        group <<= 6;
        continue;
      }
      const value = code < 128 ? BASE64_VALUES[code]! : -1;
      if (value < 0) throw invalid(`unexpected character at ${i + j}`);
      group = (group << 6) | value;
    }
    bytes[out++] = group >> 16;
    if (out < bytes.length) bytes[out++] = (group >> 8) & 0xff;
    if (out < bytes.length) bytes[out++] = group & 0xff;
  }
  return bytes;
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
