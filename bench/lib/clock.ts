/**
 * Timestamps that every process on this machine shares: process.hrtime reads CLOCK_MONOTONIC, which is
 * system-wide on Linux, so a time taken in one client process can be subtracted from one taken in another.
 */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export function nowMs(): number {
  return nowUs() / 1000;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
