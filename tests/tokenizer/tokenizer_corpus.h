// A deterministic corpus for tokenizer tests: code in several languages, many scripts, emoji with
// ZWJ sequences and skin tones, whitespace runs, digit and punctuation runs, control characters,
// text that looks like special tokens, and (optionally) invalid UTF-8.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace vireo::test {

class CorpusRng {
 public:
  explicit CorpusRng(uint64_t seed) : s_(seed) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
  template <typename T>
  const T& pick(const std::vector<T>& v) { return v[below(v.size())]; }

 private:
  uint64_t s_;
};

// True when llama.cpp's lenient decoder would produce a code point past U+10FFFF (lead bytes F4..F7
// with three continuation bytes): llama.cpp throws on those, so they are kept out of comparisons.
inline bool decodes_past_unicode(const std::string& s) {
  for (size_t i = 0; i + 3 < s.size(); ++i) {
    const auto c = static_cast<uint8_t>(s[i]);
    if ((c & 0xF8) == 0xF0) {
      bool conts = true;
      for (size_t k = 1; k <= 3; ++k) conts = conts && (static_cast<uint8_t>(s[i + k]) & 0xC0) == 0x80;
      if (!conts) continue;
      const uint32_t cp = ((c & 0x07u) << 18) | ((static_cast<uint8_t>(s[i + 1]) & 0x3Fu) << 12);
      if (cp > 0x10FFFF) return true;
      i += 3;
    }
  }
  return false;
}

