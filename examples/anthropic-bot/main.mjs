// anthropic-bot: one TaskAgent execution. Reads the CloudEvents envelope clrk writes on stdin,
// streams a Messages API answer through the real `@anthropic-ai/sdk` (`client.messages.stream`,
// Server-Sent Events) and writes each text delta to stderr as it arrives (`clrk logs`). The
// assembled answer goes to stdout as one JSON line (the response body). The agent holds no key:
// ANTHROPIC_API_KEY is a placeholder that the egress replaces with the Secret's value.
import Anthropic from '@anthropic-ai/sdk';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const event = input ? JSON.parse(input) : {};
const data = event.data ?? {};
const prompt = typeof data === 'string' ? data : (data.prompt ?? 'Say hello in five words.');

const client = new Anthropic({ maxRetries: 0, timeout: 30000 });
try {
  const stream = client.messages.stream({
    model: process.env.MODEL ?? 'claude-haiku-4-5',
    max_tokens: 256,
    system: 'You are a terse assistant.',
    messages: [{ role: 'user', content: prompt }],
  });
  let answer = '';
  let chunks = 0;
  stream.on('text', (text) => {
    answer += text;
    chunks += 1;
    process.stderr.write(text);
  });
  const message = await stream.finalMessage();
  process.stderr.write('\n');
  console.log(JSON.stringify({
    answer,
    chunks,
    model: message.model,
    stop_reason: message.stop_reason,
    usage: message.usage,
    invocation: event.id,
  }));
} catch (error) {
  console.error(`anthropic-bot: ${error.status ?? ''} ${error.message}`);
  process.exit(1);
}
