// Opens N HTTP/2-over-TLS connections with one open request each, then waits.
import http2 from 'node:http2';

const [port, n] = process.argv.slice(2).map(Number);
const keep: unknown[] = [];
for (let i = 0; i < (n ?? 0); i++) {
  const s = http2.connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
  const req = s.request({ ':path': '/floor', ':method': 'POST' });
  req.on('error', () => {});
  await new Promise((r) => req.once('response', r));
  keep.push(s, req);
}
process.send?.('ready');
setInterval(() => {}, 60_000);
