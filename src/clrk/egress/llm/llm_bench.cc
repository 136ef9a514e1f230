// Hot-path costs of the egress LLM helpers: SSE usage observation per stream, request summary
// and body edits per request, limiter decisions.
#include "clrk/egress/llm/limits.h"
#include "clrk/egress/llm/request.h"
#include "clrk/egress/llm/usage.h"

#include <benchmark/benchmark.h>

#include <string>

namespace clrk::egress::llm {
namespace {

std::string openAiStream(int chunks) {
  std::string s;
  for (int i = 0; i < chunks; ++i) {
    s +=
        R"(data: {"id":"chatcmpl-7a1c2b3d","object":"chat.completion.chunk","created":1694268190,)"
        R"("model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,)"
        R"("delta":{"content":" token"},"logprobs":null,"finish_reason":null}],"usage":null})"
        "\n\n";
  }
  s += R"(data: {"id":"chatcmpl-7a1c2b3d","object":"chat.completion.chunk","created":1694268190,)"
       R"("model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":9,)"
       R"("completion_tokens":12,"total_tokens":21}})"
       "\n\ndata: [DONE]\n\n";
  return s;
}

void BM_ObserveOpenAiStream(benchmark::State& state) {
  std::string body = openAiStream(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    ResponseObserver obs(Provider::kOpenAI, true);
    for (size_t i = 0; i < body.size(); i += 1400) obs.feed(std::string_view(body).substr(i, 1400));
    obs.finish();
    benchmark::DoNotOptimize(obs.usage().total_tokens);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.SetItemsProcessed(state.iterations() * state.range(0));  // items = SSE events
}
BENCHMARK(BM_ObserveOpenAiStream)->Arg(100)->Arg(1000);

std::string chatRequest(size_t messages) {
  std::string s =
      R"({"model":"gpt-4o-mini","stream":true,"max_completion_tokens":256,"messages":[)";
  for (size_t i = 0; i < messages; ++i) {
    if (i) s += ",";
    s +=
        R"({"role":"user","content":"Summarise the following paragraph in one sentence, please."})";
  }
  s += "]}";
  return s;
}

void BM_SummarizeRequest(benchmark::State& state) {
  std::string body = chatRequest(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    auto s = summarizeRequest(Provider::kOpenAI, "/v1/chat/completions", body);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_SummarizeRequest)->Arg(1)->Arg(100);

void BM_EnsureStreamUsage(benchmark::State& state) {
  std::string body = chatRequest(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(ensureStreamUsage(body));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_EnsureStreamUsage)->Arg(1)->Arg(100);

void BM_RateLimiterAcquire(benchmark::State& state) {
  static RateLimiter limiter;
  std::string key = "ns/policy#agent-" + std::to_string(state.thread_index() % 64);
  auto now = RateLimiter::Clock::now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(limiter.acquire(key, 1000000, std::chrono::seconds(1), now));
  }
}
BENCHMARK(BM_RateLimiterAcquire)->Threads(1)->Threads(2);

void BM_TokenBudgetCheck(benchmark::State& state) {
  static TokenBudgets budgets;
  auto now = TokenBudgets::Clock::now();
  budgets.consume("ns/route#0", 10, BudgetWindow::kDay, now);
  for (auto _ : state) {
    benchmark::DoNotOptimize(budgets.check("ns/route#0", 1000000, BudgetWindow::kDay, now));
  }
}
BENCHMARK(BM_TokenBudgetCheck);

}  // namespace
}  // namespace clrk::egress::llm

BENCHMARK_MAIN();
