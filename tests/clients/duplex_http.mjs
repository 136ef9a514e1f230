// A full-duplex HTTP exchange through the egress: a POST whose body is written piece by piece,
// each piece only after the upstream's reply to the previous one came back on the response
// (POST /duplex of h2_upstream.mjs answers "re: <piece>" as each arrives). A proxy that relays
// the request body before it reads the response never lets the second piece go.
// Env: PROXY=host:port, URL (http:// through absolute-URI proxying, https:// through CONNECT),
//   MODE=h1|h2 (h2: https only), CA_FILE (https), ROUNDS (3), TIMEOUT_MS (10000).
// Prints {"ok":true,"replies":[...],"status":N,"protocol":..} or {"ok":false,"error":..}.
import http2 from 'node:http2';
import fs from 'node:fs';
import { env, done, fail, requestThroughProxy, tlsToUrl } from './common.mjs';

const url = new URL(env('URL'));
const mode = env('MODE', 'h1');
const rounds = Number(env('ROUNDS', '3'));
const replies = [];
const timer = setTimeout(() => fail(new Error(`timed out after ${replies.length} replies`)),
                         Number(env('TIMEOUT_MS', '10000')));

// Feeds response text in; writes the next ping once the reply to the last one is complete, and
// ends the body after the last reply. Returns the text not yet matched.
function exchange(pending, text, write, end) {
  pending += text;
  for (;;) {
    const expected = `re: ping ${replies.length + 1}`;
    const at = pending.indexOf(expected);
    if (at < 0) return pending;
    replies.push(expected);
    pending = pending.slice(at + expected.length);
    if (replies.length < rounds) write(`ping ${replies.length + 1}`);
    else end();
  }
}

function finish(status, protocol) {
  clearTimeout(timer);
  if (replies.length !== rounds) fail(new Error(`only ${replies.length} of ${rounds} replies`));
  done({ replies, status, protocol });
}

try {
  if (mode === 'h2') {
    const secure = await tlsToUrl(env('PROXY'), url, fs.readFileSync(env('CA_FILE')), 'h2');
    const session = http2.connect(url.origin, { createConnection: () => secure });
    session.on('error', fail);
    const stream = session.request({ ':method': 'POST', ':path': url.pathname,
                                     'content-type': 'text/plain' }, { endStream: false });
    let status = 0;
    let pending = '';
    stream.on('response', (headers) => { status = headers[':status']; });
    stream.setEncoding('utf8');
    stream.on('data', (text) => {
      pending = exchange(pending, text, (piece) => stream.write(piece), () => stream.end());
    });
    stream.on('end', () => {
      finish(status, 'h2');
      session.close();
    });
    stream.on('error', fail);
    stream.write('ping 1');
  } else {
    const options = { method: 'POST', headers: { 'content-type': 'text/plain' } };
    const req = await requestThroughProxy(env('PROXY'), url, options, env('CA_FILE', ''));
    req.on('response', (res) => {
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (text) => {
        pending = exchange(pending, text, (piece) => req.write(piece), () => req.end());
      });
      res.on('end', () => {
        finish(res.statusCode, `http/${res.httpVersion}`);
        req.destroy();
      });
    });
    req.on('error', fail);
    req.write('ping 1');
  }
} catch (error) {
  fail(error);
}
