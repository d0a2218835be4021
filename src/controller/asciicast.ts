import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

/** Largest recording; past it the session goes on unrecorded and the file says so. */
export const MAX_RECORDING_BYTES = 64 * 1024 * 1024;

/**
 * An asciicast v2 recording (https://docs.asciinema.org/manual/asciicast/v2/): a JSON header
 * line, then one `[seconds, "o"|"i"|"r", data]` line per event. Input is recorded too, so the
 * review shows what the operator typed, not only what the terminal echoed. Bytes are decoded
 * as UTF-8 per stream with a decoder that keeps a split character for the next chunk.
 */
export class AsciicastWriter {
  private fd: number | undefined;
  private bytes = 0;
  private readonly started: number;
  private readonly decoders = { o: new StringDecoder('utf8'), i: new StringDecoder('utf8') };
  truncated = false;

  constructor(
    readonly path: string,
    header: { width: number; height: number; title: string; now?: number },
    private readonly limit = MAX_RECORDING_BYTES,
  ) {
    this.started = header.now ?? Date.now();
    // 'wx': a session id is new; never append to (or follow a link into) an existing file.
    this.fd = openSync(path, 'wx', 0o600);
    this.line(
      JSON.stringify({
        version: 2,
        width: header.width,
        height: header.height,
        timestamp: Math.floor(this.started / 1000),
        title: header.title,
        env: { TERM: 'xterm-256color' },
      }),
    );
  }

  output(data: Buffer, now = Date.now()): void {
    this.event('o', this.decoders.o.write(data), now);
  }

  input(data: Buffer, now = Date.now()): void {
    this.event('i', this.decoders.i.write(data), now);
  }

  resize(cols: number, rows: number, now = Date.now()): void {
    this.event('r', `${cols}x${rows}`, now);
  }

  /** Flushes to disk and closes; the recording is complete once the audit says the session ended. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }

  private event(kind: 'o' | 'i' | 'r', text: string, now: number): void {
    if (this.fd === undefined || this.truncated || text === '') return;
    const line = JSON.stringify([Number(((now - this.started) / 1000).toFixed(6)), kind, text]);
    if (this.bytes + line.length > this.limit) {
      this.truncated = true;
      this.line(
        JSON.stringify([
          Number(((now - this.started) / 1000).toFixed(6)),
          'm',
          'recording size limit reached',
        ]),
      );
      return;
    }
    this.line(line);
  }

  private line(s: string): void {
    if (this.fd === undefined) return;
    const b = Buffer.from(`${s}\n`);
    let off = 0;
    while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
    this.bytes += b.length;
  }
}
