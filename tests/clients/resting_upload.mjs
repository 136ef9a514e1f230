// An upload that rests while its response streams: a POST that sends one piece, then nothing
// (the request stays open) until the response has ended; POST /drip of h2_upstream.mjs streams
// its lines meanwhile. A proxy that times the idle upload out cuts the response short.
// Env: PROXY=host:port, URL (http:// through absolute-URI proxying, https:// through CONNECT),
//   CA_FILE (https), TIMEOUT_MS (15000).
// Prints {"ok":true,"status":N,"lines":<"drip" lines received>} or {"ok":false,"error":..}.
import { env, done, fail, requestThroughProxy } from './common.mjs';

const url = new URL(env('URL'));
const timer = setTimeout(() => fail(new Error('timed out')), Number(env('TIMEOUT_MS', '15000')));

try {
  const options = { method: 'POST', headers: { 'content-type': 'application/octet-stream' } };
  const req = await requestThroughProxy(env('PROXY'), url, options, env('CA_FILE', ''));
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
