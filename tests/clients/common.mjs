// Shared helpers for the test clients: env access and the one-line JSON summary they print.
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
