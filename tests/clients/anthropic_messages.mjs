// Messages API through the real `@anthropic-ai/sdk`.
// Env: ANTHROPIC_BASE_URL (no /v1), ANTHROPIC_API_KEY, MODEL, PROMPT, STREAM=1, MAX_TOKENS.
// Prints {"ok":true,"model","content","stop_reason","usage","events"}.
import Anthropic from '@anthropic-ai/sdk';
import { env, flag, done, fail } from './common.mjs';

const client = new Anthropic({
  apiKey: env('ANTHROPIC_API_KEY'),
  baseURL: env('ANTHROPIC_BASE_URL'),
  maxRetries: 0,
  timeout: Number(env('TIMEOUT_MS', '10000')),
});
const request = {
  model: env('MODEL', 'claude-mock-1'),
  max_tokens: Number(env('MAX_TOKENS', '1024')),
  system: 'You are terse.',
  messages: [{ role: 'user', content: env('PROMPT', 'say hello') }],
};

try {
  if (flag('STREAM')) {
    const stream = await client.messages.create({ ...request, stream: true });
    let content = '';
    let model = null;
    let stop = null;
    const usage = { input_tokens: null, output_tokens: null };
    const events = [];
    for await (const event of stream) {
      events.push(event.type);
      if (event.type === 'message_start') {
        model = event.message.model;
        usage.input_tokens = event.message.usage.input_tokens;
      } else if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') {
        content += event.delta.text;
      } else if (event.type === 'message_delta') {
        stop = event.delta.stop_reason;
        usage.output_tokens = event.usage.output_tokens;
      }
    }
    done({ model, content, stop_reason: stop, usage, events });
  } else {
    const message = await client.messages.create(request);
    done({
      model: message.model,
      content: message.content.map((block) => block.text).join(''),
      stop_reason: message.stop_reason,
      usage: { input_tokens: message.usage.input_tokens, output_tokens: message.usage.output_tokens },
      events: [],
    });
  }
} catch (error) {
  fail(error);
}
