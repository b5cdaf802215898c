/**
 * Row values on the wire. JSON carries every column kind as is except blobs,
 * which travel as base64 strings; the column kinds of the schema say which
 * values to convert, so nothing else is guessed.
 *
 * @module
 */

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

/** Decodes base64 to bytes. */
export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Decodes SQLite's `hex()` text to bytes. */
export function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
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
