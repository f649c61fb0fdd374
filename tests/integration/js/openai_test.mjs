// The official openai client against slm serve. Usage:
//   node openai_test.mjs BASE_URL API_KEY
// Prints "ok: ..." / "FAIL: ..." lines and "N passed, N failed"; exit 1 on failure.
import OpenAI from 'openai';

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60000 });
let passed = 0, failed = 0;
function check(what, cond, detail) {
  if (cond) { passed++; console.log(`ok: ${what}`); }
  else { failed++; console.log(`FAIL: ${what}${detail ? ': ' + detail : ''}`); }
}

const messages = [
  { role: 'system', content: 'You tell short stories.' },
  { role: 'user', content: 'Tell me about a cat.' },
];

try {
  // models
  const models = await client.models.list();
  const ids = models.data.map((m) => m.id);
  check('models.list has one model', ids.length === 1, JSON.stringify(ids));
  const model = ids[0];
  const one = await client.models.retrieve(model);
  check('models.retrieve', one.id === model && one.object === 'model');

  // chat, not streamed
  const chat = await client.chat.completions.create({ model, messages, max_tokens: 40, temperature: 0 });
  const text = chat.choices[0].message.content;
  check('chat completion has text', typeof text === 'string' && text.length > 0, JSON.stringify(chat));
  check('chat role', chat.choices[0].message.role === 'assistant');
  check('chat finish_reason', ['stop', 'length'].includes(chat.choices[0].finish_reason));
  check('chat usage', chat.usage && chat.usage.prompt_tokens > 0 &&
        chat.usage.completion_tokens > 0 &&
        chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens,
        JSON.stringify(chat.usage));
  check('chat object', chat.object === 'chat.completion' && chat.model === model);

  // chat, streamed: the chunks concatenate to the same text at temperature 0
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 40, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let joined = '', finish = null, chunks = 0, usage = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta && c.delta.content) joined += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check('stream has chunks', chunks >= 2, String(chunks));
  check('streamed text equals the non-streamed text', joined === text,
        `${JSON.stringify(joined)} vs ${JSON.stringify(text)}`);
  check('stream finish_reason', finish === chat.choices[0].finish_reason, String(finish));
  check('stream usage', usage && usage.completion_tokens === chat.usage.completion_tokens,
        JSON.stringify(usage));

  // log-probabilities, not streamed and streamed
  const lpc = await client.chat.completions.create({
    model, messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const lpContent = lpc.choices[0].logprobs && lpc.choices[0].logprobs.content;
  check('chat logprobs: one entry per token', Array.isArray(lpContent) &&
        lpContent.length === lpc.usage.completion_tokens, JSON.stringify(lpc.choices[0].logprobs));
  check('chat logprobs well formed', Array.isArray(lpContent) && lpContent.every((e) =>
    typeof e.token === 'string' && e.logprob <= 0 && Array.isArray(e.bytes) &&
    e.top_logprobs.length === 2 && e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob &&
    Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-5), JSON.stringify(lpContent));
  const lps = await client.chat.completions.create({
    model, messages, max_tokens: 8, temperature: 0, logprobs: true, top_logprobs: 2, stream: true,
  });
  const streamed = [];
  for await (const chunk of lps)
    for (const c of chunk.choices) if (c.logprobs && c.logprobs.content) streamed.push(...c.logprobs.content);
  check('streamed logprobs equal the non-streamed ones', Array.isArray(lpContent) &&
        streamed.length === lpContent.length &&
        streamed.every((e, i) => e.token === lpContent[i].token &&
                                 Math.abs(e.logprob - lpContent[i].logprob) < 1e-5),
        JSON.stringify(streamed));

  // a follow-up turn reuses the conversation's cached prefix
  const follow = await client.chat.completions.create({
    model, max_tokens: 10, temperature: 0,
    messages: [...messages, { role: 'assistant', content: text }, { role: 'user', content: 'And then?' }],
  });
  const cached = follow.usage.prompt_tokens_details ? follow.usage.prompt_tokens_details.cached_tokens : 0;
  check('follow-up turn reuses cached tokens', cached > 0, JSON.stringify(follow.usage));

  // completion
  const comp = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 20, temperature: 0 });
  check('completion has text', typeof comp.choices[0].text === 'string' && comp.choices[0].text.length > 0,
        JSON.stringify(comp));
  check('completion usage', comp.usage && comp.usage.completion_tokens > 0 && comp.usage.completion_tokens <= 20);
  check('completion finish_reason', ['stop', 'length'].includes(comp.choices[0].finish_reason));

  // a streamed completion matches too
  const cs = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 20, temperature: 0, stream: true });
  let cj = '';
  for await (const chunk of cs) for (const c of chunk.choices) cj += c.text || '';
  check('streamed completion equals the non-streamed one', cj === comp.choices[0].text,
        `${JSON.stringify(cj)} vs ${JSON.stringify(comp.choices[0].text)}`);

  // errors come back as the client's typed errors
  try {
    await client.chat.completions.create({ model, messages, n: 2 });
    check('n=2 refused', false);
  } catch (e) {
    check('n=2 refused with 400', e instanceof OpenAI.BadRequestError && e.status === 400, String(e));
  }
  const bad = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  try {
    await bad.models.list();
    check('bad key refused', false);
  } catch (e) {
    check('bad key refused with 401', e instanceof OpenAI.AuthenticationError && e.status === 401, String(e));
  }
} catch (e) {
  check('no exception', false, e && e.stack ? e.stack : String(e));
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
