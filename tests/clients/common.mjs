// Shared helpers for the test clients: env access, the one-line JSON summary they print, and
// CONNECT tunnels through the egress's explicit proxy.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';

export function env(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (fallback === undefined) {
      fail(new Error(`environment variable ${name} is required`));
    }
    return fallback;
  }
  return value;
}

export function flag(name) {
  const value = process.env[name];
  return value === '1' || value === 'true';
}

// Prints {"ok":true,...} on one line.
export function done(summary) {
  process.stdout.write(JSON.stringify({ ok: true, ...summary }) + '\n');
}

// Prints {"ok":false,"error":...,"status":...} on one line and exits 1.
export function fail(error) {
  const summary = {
    ok: false,
    error: String(error && error.message ? error.message : error),
    status: error && typeof error.status === 'number' ? error.status : null,
    name: error && error.name ? error.name : null,
  };
  if (error && error.error !== undefined) summary.body = error.error;
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(1);
}

// A socket tunnelled to `authority` ("host:port") with CONNECT through the explicit proxy at
// `proxy` ("host:port"); rejects unless the proxy answers 200.
export function connectTunnel(proxy, authority) {
  const [proxyHost, proxyPort] = proxy.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host: proxyHost, port: Number(proxyPort), method: 'CONNECT',
                               path: authority });
    req.on('connect', (res, socket) => {
      if (res.statusCode !== 200) reject(new Error(`CONNECT answered ${res.statusCode}`));
      else resolve(socket);
    });
    req.on('error', reject);
    req.end();
  });
}

// TLS to `servername` over a CONNECT tunnel to `authority`, trusting `ca` only and offering
// `alpn`; resolves once the handshake is done.
export async function tlsThroughTunnel(proxy, authority, servername, ca, alpn) {
  const socket = await connectTunnel(proxy, authority);
  return new Promise((resolve, reject) => {
    const secure = tls.connect({ socket, servername, ca, ALPNProtocols: [alpn] });
    secure.once('secureConnect', () => resolve(secure));
    secure.once('error', reject);
  });
}

// TLS to `url`'s host (port 443 unless it names one) through the explicit proxy at `proxy`,
// trusting `ca` only and offering `alpn`.
export function tlsToUrl(proxy, url, ca, alpn) {
  return tlsThroughTunnel(proxy, `${url.hostname}:${url.port || 443}`, url.hostname, ca, alpn);
}

// An HTTP/1.1 request for `url` through the explicit proxy at `proxy`: the absolute-URI form for
// http://, CONNECT then TLS trusting the certificate in `caFile` for https://. Not sent yet: the
// caller writes the body and ends it.
export async function requestThroughProxy(proxy, url, options, caFile) {
  if (url.protocol === 'https:') {
    const secure = await tlsToUrl(proxy, url, fs.readFileSync(caFile), 'http/1.1');
    return https.request(url, { ...options, defaultPort: 443, createConnection: () => secure });
  }
  const [host, port] = proxy.split(':');
  return http.request({ ...options, host, port: Number(port), path: url.href });
}
