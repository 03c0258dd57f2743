import net from 'node:net';

/** An unused TCP port on 127.0.0.1, as chosen by the kernel. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

// Failures where nothing answered at all. Anything else (bad password, TLS refused, unknown database) means a
// server is there and misconfigured, which must be reported rather than papered over with a local fallback.
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOENT', // Unix socket path that does not exist.
]);

export function isUnreachable(err: unknown): boolean {
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.every(isUnreachable);
  const e = err as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code === 'string' && UNREACHABLE_CODES.has(e.code)) return true;
  // node-postgres reports its own connect timeout with this message and no code.
  return e?.message === 'timeout expired';
}

/** A one-line description of an error, for messages meant for people. */
export function errorText(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown } | null;
  const text = (typeof e?.message === 'string' && e.message) || (typeof e?.code === 'string' && e.code) || String(err);
  return text.replace(/\s+/g, ' ').trim();
}
