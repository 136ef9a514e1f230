// MCP over Streamable HTTP through the real `@modelcontextprotocol/sdk` client.
// Env: MCP_URL (…/mcp), TOOL (default add), ARGS (JSON, default {"a":2,"b":3}),
//      MCP_TOKEN (optional bearer). Prints {"ok":true,"server","protocol","tools","result","isError"}.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { env, done, fail } from './common.mjs';

const headers = {};
if (process.env.MCP_TOKEN) headers.Authorization = `Bearer ${process.env.MCP_TOKEN}`;
const transport = new StreamableHTTPClientTransport(new URL(env('MCP_URL')), {
  requestInit: { headers },
});
const client = new Client({ name: 'clrk-test-client', version: '0.1.0' });

try {
  await client.connect(transport);
  const tools = await client.listTools();
  const result = await client.callTool({
    name: env('TOOL', 'add'),
    arguments: JSON.parse(env('ARGS', '{"a":2,"b":3}')),
  });
  const server = client.getServerVersion();
  done({
    server: server ? server.name : null,
    protocol: transport.protocolVersion ?? null,
    session: transport.sessionId ?? null,
    tools: tools.tools.map((tool) => tool.name),
    result: result.content.map((part) => part.text).join(''),
    isError: result.isError ?? false,
  });
  await transport.terminateSession().catch(() => {});
  await client.close();
} catch (error) {
  fail(error);
}
