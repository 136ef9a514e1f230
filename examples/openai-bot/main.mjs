// openai-bot: one TaskAgent execution. Reads the CloudEvents envelope clrk writes on stdin, asks
// the model through the real `openai` SDK and prints the answer as JSON (the response body).
// The agent holds no key: OPENAI_API_KEY is a placeholder that the egress replaces with the
// Secret's value on the way out.
import OpenAI from 'openai';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const event = input ? JSON.parse(input) : {};
const data = event.data ?? {};
const prompt = typeof data === 'string' ? data : (data.prompt ?? 'Say hello in five words.');

const client = new OpenAI({ maxRetries: 0, timeout: 30000 });
try {
  const completion = await client.chat.completions.create({
    model: process.env.MODEL ?? 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are a terse assistant.' },
      { role: 'user', content: prompt },
    ],
  });
  console.log(JSON.stringify({
    answer: completion.choices[0].message.content,
    model: completion.model,
    usage: completion.usage,
    invocation: event.id,
  }));
} catch (error) {
  console.error(`openai-bot: ${error.status ?? ''} ${error.message}`);
  process.exit(1);
}
