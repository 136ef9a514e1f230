// HTTP/2 through the egress with Node's own http2 client: one TLS connection (CONNECT through
// the explicit proxy, ALPN h2, trusting the proxy CA from CA_FILE), many concurrent streams:
// N chat completions, one SSE stream, one large upload, one CONNECT (which HTTP/2 -> HTTP/1.1
// cannot carry), one stream the client resets early, then one with an oversized header (BIG_HEADER
// bytes) and one more ordinary request.
// Env: PROXY=host:port, CA_FILE, HOST (default api.openai.com), N (default 8), UPLOAD_BYTES.
// Prints {"ok":true,"alpn":..,"chats":[status..],"sse_events":..,"upload_status":..,
//          "connect_status":..,"connect_body":..,"big_header_status":..,"after_status":..}.
import http2 from 'node:http2';
import tls from 'node:tls';
import fs from 'node:fs';
import { connectTunnel, env, done, fail } from './common.mjs';

const proxy = env('PROXY');
const ca = fs.readFileSync(env('CA_FILE'));
const host = env('HOST', 'api.openai.com');
const count = Number(env('N', '8'));
const uploadBytes = Number(env('UPLOAD_BYTES', String(2 * 1024 * 1024)));

function exchange(session, headers, body) {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    let status = 0;
    let data = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => { status = h[':status']; });
    stream.on('data', (chunk) => { data += chunk; });
    stream.on('end', () => resolve({ status, data }));
    stream.on('error', reject);
    if (body !== undefined) stream.end(body); else stream.end();
  });
}

try {
  const socket = await connectTunnel(proxy, `${host}:443`);
  const session = http2.connect(`https://${host}`, {
    createConnection: () => tls.connect({ socket, servername: host, ca, ALPNProtocols: ['h2'] }),
  });
  session.on('error', (e) => fail(e));
  await new Promise((resolve) => session.once('connect', resolve));
  const alpn = session.alpnProtocol;

  const chat = (i) => exchange(session, {
    ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json',
    authorization: `Bearer sk-agent-${i}`,
  }, JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}` }] }));
  const auth = { authorization: 'Bearer sk-agent-h2' };
  const sse = exchange(session, {
    ':method': 'POST', ':path': '/v1/chat/completions', 'content-type': 'application/json', ...auth,
  }, JSON.stringify({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
                      messages: [{ role: 'user', content: 'stream please' }] }));
  const upload = exchange(session, {
    ':method': 'POST', ':path': '/v1/files', 'content-type': 'application/octet-stream', ...auth,
  }, Buffer.alloc(uploadBytes, 0x7a));
  // A stream the client gives up on at once: the rest of the connection must not notice.
  const abandoned = session.request({ ':method': 'GET', ':path': '/v1/models' });
  abandoned.on('error', () => {});
  abandoned.close(http2.constants.NGHTTP2_CANCEL);

  const results = await Promise.all([...Array(count).keys()].map(chat).concat([sse, upload]));
  const chats = results.slice(0, count).map((r) => r.status);
  const chatIds = new Set(results.slice(0, count).map((r) => JSON.parse(r.data).id));
  const sseEvents = results[count].data.split('\n').filter((l) => l.startsWith('data: ')).length;
  const uploadStatus = results[count + 1].status;
  const connect = await exchange(session, { ':method': 'CONNECT', ':authority': 'evil.example:443' });
  const big = await exchange(session, { ':method': 'GET', ':path': '/v1/models', ...auth,
                                        'x-big': 'b'.repeat(Number(env('BIG_HEADER', '20000'))) });
  const after = await exchange(session, { ':method': 'GET', ':path': '/v1/models', ...auth });
  session.close();
  done({ alpn, chats, distinct_ids: chatIds.size, sse_events: sseEvents,
         upload_status: uploadStatus, connect_status: connect.status,
         connect_body: connect.data, big_header_status: big.status, after_status: after.status });
} catch (e) {
  fail(e);
}
