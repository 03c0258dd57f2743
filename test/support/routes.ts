/**
 * The REST routes a front node serves, read from its Express router, so that suites that must cover every
 * route (the isolation matrix, the fuzz suite) find a new one by themselves instead of trusting a list.
 */
import { createHttpApp, type HttpDeps } from '../../server/http/app.js';

export interface RouteInfo {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Full path with Express params, e.g. `/api/v1/channels/:channelId/messages`. */
  path: string;
}

interface Layer {
  rawPath?: string;
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

function walk(stack: Layer[], prefix: string, out: RouteInfo[]): void {
  for (const layer of stack) {
    if (layer.route) {
      for (const method of Object.keys(layer.route.methods)) {
        if (method === '_all') continue;
        out.push({ method: method.toUpperCase() as RouteInfo['method'], path: prefix + layer.route.path });
      }
    } else if (layer.handle?.stack) {
      // A mounted router: `app.use('/api/v1', api)` keeps its mount path as rawPath.
      const mount = typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : '';
      walk(layer.handle.stack, prefix + mount, out);
    }
  }
}

/**
 * Every route of the product's Express app (built with inert collaborators: nothing is called). Without
 * `metrics` among them the app has no `GET /metrics` (Prometheus text, behind METRICS_TOKEN, tested in
 * test/rest/observability.test.ts), which is not part of the JSON API these suites cover.
 */
export function listRoutes(): RouteInfo[] {
  const inert = { corsOrigins: [], limits: {}, tokens: {} } as unknown as HttpDeps;
  const app = createHttpApp(inert) as unknown as { router: { stack: Layer[] } };
  const out: RouteInfo[] = [];
  walk(app.router.stack, '', out);
  return out;
}
