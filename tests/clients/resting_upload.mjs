// An upload that rests while its response streams: a POST that sends one piece, then nothing
// (the request stays open) until the response has ended; POST /drip of h2_upstream.mjs streams
// its lines meanwhile. A proxy that times the idle upload out cuts the response short.
// Env: PROXY=host:port, URL (http:// through absolute-URI proxying, https:// through CONNECT),
//   CA_FILE (https), TIMEOUT_MS (15000).
// Prints {"ok":true,"status":N,"lines":<"drip" lines received>} or {"ok":false,"error":..}.
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import { env, done, fail, tlsThroughTunnel } from './common.mjs';

const [proxyHost, proxyPort] = env('PROXY').split(':');
const url = new URL(env('URL'));
const timer = setTimeout(() => fail(new Error('timed out')), Number(env('TIMEOUT_MS', '15000')));

try {
  const options = { method: 'POST', headers: { 'content-type': 'application/octet-stream' } };
  let req;
  if (url.protocol === 'https:') {
    const secure = await tlsThroughTunnel(env('PROXY'), `${url.hostname}:${url.port || 443}`,
                                          url.hostname, fs.readFileSync(env('CA_FILE')),
                                          'http/1.1');
    req = https.request(url, { ...options, defaultPort: 443, createConnection: () => secure });
  } else {
    req = http.request({ ...options, host: proxyHost, port: Number(proxyPort), path: url.href });
  }
  req.on('response', (res) => {
    let text = '';
    res.setEncoding('utf8');
    res.on('data', (chunk) => { text += chunk; });
    res.on('error', fail);
    res.on('aborted', () => fail(new Error(`response cut short after: ${JSON.stringify(text)}`)));
    res.on('end', () => {
      clearTimeout(timer);
      done({ status: res.statusCode, lines: text.split('\n').filter((l) => l.startsWith('drip')).length });
      req.destroy();
    });
  });
  req.on('error', fail);
  req.write('start');
} catch (error) {
  fail(error);
}
