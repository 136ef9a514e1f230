// An upstream that speaks HTTP/2 (Node's http2 server, TLS, HTTP/1.1 allowed too), plus the same
// routes over plain HTTP/1.1 on a second port. Prints {"port":N,"plain_port":M} once listening,
// serves until stdin closes. Env: KEY_FILE, CERT_FILE.
//   GET  /whoami  -> {"httpVersion","session","path","auth","hop"} (hop: the x-hop header)
//   POST /upload  -> {"bytes":<request body bytes>,"session","trailers":<the request's trailers>,
//                     "checksum_header":<an x-checksum head field, "" when none>}
//   GET  /sse     -> text/event-stream, three "data:" events 20 ms apart
//   GET  /reset   -> response headers, part of a body, then RST_STREAM
//   GET  /trailers -> {"te":<the request's TE>} in two writes, then trailers x-checksum: abc123
//                     and grpc-status: 0
//   POST /duplex  -> 200 at once, then "re: <chunk>" for every request body chunk as it arrives;
//                    ends when the request does (a full-duplex exchange)
//   POST /drip?n=N&ms=M -> 200 at once, then "drip <i>" lines every M ms, N of them, then the
//                    end, whatever the request body does meanwhile
//   GET  /echo with Upgrade: websocket (HTTP/1.1 only) -> a WebSocket that echoes every message
import http from 'node:http';
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
const serve = (req, res) => {
  const session = req.stream ? req.stream.session.clrkId : 0;
  const url = new URL(req.url, 'https://upstream');
  if (url.pathname === '/upload') {
    let bytes = 0;
    req.on('data', (chunk) => { bytes += chunk.length; });
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ bytes, session, trailers: req.trailers || {},
                               checksum_header: req.headers['x-checksum'] || '' }));
    });
    return;
  }
  if (url.pathname === '/duplex') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.flushHeaders();
    req.on('data', (chunk) => res.write(`re: ${chunk.toString()}`));
    req.on('end', () => res.end());
    return;
  }
  if (url.pathname === '/drip') {
    const count = Number(url.searchParams.get('n') || '8');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.flushHeaders();
    req.on('data', () => {});
    let sent = 0;
    const timer = setInterval(() => {
      res.write(`drip ${++sent}\n`);
      if (sent === count) { clearInterval(timer); res.end(); }
    }, Number(url.searchParams.get('ms') || '250'));
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
                           auth: req.headers.authorization || '', hop: req.headers['x-hop'] || '' }));
};
server.on('request', serve);
const plain = http.createServer(serve);
server.listen(0, '127.0.0.1', () => {
  plain.listen(0, '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ port: server.address().port,
                                          plain_port: plain.address().port }) + '\n');
  });
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
