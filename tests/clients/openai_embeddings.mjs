// Embeddings through the real `openai` SDK (which asks for base64 and decodes it).
// Env: OPENAI_BASE_URL, OPENAI_API_KEY, MODEL, PROMPT. Prints {"ok":true,"model","dims","first","usage"}.
import OpenAI from 'openai';
import { env, done, fail } from './common.mjs';

const client = new OpenAI({
  apiKey: env('OPENAI_API_KEY'),
  baseURL: env('OPENAI_BASE_URL'),
  maxRetries: 0,
  timeout: Number(env('TIMEOUT_MS', '10000')),
});

try {
  const result = await client.embeddings.create({
    model: env('MODEL', 'text-embedding-3-small'),
    input: [env('PROMPT', 'say hello'), 'second input'],
  });
  done({
    model: result.model,
    count: result.data.length,
    dims: result.data[0].embedding.length,
    first: result.data[0].embedding,
    usage: result.usage,
  });
} catch (error) {
  fail(error);
}
