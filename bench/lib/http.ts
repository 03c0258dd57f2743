import http from 'node:http';
import { nowUs } from './clock.js';

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

export interface TimedResponse {
  status: number;
  body: any;
  /** Request start to the last byte of the body, µs. */
  us: number;
}

/** A GET over a keep-alive connection, timed from just before the request to the end of the body. */
export function timedGet(url: string, token: string): Promise<TimedResponse> {
  return new Promise((resolve, reject) => {
    const start = nowUs();
    const req = http.get(url, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const us = nowUs() - start;
        const text = Buffer.concat(chunks).toString();
        let body: any = text;
        try {
          body = JSON.parse(text);
        } catch {
          // left as text
        }
        resolve({ status: res.statusCode ?? 0, body, us });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

export function closeHttpAgent(): void {
  agent.destroy();
}
