// Chat Completions through the real `openai` SDK.
// Env: OPENAI_BASE_URL (…/v1), OPENAI_API_KEY, MODEL, PROMPT, STREAM=1 (with include_usage),
//      MAX_TOKENS. Prints {"ok":true,"model","content","finish_reason","usage","chunks"}.
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
  messages: [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: env('PROMPT', 'say hello') },
  ],
};
if (process.env.MAX_TOKENS) request.max_tokens = Number(process.env.MAX_TOKENS);

try {
  if (flag('STREAM')) {
    const stream = await client.chat.completions.create({
      ...request,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    let usage = null;
    let model = null;
    let finish = null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      model = chunk.model;
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        if (choice.delta && choice.delta.content) content += choice.delta.content;
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
    done({ model, content, finish_reason: finish, usage, chunks });
  } else {
    const completion = await client.chat.completions.create(request);
    done({
      model: completion.model,
      content: completion.choices[0].message.content,
      finish_reason: completion.choices[0].finish_reason,
      usage: completion.usage,
      chunks: 0,
    });
  }
} catch (error) {
  fail(error);
}
