/**
 * The API reference: the OpenAPI document of the REST routes at `<prefix>/openapi.json`, the AsyncAPI
 * document of the socket events at `<prefix>/asyncapi.json`, and an interactive page at `/docs` (Swagger
 * UI, served from the swagger-ui-dist package: no CDN, so it works without internet access).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { RequestHandler, Response } from 'express';
import { authApi } from './auth.js';
import { channelApi } from './channels.js';
import { dmApi } from './dms.js';
import { buildOpenApiDocument, object, type DocumentInfo, type JsonSchema, type RouteDoc, type RouteGroup } from './openapi.js';
import { searchApi } from './search.js';
import { workspaceApi } from './workspaces.js';

/** The probes (shared/health.ts), outside the API prefix. */
const healthApi: RouteDoc[] = [
  {
    method: 'get',
    path: '/health/live',
    summary: 'Liveness',
    description: 'The process answers.',
    auth: false,
    responses: { 200: { description: 'alive', schema: object({ status: { const: 'ok' } }) } },
    errors: [],
  },
  {
    method: 'get',
    path: '/health/ready',
    summary: 'Readiness',
    description: 'PostgreSQL and Redis both answer (within 2 s each); else 503 with `details: {postgres, redis}`, each `ok` or `down`.',
    auth: false,
    responses: { 200: { description: 'ready', schema: object({ status: { const: 'ok' } }) } },
    errors: [],
  },
];

/** Every REST route the app serves, as the reference shows it: the API's under `prefix`, the probes at the root. */
export const routeGroups = (prefix: string): RouteGroup[] => [
  { prefix: '', routes: healthApi },
  { prefix, routes: [...authApi, ...workspaceApi, ...channelApi, ...dmApi, ...searchApi] },
];

export const DOCS_PATH = '/docs';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

const info = (description: string): DocumentInfo => ({ title: 'slack-style-backend', version, description });

export function openApiDocument(prefix: string): JsonSchema {
  return buildOpenApiDocument(
    routeGroups(prefix),
    info(
      `Multi-tenant workspaces, channels, DMs and messages over REST. Real time is Socket.IO: its events are in the [AsyncAPI 3 document](${prefix}/asyncapi.json). Every error is \`{error: {code, message, details?}}\`; the reference with every rule is docs/API.md.`,
    ),
  );
}

export async function asyncApiDocument(): Promise<JsonSchema> {
  // Imported when first asked for: the socket server imports the HTTP app (TRUST_PROXY), which mounts
  // this module, so a static import would be a cycle that leaves one of them half-initialised.
  const { buildAsyncApiDocument } = await import('../realtime/asyncapi.js');
  return buildAsyncApiDocument(info('The Socket.IO events of a front node, both ways, with their acks. REST: /docs.'));
}

/** The page's own script, served as a file: Helmet's CSP allows scripts from this origin only. */
const initScript = (prefix: string) => `window.ui = SwaggerUIBundle({
  url: ${JSON.stringify(`${prefix}/openapi.json`)},
  dom_id: '#swagger-ui',
  deepLinking: true,
  // Swagger UI would otherwise send the document to validator.swagger.io for a badge.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  plugins: [SwaggerUIBundle.plugins.DownloadUrl],
  layout: 'BaseLayout',
  docExpansion: 'list',
});
`;

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>slack-style-backend API reference</title>
  <link rel="stylesheet" href="${DOCS_PATH}/swagger-ui.css">
  <link rel="icon" type="image/png" href="${DOCS_PATH}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="${DOCS_PATH}/swagger-ui-bundle.js"></script>
  <script src="${DOCS_PATH}/init.js"></script>
</body>
</html>
`;

/** The files of swagger-ui-dist the page uses, and no other (its package also has a demo page). */
const ASSETS = ['swagger-ui.css', 'swagger-ui-bundle.js', 'favicon-32x32.png'];
const assetDir = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));

/**
 * Serves the documents and the page. A middleware rather than routes: they document the API and are not
 * part of it (like /metrics), so the route listing that the isolation matrix and the fuzz suite cover
 * (test/support/routes.ts) stays the JSON API, which is exactly what the OpenAPI document describes.
 */
export function apiDocs(prefix: string): RequestHandler {
  let openApi: string | undefined;
  let asyncApi: Promise<string> | undefined;
  const init = initScript(prefix);
  const json = (res: Response, body: string) => res.type('application/json').set('Cache-Control', 'no-cache').send(body);
  return (req, res, next) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return next();
    switch (req.path) {
      case `${prefix}/openapi.json`:
        openApi ??= JSON.stringify(openApiDocument(prefix));
        return json(res, openApi);
      case `${prefix}/asyncapi.json`:
        asyncApi ??= asyncApiDocument().then((doc) => JSON.stringify(doc));
        return void asyncApi.then((body) => json(res, body), next);
      case DOCS_PATH:
      case `${DOCS_PATH}/`:
        return res.type('html').send(PAGE);
      case `${DOCS_PATH}/init.js`:
        return res.type('application/javascript').send(init);
    }
    const asset = req.path.startsWith(`${DOCS_PATH}/`) ? req.path.slice(DOCS_PATH.length + 1) : undefined;
    if (asset !== undefined && ASSETS.includes(asset)) return res.sendFile(join(assetDir, asset), { maxAge: '1d' });
    next();
  };
}
