// A chunked upload that ends with trailers, through the egress: POST /upload of h2_upstream.mjs,
// which answers the body size and the trailers it received.
// Env: PROXY=host:port, URL (http:// through absolute-URI proxying, https:// through CONNECT),
//   MODE=h1|h2 (h2: https only), CA_FILE (https), CONTENT_TYPE (the body's; JSON bodies are
//   buffered by the egress, others streamed), TIMEOUT_MS (10000).
// Sends the body in two writes, then trailers x-checksum: sha-256=test and authorization: Bearer
// agent-key (a credential in a trailer section: never forwarded).
// Prints {"ok":true,"status":N,"protocol":..,"answer":{..}} or {"ok":false,"error":..}.
import http2 from 'node:http2';
import fs from 'node:fs';
import { env, done, fail, requestThroughProxy, tlsToUrl } from './common.mjs';

const url = new URL(env('URL'));
const mode = env('MODE', 'h1');
const contentType = env('CONTENT_TYPE', 'application/octet-stream');
const pieces = contentType.includes('json') ? ['{"model":"gpt-4o",', '"input":"x"}'] : ['abc', 'def'];
const trailers = { 'x-checksum': 'sha-256=test', authorization: 'Bearer agent-key' };
const timer = setTimeout(() => fail(new Error('timed out')), Number(env('TIMEOUT_MS', '10000')));

function finish(status, protocol, text) {
  clearTimeout(timer);
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = text;
  }
  done({ status, protocol, answer });
}

try {
  if (mode === 'h2') {
    const secure = await tlsToUrl(env('PROXY'), url, fs.readFileSync(env('CA_FILE')), 'h2');
    const session = http2.connect(url.origin, { createConnection: () => secure });
    session.on('error', fail);
    const stream = session.request({ ':method': 'POST', ':path': url.pathname,
                                     'content-type': contentType, trailer: 'x-checksum' },
                                   { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    let status = 0;
    let text = '';
    stream.on('response', (headers) => { status = headers[':status']; });
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => { text += chunk; });
    stream.on('end', () => {
      finish(status, 'h2', text);
      session.close();
    });
    stream.on('error', fail);
    stream.write(pieces[0]);
    setTimeout(() => stream.end(pieces[1]), 20);
  } else {
    const options = { method: 'POST', headers: { 'content-type': contentType,
                                                  trailer: 'x-checksum' } };
    const req = await requestThroughProxy(env('PROXY'), url, options, env('CA_FILE', ''));
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        finish(res.statusCode, `http/${res.httpVersion}`, text);
        req.destroy();
      });
    });
    req.on('error', fail);
    req.write(pieces[0]);
    setTimeout(() => {
      req.addTrailers(trailers);
      req.end(pieces[1]);
    }, 20);
  }
} catch (error) {
  fail(error);
}
