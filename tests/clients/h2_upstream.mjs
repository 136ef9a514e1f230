// An upstream that speaks HTTP/2 (Node's http2 server, TLS, HTTP/1.1 allowed too). Prints
// {"port":N} once listening, serves until stdin closes. Env: KEY_FILE, CERT_FILE.
//   GET  /whoami  -> {"httpVersion","session","path","auth"}
//   POST /upload  -> {"bytes":<request body bytes>,"session"}
//   GET  /sse     -> text/event-stream, three "data:" events 20 ms apart
//   GET  /reset   -> response headers, part of a body, then RST_STREAM
//   GET  /trailers -> {"te":<the request's TE>} in two writes, then trailers x-checksum: abc123
//                     and grpc-status: 0
//   GET  /echo with Upgrade: websocket (HTTP/1.1 only) -> a WebSocket that echoes every message
import http2 from 'node:http2';
import fs from 'node:fs';
import { WebSocketServer } from 'ws';
import { env } from './common.mjs';

let sessions = 0;
const server = http2.createSecureServer({
  key: fs.readFileSync(env('KEY_FILE')),
  cert: fs.readFileSync(env('CERT_FILE')),
  allowHTTP1: true,
});
const sockets = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'https://upstream').pathname !== '/echo') {
    socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
    return;
  }
  sockets.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
});
server.on('session', (session) => { session.clrkId = ++sessions; });
server.on('request', (req, res) => {
  const session = req.stream ? req.stream.session.clrkId : 0;
  const url = new URL(req.url, 'https://upstream');
  if (url.pathname === '/upload') {
    let bytes = 0;
    req.on('data', (chunk) => { bytes += chunk.length; });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ bytes, session }));
    });
    return;
  }
  if (url.pathname === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let n = 0;
    const timer = setInterval(() => {
      res.write(`data: {"n":${++n}}\n\n`);
      if (n === 3) { clearInterval(timer); res.end(); }
    }, 20);
    return;
  }
  if (url.pathname === '/trailers') {
    res.writeHead(200, { 'content-type': 'application/json', trailer: 'x-checksum, grpc-status' });
    res.write(`{"te":${JSON.stringify(req.headers.te || '')}`);
    setTimeout(() => {
      res.addTrailers({ 'x-checksum': 'abc123', 'grpc-status': '0' });
      res.end('}');
    }, 10);
    return;
  }
  if (url.pathname === '/reset') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
    res.write('partial');
    setTimeout(() => req.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), 20);
    return;
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ httpVersion: req.httpVersion, session, path: url.pathname,
                           auth: req.headers.authorization || '' }));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
