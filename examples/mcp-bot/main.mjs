// mcp-bot: one TaskAgent execution. Reads the CloudEvents envelope clrk writes on stdin, connects
// to an MCP server over Streamable HTTP with the real `@modelcontextprotocol/sdk` client, lists
// its tools, calls one and prints the result as one JSON line (the response body). The egress
// sees each JSON-RPC message: it applies the MCPRoute's ToolPolicy and records the method and
// tool of every call.
//
// Input (.data): {"tool": "add", "arguments": {"a": 2, "b": 3}}; MCP_URL names the server.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const event = input ? JSON.parse(input) : {};
const data = typeof event.data === 'object' && event.data !== null ? event.data : {};
const tool = data.tool ?? 'add';
const args = data.arguments ?? { a: 2, b: 3 };

const transport = new StreamableHTTPClientTransport(
  new URL(process.env.MCP_URL ?? 'https://mcp.mock.clrk.dev/mcp'));
const client = new Client({ name: 'clrk-mcp-bot', version: '0.1.0' });
try {
  await client.connect(transport);
  const { tools } = await client.listTools();
  const result = await client.callTool({ name: tool, arguments: args });
  console.log(JSON.stringify({
    server: client.getServerVersion()?.name ?? null,
    tools: tools.map((entry) => entry.name),
    tool,
    result: result.content.map((part) => part.text ?? '').join(''),
    isError: result.isError ?? false,
    invocation: event.id,
  }));
  await transport.terminateSession().catch(() => {});
  await client.close();
  if (result.isError) process.exit(1);
} catch (error) {
  console.error(`mcp-bot: ${error.code ?? ''} ${error.message}`);
  process.exit(1);
}
