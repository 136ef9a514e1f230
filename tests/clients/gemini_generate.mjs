// Gemini generateContent / streamGenerateContent through the real `@google/genai` SDK.
// Env: GEMINI_BASE_URL (no /v1beta), GEMINI_API_KEY, MODEL, PROMPT, STREAM=1.
// Prints {"ok":true,"model","content","finish_reason","usage","chunks"}.
import { GoogleGenAI } from '@google/genai';
import { env, flag, done, fail } from './common.mjs';

const ai = new GoogleGenAI({
  apiKey: env('GEMINI_API_KEY'),
  httpOptions: { baseUrl: env('GEMINI_BASE_URL'), timeout: Number(env('TIMEOUT_MS', '10000')) },
});
const request = {
  model: env('MODEL', 'gemini-2.0-flash'),
  contents: env('PROMPT', 'say hello'),
  config: { systemInstruction: 'You are terse.' },
};

try {
  if (flag('STREAM')) {
    const stream = await ai.models.generateContentStream(request);
    let content = '';
    let last = null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks += 1;
      content += chunk.text ?? '';
      last = chunk;
    }
    done({
      model: last.modelVersion,
      content,
      finish_reason: last.candidates[0].finishReason ?? null,
      usage: last.usageMetadata,
      chunks,
    });
  } else {
    const response = await ai.models.generateContent(request);
    done({
      model: response.modelVersion,
      content: response.text,
      finish_reason: response.candidates[0].finishReason,
      usage: response.usageMetadata,
      chunks: 0,
    });
  }
} catch (error) {
  fail(error);
}
