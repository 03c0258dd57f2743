import type { ErrorRequestHandler, RequestHandler } from 'express';
import helmet from 'helmet';
import { IncomingMessage, STATUS_CODES, ServerResponse, type Server as HttpServer } from 'node:http';
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { NotFoundError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { rateLimitHeaders, toClientError } from '../errors.js';

export const notFoundRoute: RequestHandler = (req, _res, next) => next(new NotFoundError(`Route ${req.method} ${req.path}`));

/** The one place an error becomes an HTTP response. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    // The request's own logger (pino-http's, with its request id) when there is one.
    const appError = toClientError(err, (req as { log?: Logger }).log ?? logger, { method: req.method, path: req.path });
    if (res.headersSent) return;
    for (const [name, value] of Object.entries(rateLimitHeaders(appError))) res.setHeader(name, value);
    res.status(appError.status).json({ error: appError.toBody() });
  };
}

/**
 * Requests Node's HTTP parser refuses before Express sees them (request line and headers over 16 KB, not
 * HTTP at all, too slow to arrive) get the contract's error body too, written on the socket, which is then
 * closed: Node's own answer has no body. As Node does, nothing is written where a response has begun.
 */
export function answerParserErrors(server: HttpServer, logger: Logger): void {
  const securityHeaders = helmetHeaders();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A connection error (a reset, a broken pipe) is no request to answer.
    const refused = typeof err.code === 'string' && (err.code.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT');
    // Node's own check (lib/_http_server.js): the response in flight on a keep-alive connection, if any.
    const inFlight = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!refused || !socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const appError = toClientError(err, logger, { where: 'HTTP parser', parserError: err.code });
    const body = JSON.stringify({ error: appError.toBody() });
    const head = [
      `HTTP/1.1 ${appError.status} ${STATUS_CODES[appError.status]}`,
      'Content-Type: application/json; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
      ...securityHeaders,
      'Connection: close',
    ];
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
  });
}

/** The headers helmet's defaults set on every answer of the app, as header lines, read off helmet itself. */
function helmetHeaders(): string[] {
  const req = new IncomingMessage(new Socket());
  const res = new ServerResponse(req);
  helmet()(req, res, () => {});
  return Object.entries(res.getHeaders()).map(([name, value]) => `${name}: ${String(value)}`);
}
