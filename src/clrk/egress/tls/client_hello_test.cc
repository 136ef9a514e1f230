#include "clrk/egress/tls/client_hello.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace clrk::egress::tls {
namespace {

std::vector<uint8_t> readSeed(const std::string& name) {
  const char* src = std::getenv("CLRK_SOURCE_DIR");
  std::filesystem::path dir = src != nullptr ? std::filesystem::path(src) / "src/clrk/egress/tls"
                                             : std::filesystem::path(__FILE__).parent_path();
  std::ifstream in(dir / "client_hello_fuzz_corpus" / name, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
}

SniffResult sniff(const std::vector<uint8_t>& bytes, ClientHello* hello = nullptr,
                  std::string* error = nullptr) {
  return sniffClientHello(std::span<const uint8_t>(bytes), hello, error);
}

// A minimal, valid ClientHello builder so edge cases can be crafted precisely.
struct HelloBuilder {
  std::vector<std::vector<uint8_t>> extensions;

  static void put16(std::vector<uint8_t>& v, size_t x) {
    v.push_back(static_cast<uint8_t>(x >> 8));
    v.push_back(static_cast<uint8_t>(x));
  }
  HelloBuilder& sni(std::string_view host) {
    std::vector<uint8_t> e;
    put16(e, 0);
    put16(e, host.size() + 5);
    put16(e, host.size() + 3);
    e.push_back(0);
    put16(e, host.size());
    e.insert(e.end(), host.begin(), host.end());
    extensions.push_back(e);
    return *this;
  }
  HelloBuilder& alpn(std::vector<std::string> protos) {
    std::vector<uint8_t> list;
    for (const auto& p : protos) {
      list.push_back(static_cast<uint8_t>(p.size()));
      list.insert(list.end(), p.begin(), p.end());
    }
    std::vector<uint8_t> e;
    put16(e, 16);
    put16(e, list.size() + 2);
    put16(e, list.size());
    e.insert(e.end(), list.begin(), list.end());
    extensions.push_back(e);
    return *this;
  }
  HelloBuilder& raw(std::vector<uint8_t> e) {
    extensions.push_back(std::move(e));
    return *this;
  }
  std::vector<uint8_t> message() const {
    std::vector<uint8_t> body = {0x03, 0x03};
    body.insert(body.end(), 32, 0xab);  // random
    body.push_back(0);                  // session id
    put16(body, 2);
    body.push_back(0x13);
    body.push_back(0x01);
    body.push_back(1);  // compression methods
    body.push_back(0);
    std::vector<uint8_t> ext;
    for (const auto& e : extensions) ext.insert(ext.end(), e.begin(), e.end());
    put16(body, ext.size());
    body.insert(body.end(), ext.begin(), ext.end());
    std::vector<uint8_t> msg = {0x01, static_cast<uint8_t>(body.size() >> 16),
                                static_cast<uint8_t>(body.size() >> 8),
                                static_cast<uint8_t>(body.size())};
    msg.insert(msg.end(), body.begin(), body.end());
    return msg;
  }
  std::vector<uint8_t> records(size_t fragment = 16384) const {
    const std::vector<uint8_t> msg = message();
    std::vector<uint8_t> out;
    for (size_t i = 0; i < msg.size(); i += fragment) {
      const size_t n = std::min(fragment, msg.size() - i);
      out.push_back(0x16);
      out.push_back(0x03);
      out.push_back(0x01);
      put16(out, n);
      out.insert(out.end(), msg.begin() + static_cast<std::ptrdiff_t>(i),
                 msg.begin() + static_cast<std::ptrdiff_t>(i + n));
    }
    return out;
  }
};

TEST(ClientHelloTest, RealClientsSniAndAlpn) {
  struct Case {
    const char* file;
    const char* sni;
    std::vector<std::string> alpn;
  };
  const Case cases[] = {
      {"openssl_s_client_sni", "api.openai.com", {}},
      {"openssl_tls12_alpn", "api.anthropic.com", {"h2", "http/1.1"}},  // sent upper-case
      {"openssl_no_sni", "", {}},
      {"curl_http11", "generativelanguage.googleapis.com", {"http/1.1"}},
      {"curl_h2", "example.com", {"h2", "http/1.1"}},
      {"node_tls", "mcp.example.org", {"http/1.1"}},
      {"python_ssl", "pypi.org", {"http/1.1"}},
      {"curl_fragmented_records", "generativelanguage.googleapis.com", {"http/1.1"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    const std::vector<uint8_t> bytes = readSeed(c.file);
    ASSERT_FALSE(bytes.empty());
    ClientHello hello;
    std::string error;
    ASSERT_EQ(sniff(bytes, &hello, &error), SniffResult::kOk) << error;
    EXPECT_EQ(hello.sni, c.sni);
    EXPECT_EQ(hello.alpn, c.alpn);
    EXPECT_EQ(hello.record_version >> 8, 0x03);
  }
}

TEST(ClientHelloTest, EveryPrefixNeedsMore) {
  for (const char* file : {"curl_h2", "curl_fragmented_records", "openssl_tls12_alpn"}) {
    const std::vector<uint8_t> bytes = readSeed(file);
    // The hello ends exactly where the file does for these seeds.
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(cut));
      ASSERT_EQ(sniff(prefix), SniffResult::kNeedMore) << file << " cut at " << cut;
    }
  }
}

TEST(ClientHelloTest, TrailingBytesAfterHelloIgnored) {
  std::vector<uint8_t> bytes = readSeed("curl_h2");
  bytes.insert(bytes.end(), {0x17, 0x03, 0x03, 0x00, 0x01, 0x00});
  ClientHello hello;
  EXPECT_EQ(sniff(bytes, &hello), SniffResult::kOk);
  EXPECT_EQ(hello.sni, "example.com");
}

TEST(ClientHelloTest, NotTls) {
  const std::string get = "GET / HTTP/1.1\r\n";
  EXPECT_EQ(sniff(std::vector<uint8_t>(get.begin(), get.end())), SniffResult::kNotTls);
  EXPECT_EQ(sniff({0x80, 0x01}), SniffResult::kNotTls);  // SSLv2-style hello
  EXPECT_EQ(sniff({}), SniffResult::kNeedMore);
  EXPECT_EQ(sniff({0x16}), SniffResult::kNeedMore);
}

TEST(ClientHelloTest, MalformedRecordLayer) {
  std::string error;
  EXPECT_EQ(sniff({0x16, 0x02, 0x00, 0x00, 0x10}, nullptr, &error), SniffResult::kMalformed);
  EXPECT_NE(error.find("record version"), std::string::npos) << error;
  EXPECT_NE(error.find("offset 1"), std::string::npos) << error;
  EXPECT_EQ(sniff({0x16, 0x03, 0x01, 0x00, 0x00}, nullptr, &error), SniffResult::kMalformed);
  EXPECT_NE(error.find("empty handshake record"), std::string::npos) << error;
  EXPECT_EQ(sniff({0x16, 0x03, 0x01, 0x40, 0x01}, nullptr, &error), SniffResult::kMalformed);
  EXPECT_NE(error.find("exceeds 16384"), std::string::npos) << error;
  // ServerHello (2) instead of ClientHello.
  EXPECT_EQ(sniff({0x16, 0x03, 0x01, 0x00, 0x04, 0x02, 0, 0, 0}, nullptr, &error),
            SniffResult::kMalformed);
  EXPECT_NE(error.find("handshake type 0x02"), std::string::npos) << error;
  // Declared hello larger than the bound.
  EXPECT_EQ(sniff({0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0, 0}, nullptr, &error),
            SniffResult::kMalformed);
  EXPECT_NE(error.find("exceeds"), std::string::npos) << error;
  // An alert record in the middle of a fragmented hello.
  std::vector<uint8_t> frag = HelloBuilder().sni("a.b").records(20);
  frag[25] = 0x15;
  EXPECT_EQ(sniff(frag, nullptr, &error), SniffResult::kMalformed);
  EXPECT_NE(error.find("record type 0x15"), std::string::npos) << error;
  EXPECT_NE(error.find("offset 25"), std::string::npos) << error;
}

TEST(ClientHelloTest, TooManyRecords) {
  HelloBuilder b;
  b.sni(std::string(60, 'a') + ".example.com");
  std::string error;
  const std::vector<uint8_t> one_byte_records = b.records(1);
  EXPECT_EQ(sniff(one_byte_records, nullptr, &error), SniffResult::kMalformed);
  EXPECT_NE(error.find("more than 64 records"), std::string::npos) << error;
  EXPECT_NE(error.find("offset 384"), std::string::npos) << error;  // 64 records of 6 bytes
  // Decided as soon as the 65th record's first byte is there.
  std::vector<uint8_t> cut(one_byte_records.begin(), one_byte_records.begin() + 64 * 6 + 1);
  EXPECT_EQ(sniff(cut), SniffResult::kMalformed);
  cut.pop_back();
  EXPECT_EQ(sniff(cut), SniffResult::kNeedMore);
}

// The sniffer always decides within kMaxSniffBytes: the largest hello in the most records.
TEST(ClientHelloTest, DecidesWithinMaxSniffBytes) {
  HelloBuilder b;
  // Fill the hello up to exactly kMaxClientHelloBytes with a padding extension (21).
  const size_t base = b.message().size();
  const size_t pad = kMaxClientHelloBytes - base - 4;
  std::vector<uint8_t> ext = {0, 21, static_cast<uint8_t>(pad >> 8), static_cast<uint8_t>(pad)};
  ext.insert(ext.end(), pad, 0);
  b.raw(ext);
  ASSERT_EQ(b.message().size(), kMaxClientHelloBytes);
  const size_t fragment =
      (kMaxClientHelloBytes + kMaxClientHelloRecords - 1) / kMaxClientHelloRecords;
  const std::vector<uint8_t> bytes = b.records(fragment);
  ASSERT_LE(bytes.size(), kMaxSniffBytes);
  std::string error;
  EXPECT_EQ(sniff(bytes, nullptr, &error), SniffResult::kOk) << error;
  // One byte more in the declared length is rejected as too large.
  std::vector<uint8_t> big = bytes;
  big[5 + 3] = static_cast<uint8_t>(big[5 + 3] + 1);
  EXPECT_EQ(sniff(big, nullptr, &error), SniffResult::kMalformed);
}

TEST(ClientHelloTest, SniValidation) {
  ClientHello hello;
  std::string error;
  ASSERT_EQ(sniff(HelloBuilder().sni("Api.OpenAI.com.").records(), &hello, &error),
            SniffResult::kOk)
      << error;
  EXPECT_EQ(hello.sni, "api.openai.com");

  const std::vector<uint8_t> bad = HelloBuilder().sni(std::string("evil\0.com", 9)).records();
  EXPECT_EQ(sniff(bad, &hello, &error), SniffResult::kMalformed);
  EXPECT_NE(error.find("byte 0x00"), std::string::npos) << error;
  // 5 record + 4 handshake + 2+32+1+2+2+1+1 + 2 ext len + 9 sni header: 'e' at 61, NUL at 65.
  EXPECT_NE(error.find("offset 65"), std::string::npos) << error;

  for (const std::string& host :
       {std::string("a..b"), std::string("has space.com"), std::string("-lead.com"),
        std::string(64, 'x') + ".com", std::string("."), std::string("a\x7f"),
        std::string("\xc3\xa9.fr")}) {
    EXPECT_EQ(sniff(HelloBuilder().sni(host).records(), nullptr, &error), SniffResult::kMalformed)
        << host;
  }
  std::string long_ok;
  for (int i = 0; i < 4; ++i) long_ok += std::string(61, 'a') + ".";
  long_ok += "com";  // 247 bytes
  ASSERT_EQ(sniff(HelloBuilder().sni(long_ok).records(), &hello, &error), SniffResult::kOk)
      << error;
  EXPECT_EQ(hello.sni, long_ok);
  EXPECT_EQ(sniff(HelloBuilder().sni(long_ok + ".abcdefgh").records(), nullptr, &error),
            SniffResult::kMalformed);

  EXPECT_EQ(sniff(HelloBuilder().sni("a.com").sni("b.com").records(), nullptr, &error),
            SniffResult::kMalformed);
  EXPECT_NE(error.find("duplicate extension 0"), std::string::npos) << error;
}

TEST(ClientHelloTest, MalformedExtensions) {
  std::string error;
  // server_name list length disagrees with the extension length.
  EXPECT_EQ(sniff(HelloBuilder().raw({0, 0, 0, 4, 0, 9, 0, 0}).records(), nullptr, &error),
            SniffResult::kMalformed);
  EXPECT_NE(error.find("server_name: list length"), std::string::npos) << error;
  // Extension longer than the hello.
  EXPECT_EQ(sniff(HelloBuilder().raw({0, 5, 0, 50}).records(), nullptr, &error),
            SniffResult::kMalformed);
  EXPECT_NE(error.find("overruns"), std::string::npos) << error;
  // Empty ALPN protocol name.
  EXPECT_EQ(sniff(HelloBuilder().alpn({"h2", ""}).records(), nullptr, &error),
            SniffResult::kMalformed);
  EXPECT_NE(error.find("alpn: empty protocol name"), std::string::npos) << error;
  ClientHello hello;
  ASSERT_EQ(sniff(HelloBuilder().alpn({"h2", "http/1.1"}).raw({0xaa, 0xaa, 0, 0}).records(), &hello,
                  &error),
            SniffResult::kOk)
      << error;
  EXPECT_EQ(hello.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_TRUE(hello.sni.empty());
}

TEST(ClientHelloTest, TruncatedInsideBodyIsMalformedNotNeedMore) {
  // The record is complete but the hello's own lengths overrun: that is malformed.
  std::vector<uint8_t> msg = HelloBuilder().sni("a.com").message();
  msg[4 + 2 + 32] = 32;  // session id length now runs past the cipher suites
  msg.resize(4 + 2 + 32 + 10);
  msg[1] = 0;
  msg[2] = 0;
  msg[3] = static_cast<uint8_t>(msg.size() - 4);
  std::vector<uint8_t> rec = {0x16, 0x03, 0x01, 0x00, static_cast<uint8_t>(msg.size())};
  rec.insert(rec.end(), msg.begin(), msg.end());
  std::string error;
  EXPECT_EQ(sniff(rec, nullptr, &error), SniffResult::kMalformed);
  EXPECT_NE(error.find("session_id overruns"), std::string::npos) << error;
}

TEST(ClientHelloTest, GarbageSeedsNeverOk) {
  for (const char* file : {"truncated_header", "truncated_body"}) {
    EXPECT_EQ(sniff(readSeed(file)), SniffResult::kNeedMore) << file;
  }
  EXPECT_EQ(sniff(readSeed("http_get")), SniffResult::kNotTls);
  EXPECT_EQ(sniff(readSeed("sni_with_nul")), SniffResult::kMalformed);
  EXPECT_EQ(sniff(readSeed("garbage_after_handshake_byte")), SniffResult::kMalformed);
}

}  // namespace
}  // namespace clrk::egress::tls
