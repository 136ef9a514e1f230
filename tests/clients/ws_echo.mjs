// WebSocket through the egress with the `ws` package: CONNECT through the explicit proxy, TLS
// trusting the proxy CA from CA_FILE, then the Upgrade; sends a text, a 200 KiB binary message
// and a text again, and checks each echo.
// Env: PROXY=host:port, CA_FILE, URL (wss://...).
// Prints {"ok":true,"echoed":3,"protocol":..} or {"ok":false,"error":..}.
import https from 'node:https';
import fs from 'node:fs';
import WebSocket from 'ws';
import { env, done, fail, tlsToUrl } from './common.mjs';

const proxy = env('PROXY');
const ca = fs.readFileSync(env('CA_FILE'));
const url = new URL(env('URL'));

// An agent whose connections are TLS over a CONNECT tunnel through the proxy.
class TunnelAgent extends https.Agent {
  createConnection(options, callback) {
    tlsToUrl(proxy, url, ca, 'http/1.1').then((secure) => callback(null, secure), callback);
  }
}

const messages = ['hello', Buffer.alloc(200 * 1024, 7), 'bye'];
const socket = new WebSocket(url, { agent: new TunnelAgent() });
const timer = setTimeout(() => fail(new Error('timed out')), 15000);
let echoed = 0;
socket.on('open', () => socket.send(messages[0]));
socket.on('message', (data, isBinary) => {
  const sent = messages[echoed];
  const same = typeof sent === 'string' ? !isBinary && data.toString() === sent
                                        : isBinary && Buffer.compare(data, sent) === 0;
  if (!same) fail(new Error(`echo ${echoed} differs`));
  ++echoed;
  if (echoed < messages.length) {
    socket.send(messages[echoed]);
  } else {
    socket.close(1000);
  }
});
socket.on('close', (code) => {
  clearTimeout(timer);
  if (echoed !== messages.length) fail(new Error(`closed (${code}) after ${echoed} echoes`));
  done({ echoed, close_code: code });
});
socket.on('unexpected-response', (req, res) => fail(new Error(`answered ${res.statusCode}`)));
socket.on('error', fail);
