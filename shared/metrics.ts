import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Registry, collectDefaultMetrics } from 'prom-client';

/**
 * One Prometheus registry per node instance (never prom-client's global one), so several nodes in one
 * process (the tests) keep their own series. The process default metrics are registered on it.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * `GET /metrics`: the registry in Prometheus text format. With a token, only to `Authorization: Bearer
 * <token>` (401 otherwise); without one, open (keep the port private).
 */
export function metricsHandler(registry: Registry, token: string | undefined) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (token) {
      const header = req.headers.authorization ?? '';
      const given = header.startsWith('Bearer ') ? header.slice(7) : '';
      if (!sameToken(given, token)) {
        res.statusCode = 401;
        res.setHeader('WWW-Authenticate', 'Bearer');
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'A valid metrics token is required' } }));
        return;
      }
    }
    const body = await registry.metrics();
    res.statusCode = 200;
    res.setHeader('Content-Type', registry.contentType);
    res.end(body);
  };
}
