// Responses API through the real `openai` SDK.
// Env: OPENAI_BASE_URL, OPENAI_API_KEY, MODEL, PROMPT, STREAM=1.
// Prints {"ok":true,"model","content","status","usage","events"}.
import OpenAI from 'openai';
import { env, flag, done, fail } from './common.mjs';

const client = new OpenAI({
  apiKey: env('OPENAI_API_KEY'),
  baseURL: env('OPENAI_BASE_URL'),
  maxRetries: 0,
  timeout: Number(env('TIMEOUT_MS', '10000')),
});
const request = {
  model: env('MODEL', 'gpt-4o-mini'),
  instructions: 'You are terse.',
  input: env('PROMPT', 'say hello'),
};

try {
  if (flag('STREAM')) {
    const stream = await client.responses.create({ ...request, stream: true });
    let content = '';
    let final = null;
    const events = [];
    for await (const event of stream) {
      events.push(event.type);
      if (event.type === 'response.output_text.delta') content += event.delta;
      if (event.type === 'response.completed') final = event.response;
    }
    done({ model: final.model, content, status: final.status, usage: final.usage, events });
  } else {
    const response = await client.responses.create(request);
    done({
      model: response.model,
      content: response.output_text,
      status: response.status,
      usage: response.usage,
      events: [],
    });
  }
} catch (error) {
  fail(error);
}
