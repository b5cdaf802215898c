/**
 * Reads a request body as JSON, for the sync endpoint: at most `maxBytes`
 * (413 beyond, decided from `Content-Length` when it is sent, before reading
 * anything; a body of a declared length is then read in one go, one without
 * chunk by chunk up to the limit), UTF-8 only, parsed once. Every way a body
 * can be broken — a connection that fails mid-body, a malformed chunked encoding, bytes that
 * are not UTF-8, text that is not JSON, JSON nested too deep for the parser —
 * is an answer (400 or 413), never an exception for the caller.
 *
 * Hono's `bodyLimit` trusts `Content-Length` the same way but reads a chunked
 * body outside any error handling (a broken one becomes a 500) and hands the
 * bytes on to be read a second time; this reads them once.
 *
 * @module
 */

/**
 * A parsed body, or the error answer to give instead (its status is the one
 * `ERROR_STATUS` gives its code: 400 or 413).
 */
export type BodyResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly code: "malformed" | "too_large"; readonly message: string };

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads `request`'s body, at most `maxBytes` of it, and parses it as JSON.
 *
 * @example
 * ```ts
 * const body = await readJsonBody(c.req.raw, 8 * 1024 * 1024);
 * if (!body.ok) return fail(c, body.code, body.message);
 * ```
 */
export async function readJsonBody(request: Request, maxBytes: number): Promise<BodyResult> {
  const tooLarge = {
    ok: false,
    code: "too_large",
    message: `The request body is larger than ${maxBytes} bytes`,
  } as const;
  const malformed = (message: string) => ({ ok: false, code: "malformed", message }) as const;

  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) return tooLarge;
  // A declared length within the limit: the runtime reads the body in one
  // go (and stops at that length), cheaper than chunk by chunk — on Node,
  // @hono/node-server then reads it straight off the socket, without making
  // a web stream of it (which reading `request.body` would).
  let bytes: Uint8Array | "too_large" | undefined;
  if (declared !== null && /^\d+$/.test(declared)) {
    bytes = await readWhole(request);
  } else {
    if (request.body === null) return malformed("The request has no body");
    bytes = await readChunks(request.body, maxBytes);
  }
  // (An in-process Request may carry a header that understates its body.)
  if (bytes === "too_large" || (bytes !== undefined && bytes.byteLength > maxBytes)) {
    return tooLarge;
  }
  if (bytes === undefined) return malformed("The request body could not be read");

  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return malformed("The request body is not UTF-8");
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return malformed("The request body is not valid JSON");
  }
}

async function readWhole(request: Request): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await request.arrayBuffer());
  } catch {
    return undefined;
  }
}

// The body chunk by chunk, refused once it passes `maxBytes`.
async function readChunks(
  body: ReadableStream<Uint8Array>,
  maxBytes: number,
): Promise<Uint8Array | "too_large" | undefined> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        reader.cancel().catch(() => undefined);
        return "too_large";
      }
      chunks.push(value);
    }
  } catch {
    return undefined;
  }
  return chunks.length === 1 ? chunks[0]! : concat(chunks, size);
}

function concat(chunks: readonly Uint8Array[], size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