inline std::vector<std::string> tokenizer_corpus(size_t n_generated = 5000, bool with_invalid = true) {
  using V = std::vector<std::string>;
  const V latin = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "naïve", "café", "résumé",
                   "Ærøskøbing", "Straße", "Ñandú", "über", "façade", "coöperate", "İstanbul", "ǅemal", "ﬁne",
                   "HELLO", "World", "ÉCOLE", "señor", "Łódź", "Dvořák", "Þórr", "œuvre", "ĳssel", "Ǆ"};
  const V cyrillic = {"Привет", "мир", "съешь", "ещё", "этих", "мягких", "французских", "булок", "ЁЛКА", "Їжак"};
  const V greek = {"Καλημέρα", "κόσμε", "ΑΒΓΔ", "ἀρχή", "ῥῆμα", "Ὀδυσσεύς", "σοφία", "ΣΊΣΥΦΟΣ"};
  const V arabic = {"مرحبا", "بالعالم", "السَّلَامُ", "عَلَيْكُمْ", "١٢٣٤٥", "كتاب", "ﷺ"};
  const V hebrew = {"שלום", "עולם", "בְּרֵאשִׁית", "ישראל"};
  const V indic = {"नमस्ते", "दुनिया", "हिन्दी", "क्षत्रिय", "१२३", "বাংলা", "தமிழ்", "ಕನ್ನಡ"};
  const V thai = {"สวัสดี", "ชาวโลก", "ภาษาไทย", "ກະວີ", "ខ្មែរ", "မြန်မာ"};
  const V cjk = {"你好", "世界", "中文分词", "漢字", "日本語", "ひらがな", "カタカナ", "ｶﾀｶﾅ", "𠀋𡈽", "㐀䶵", "龘"};
  const V hangul = {"안녕하세요", "세계", "한국어", "가", "\xE1\x84\x80\xE1\x85\xA1"};
  const V emoji = {"😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "❤️", "🤷🏻‍♀️", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "☕", "🫠", "🔥🔥🔥", "✅", "🚀"};
  const V symbols = {"∑", "∫", "√2", "≈", "→", "€100", "£", "¥", "©", "®", "™", "°C", "½", "²", "µs", "∞", "≠", "⌘"};
  const V combining = {"e\xCC\x81", "a\xCC\x88", "n\xCC\x83", "Z\xCC\xB5\xCC\xA7", "o\xCC\x82\xCC\xA3", "\xE1\x84\x92\xE1\x85\xA1\xE1\x86\xAB"};
  const V code = {
      "int main() { return 0; }",
      "for (int i = 0; i < n; ++i) {\n    sum += a[i];\n}",
      "def foo(x, y=None):\n\treturn x ** 2  # square",
      "const f = async (a) => { await fetch(`/api/${a}`); };",
      "fn main() -> Result<(), Box<dyn Error>> { println!(\"{:?}\", v); }",
      "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
      "if [ -f \"$HOME/.bashrc\" ]; then source ~/.bashrc; fi",
      "{\"key\": [1, 2.5, -3e10, null, true], \"nested\": {\"a\": \"b\"}}",
      "<div class=\"x\">&lt;p&gt;</div>",
      "#include <vector>\nstd::vector<int> v{1,2,3};",
      "x += y; y -= z; z *= 2; w /= 3; a %= b; c ^= d; e |= f; g &= h;",
      "i++ + ++j -- --k << >> >>= <<= === !== => :: -> ...",
      "    public static void Main(string[] args)\n    {\n        Console.WriteLine(\"Hi\");\n    }",
      "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"héllo\")\n}",
      "SELECT COUNT(*) AS n\n  FROM t\n WHERE x IS NOT NULL;  -- done",
      "local t = {1, 2, 3}\nfor _, v in ipairs(t) do print(v) end",
      "@decorator\nclass Foo(Bar):\n    '''Doc string.'''\n    pass",
      "$ ls -la | grep '^d' | awk '{print $9}'",
      "matrix = [[1, 0], [0, 1]]  # identity",
      "\\begin{equation} E = mc^2 \\end{equation}",
  };
  const V whitespace = {" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\xC2\xA0", "\xE2\x80\x83",
                        "\xE3\x80\x80", "\xC2\x85", "\xE2\x80\xA8", "\v", "\f", "        ", " \t \t"};
  const V numbers = {"0", "7", "42", "123", "1234", "12345", "1234567890", "3.14159", "1,234,567", "0x1F", "1e-9",
                     "٣٤٥", "१२३४", "１２３", "2024-11-21", "10:45:00", "+1 (555) 010-9999", "99.9%", "¹²³", "Ⅻ"};
  const V punct = {"!!!", "???", "...", "—", "–", "«»", "„“", "¿¡", "。、", "！？", "''", "\"\"", "``", "~~~", "***",
                   "---", "___", ";;", "::", "||", "&&", "(", ")", "[]", "{}", "<>", "/", "\\", "@#$%^&*", "?!", ",", "."};
  const V contractions = {"I'm", "you're", "we've", "they'll", "he'd", "it's", "DON'T", "She'S", "'tis", "O'Neil",
                          "rock 'n' roll", "' s", "'", "''", "'LL", "'Re", "ain't", "y'all'd've"};
  const V control = {"\x01", "\x07", "\x1b[31m", "\x7f", "\xE2\x80\x8B", "\xE2\x80\x8D", "\xE2\x81\xA0", "\xEF\xBB\xBF",
                     "\xC2\xAD", std::string(1, '\0'), "\x1f", "\xE2\x80\x8E"};
  const V specials = {"<|begin_of_text|>", "<|eot_id|>", "<|end_of_text|>", "<|start_header_id|>user<|end_header_id|>",
                      "<s>", "</s>", "<unk>", "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "<|im_start|>", "<|im_end|>",
                      "<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|system|>", "<think>", "</think>",
                      "<tool_call>", "<|fim_prefix|>", "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                      "<|reserved_special_token_5|>", "<0x41>", "\xE2\x96\x81", "\xE2\x96\x81\xE2\x96\x81hello", "<|", "|>",
                      "<|im_start|>assistant\n", " <s> ", "</s></s>", "<|endoftext|><|endoftext|>"};
  const V invalid = {"\xff", "\xfe", "\xc3", "\xc3(", "\xe2\x82", "\xe2\x28\xa1", "\xf0\x9f\x98", "\x80", "\xbf\xbf",
                     "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xed\xbf\xbf", "\xf8\x88\x80\x80\x80",
                     "\xf0\x90\x80", "\xf4\x8f\xbf\xbf", "\xfc", "\xe0\xa0", "a\x80" "b"};
  const std::vector<const V*> scripts = {&latin, &latin, &latin, &cyrillic, &greek, &arabic, &hebrew,
                                         &indic, &thai, &cjk, &hangul};
  const std::vector<const V*> all = {&latin, &cyrillic, &greek, &arabic, &hebrew, &indic, &thai, &cjk, &hangul,
                                     &emoji, &symbols, &combining, &code, &whitespace, &numbers, &punct,
                                     &contractions, &control, &specials};

  std::vector<std::string> out = {
      "", " ", "  ", "\n", "\t\t", "a", "'s", " 's", "Hello", " Hello", "Hello ", "  Hello  ", "\n\nHello\n\n",
      "Hello world", "Hello, world!", "hello\tworld", "1", "12", "123", "1234", "12345", " 123", "a1b2c3", "...",
      " ...", " .", "it 's", "don ' t", "I 've", " , ", "x ? y", "\xE2\x96\x81", " \xE2\x96\x81 ", "<s>", " <s>x</s> ",
      "<|begin_of_text|>Hello<|eot_id|>", "[CLS] hi [SEP]", "\xF0\x9F\xA6\x99", "   \n   x", "x   ", "\r\n\r\n"};
  const size_t target = out.size() + n_generated;
  CorpusRng rng(20261121);
  auto fragment = [&](const V& v) { return rng.pick(v); };
  while (out.size() < target) {
    std::string line;
    const size_t style = rng.below(100);
    if (style < 30) {  // sentence
      const V& script = *scripts[rng.below(scripts.size())];
      const size_t words = 3 + rng.below(13);
      for (size_t w = 0; w < words; ++w) {
        if (w) line += rng.below(10) == 0 ? fragment(whitespace) : " ";
        line += rng.below(6) == 0 ? fragment(*scripts[rng.below(scripts.size())]) : fragment(script);
        if (rng.below(8) == 0) line += fragment(punct).substr(0, 1);
      }
      line += rng.pick(V{".", "!", "?", "", "…", "。"});
    } else if (style < 45) {  // code
      const size_t parts = 1 + rng.below(3);
      for (size_t p = 0; p < parts; ++p) line += (p ? "\n" : "") + fragment(code);
    } else if (style < 55) {  // whitespace-heavy
      if (rng.below(2)) line += fragment(whitespace);
      for (size_t w = 0, k = 2 + rng.below(6); w < k; ++w) line += fragment(*all[rng.below(9)]) + fragment(whitespace);
    } else if (style < 65) {  // numbers and punctuation
      for (size_t w = 0, k = 2 + rng.below(8); w < k; ++w) {
        line += rng.below(2) ? fragment(numbers) : fragment(punct);
        if (rng.below(3) == 0) line += " ";
      }
    } else if (style < 73) {  // emoji
      for (size_t w = 0, k = 1 + rng.below(6); w < k; ++w) {
        line += fragment(emoji);
        if (rng.below(2)) line += " " + fragment(latin);
      }
    } else if (style < 83) {  // special-token-looking text
      for (size_t w = 0, k = 1 + rng.below(5); w < k; ++w) {
        line += rng.below(3) == 0 ? fragment(whitespace) : "";
        line += fragment(specials);
        line += rng.below(2) ? fragment(*all[rng.below(all.size())]) : "";
      }
    } else if (style < 95 || !with_invalid) {  // soup
      for (size_t w = 0, k = 1 + rng.below(8); w < k; ++w) line += fragment(*all[rng.below(all.size())]);
    } else {  // invalid UTF-8
      for (size_t w = 0, k = 1 + rng.below(6); w < k; ++w) {
        line += rng.below(2) ? fragment(invalid) : fragment(*all[rng.below(all.size())]);
      }
    }
    if (out.size() % 200 == 0) {  // a long line now and then
      for (size_t w = 0, k = 50 + rng.below(150); w < k; ++w) line += fragment(*all[rng.below(all.size())]);
    }
    if (decodes_past_unicode(line)) continue;
    out.push_back(std::move(line));
  }
  return out;
}

}  // namespace vireo::test
